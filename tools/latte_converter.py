"""Convert official PyTorch Latte checkpoints and Latte-1 (LatteT2V) transformers to MindSpore (.ckpt), and back.

    python tools/latte_converter.py --source models/skytimelapse.pt --target models/skytimelapse.ckpt
    python tools/latte_converter.py --source Latte-1/transformer --target models/latte1.ckpt
    python tools/latte_converter.py --source outputs/run/ckpt/ema.ckpt --target latte_official.pt
    python tools/latte_converter.py --source outputs/t2v/ckpt/latte-0001000-ema.ckpt --target Latte-1-ft/transformer

Sources: {"ema": sd} (released files), {"model": sd, "ema": sd} (official train.py; EMA preferred, see --use),
a plain state dict, .safetensors; `_orig_mod.` / `module.` prefixes are removed. A LatteT2V (text-to-video) is
a diffusers `transformer/` folder (config.json + diffusion_pytorch_model.safetensors, or sharded with its
.index.json), or one weights file of it (architecture from the shapes; --num_heads if it is no registered
variant). The architecture is recorded in `<target>.json` (kind "latte" or "latte_t2v"); load_latte reads it.
Back: a class/unconditional .ckpt -> the official .pt/.safetensors; a LatteT2V .ckpt (converted, or trained by
train.py) -> a diffusers transformer folder (config.json + diffusion_pytorch_model.safetensors) that
LatteTransformer3DModel.from_pretrained loads, e.g. into a LattePipeline in place of Latte-1's transformer/.
torch is NOT needed for torch -> MindSpore; MindSpore -> .pt needs torch (MindSpore -> .safetensors does not).
"""
import argparse
import os

from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint, save_ms_checkpoint
from latte.convert.io import cli_main, read_checkpoint_tree, strip_prefixes, unwrap_state_dict
from latte.convert.latte_keys import WRAPPER_PREFIXES, convert_official, describe_official, ms_to_official
from latte.convert.t2v_keys import (CONFIG_FILE, DIFFUSERS_WEIGHTS, convert_t2v, diffusers_config, infer_config,
                                    is_t2v_state, locate_source, read_config, t2v_to_diffusers, variant_name)
from latte.models.loader import mindone_to_ms

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
ENTRY_ORDER = {"ema": ("ema", "model", "state_dict", "module"), "model": ("model", "ema", "state_dict", "module")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="official .pt/.pth/.bin/.safetensors, a diffusers "
                                                        "transformer/ folder (LatteT2V), or a latte-ms .ckpt")
    parser.add_argument("--target", required=True,
                        help="output path: .ckpt (to MindSpore), .pt/.pth/.safetensors (back to official), or a "
                             "folder (a LatteT2V back to a diffusers transformer folder)")
    parser.add_argument("--use", choices=sorted(ENTRY_ORDER), default="ema",
                        help="which weights of a {'model', 'ema'} checkpoint to convert (default: ema)")
    parser.add_argument("--patch_embedder", choices=("conv", "linear"), default="conv",
                        help="patch embedder of the MindSpore model the .ckpt is for (default: conv, official)")
    parser.add_argument("--num_heads", type=int, default=None,
                        help="only for models outside the registry (Latte-S/B/L/XL, Latte-1) given without their "
                             "config.json (not visible in shapes)")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="class-conditional only: set if the model was trained with class_dropout_prob=0 "
                             "(default: table rows - 1, the last row being the null class)")
    return parser.parse_args(argv)


def pick_entry(tree, use, source):
    """Returns (state dict, name of the entry used)."""
    if isinstance(tree, dict):
        for key in ENTRY_ORDER[use]:
            if isinstance(tree.get(key), dict):
                return unwrap_state_dict(tree[key], ENTRY_ORDER[use], source), key
    return unwrap_state_dict(tree, ENTRY_ORDER[use], source), "state dict"


def to_mindspore(args):
    # 1. Read the checkpoint, or the weights of a diffusers folder (no torch needed)
    weights, config_path = locate_source(args.source)
    state, entry = pick_entry(read_checkpoint_tree(weights), args.use, weights)
    print(f"read {weights}: {len(state)} tensors from the {entry!r} entry")
    state = strip_prefixes(state, WRAPPER_PREFIXES)
    if is_t2v_state(state):
        return t2v_to_mindspore(args, state, entry, weights, config_path)

    # 2. Detect the variant from the tensor shapes
    config = describe_official(state, args.num_heads, args.num_classes, source=args.source)
    model_name = config.pop("model_name")
    print(f"detected {model_name or 'a custom variant'}: " + ", ".join(f"{k}={v}" for k, v in config.items()))

    # 3. Build the MindSpore model (parameters not initialized) and map every tensor onto it
    from mindspore.nn.utils import no_init_parameters

    from latte.models.latte import Latte

    with no_init_parameters():
        net = Latte(patch_embedder=args.patch_embedder, **config)
    params = convert_official(state, net, args.patch_embedder, source=args.source)

    # 4. Save weights + a sidecar describing them, then prove a strict load
    meta = {"kind": "latte", "model_name": model_name, "config": dict(config, patch_embedder=args.patch_embedder),
            "source": os.path.abspath(args.source), "source_entry": entry}
    save_ms_checkpoint(params, args.target, meta)
    load_strict(net, read_ms_checkpoint(args.target)[0], what=args.target)
    print(f"wrote {args.target} ({len(params)} parameters) and {args.target}.json")


def t2v_to_mindspore(args, state, entry, weights, config_path):
    # 2. The architecture: the folder's config.json, else the tensor shapes
    if args.patch_embedder != "conv" or args.num_classes is not None:
        raise CheckpointError(f"{weights} is a LatteT2V (text-to-video): --patch_embedder and --num_classes are "
                              "for class/unconditional Latte checkpoints; leave them out")
    if config_path is not None:
        config, origin = read_config(config_path), config_path
        if args.num_heads not in (None, config.num_attention_heads):
            raise CheckpointError(f"--num_heads {args.num_heads} but {config_path} says num_attention_heads="
                                  f"{config.num_attention_heads}: leave --num_heads out")
    else:
        config, origin = infer_config(state, args.num_heads, source=weights)
    model_name = variant_name(config)
    print(f"LatteT2V {model_name or '(custom)'} from {origin}: " + ", ".join(
        f"{k}={v}" for k, v in config.to_dict().items()))

    # 3. Build the MindSpore model (parameters not initialized) and map every tensor onto it
    from mindspore.nn.utils import no_init_parameters

    from latte.models.latte_t2v import LatteT2V

    with no_init_parameters():
        net = LatteT2V(**config.to_dict())
    expected = {p.name: tuple(p.shape) for p in net.get_parameters()}
    params = convert_t2v(state, config, expected, source=weights)

    # 4. Save weights + the architecture record, then prove a strict load
    meta = {"kind": "latte_t2v", "model_name": model_name, "config": config.to_dict(),
            "source": os.path.abspath(weights), "source_entry": entry, "architecture_from": origin}
    save_ms_checkpoint(params, args.target, meta)
    load_strict(net, read_ms_checkpoint(args.target)[0], what=args.target)
    print(f"wrote {args.target} ({len(params)} parameters) and {args.target}.json")


def to_official(args):
    # 1. Read the MindSpore checkpoint and what built it
    params, meta = read_ms_checkpoint(args.source)
    params, _ = mindone_to_ms(params)  # a mindone Latte .ckpt reads as ours
    if meta.get("kind") == "latte_t2v":
        raise CheckpointError(f"{args.source} is a LatteT2V: its way back is a diffusers transformer folder; give "
                              f"--target a folder name, e.g. {os.path.splitext(args.target)[0]}")
    config = meta.get("config", {})
    patch = params.get("x_embedder.proj.weight")
    if patch is None:
        raise CheckpointError(f"{args.source}: not a latte-ms Latte checkpoint (no x_embedder.proj.weight)")
    if patch.ndim == 2 and not config:
        raise CheckpointError(f"{args.source}: linear patch embedder weights need the sidecar "
                              f"{args.source}.json (in_channels, patch_size) to restore the conv layout")
    state = ms_to_official(params, config.get("in_channels"), config.get("patch_size"))
    describe_official(state, args.num_heads, args.num_classes, source=args.source)  # shape sanity

    # 2. Write the official layout: {"ema": state_dict}, what the official sample.py loads
    if args.target.endswith(SAFETENSORS_SUFFIX):
        from safetensors.numpy import save_file

        save_file(dict(state), args.target)
    else:
        try:
            import torch
        except ImportError as err:
            raise CheckpointError("writing .pt needs torch (pip install torch==2.13.0), "
                                  "or choose a .safetensors target") from err
        torch.save({"ema": {k: torch.from_numpy(v.copy()) for k, v in state.items()}}, args.target)
    print(f"wrote {args.target} ({len(state)} tensors, official layout)")


def to_diffusers(args):
    # 1. Read the LatteT2V checkpoint and the architecture its record gives
    params, meta = read_ms_checkpoint(args.source)
    if meta.get("kind") != "latte_t2v":
        raise CheckpointError(f"--target {args.target} is a folder, the way back of a LatteT2V, but {args.source} "
                              f"holds {meta.get('kind') or 'no recorded kind'}: give a .pt/.safetensors target for "
                              "a class/unconditional Latte, or a LatteT2V .ckpt with its .json record")
    config = read_config_record(meta, args.source)

    # 2. Check every parameter against the model of that config (names are diffusers' already)
    from mindspore.nn.utils import no_init_parameters

    from latte.models.latte_t2v import LatteT2V

    with no_init_parameters():
        net = LatteT2V(**config.to_dict())
    state = t2v_to_diffusers(params, config, {p.name: tuple(p.shape) for p in net.get_parameters()}, args.source)

    # 3. Write the diffusers folder: config.json + diffusion_pytorch_model.safetensors
    import json

    from safetensors.numpy import save_file

    os.makedirs(args.target, exist_ok=True)
    with open(os.path.join(args.target, CONFIG_FILE), "w") as f:
        json.dump(diffusers_config(config), f, indent=2, sort_keys=True)
    save_file(dict(state), os.path.join(args.target, DIFFUSERS_WEIGHTS), metadata={"format": "pt"})
    print(f"wrote {args.target}/{CONFIG_FILE} and {DIFFUSERS_WEIGHTS} ({len(state)} tensors, LatteTransformer3DModel)")


def read_config_record(meta, source):
    from latte.models.t2v_config import T2VConfig

    if "config" not in meta:
        raise CheckpointError(f"{source} has no architecture record ({source}.json): it cannot be written as a "
                              "diffusers folder without its config")
    try:
        return T2VConfig.from_dict(meta["config"])
    except ValueError as err:
        raise CheckpointError(f"{source}.json: {err}") from None


def main(argv=None):
    args = parse_args(argv)
    if args.target.endswith(".ckpt"):
        to_mindspore(args)
    elif args.target.endswith(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)):
        to_official(args)
    elif not os.path.splitext(args.target)[1] or os.path.isdir(args.target):
        to_diffusers(args)
    else:
        raise CheckpointError(f"--target {args.target}: use .ckpt (to MindSpore), .pt/.pth/.safetensors (to the "
                              "official layout) or a folder (a LatteT2V to diffusers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(main))
