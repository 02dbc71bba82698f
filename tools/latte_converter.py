"""Convert official PyTorch Latte checkpoints to MindSpore (.ckpt), and back.

    python tools/latte_converter.py --source models/skytimelapse.pt --target models/skytimelapse.ckpt
    python tools/latte_converter.py --source outputs/run/ckpt/ema.ckpt --target latte_official.pt

Sources: {"ema": sd} (released files), {"model": sd, "ema": sd} (official train.py; EMA preferred, see --use),
a plain state dict, .safetensors; `_orig_mod.` / `module.` prefixes are removed. torch is NOT needed for
torch -> MindSpore; MindSpore -> .pt needs torch (MindSpore -> .safetensors does not).
"""
import argparse
import os

from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint, save_ms_checkpoint
from latte.convert.io import cli_main, read_checkpoint_tree, strip_prefixes, unwrap_state_dict
from latte.convert.latte_keys import WRAPPER_PREFIXES, convert_official, describe_official, ms_to_official

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
ENTRY_ORDER = {"ema": ("ema", "model", "state_dict", "module"), "model": ("model", "ema", "state_dict", "module")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="official .pt/.pth/.bin/.safetensors, or a latte-ms .ckpt")
    parser.add_argument("--target", required=True,
                        help="output path: .ckpt (to MindSpore), or .pt/.pth/.safetensors (back to official)")
    parser.add_argument("--use", choices=sorted(ENTRY_ORDER), default="ema",
                        help="which weights of a {'model', 'ema'} checkpoint to convert (default: ema)")
    parser.add_argument("--patch_embedder", choices=("conv", "linear"), default="conv",
                        help="patch embedder of the MindSpore model the .ckpt is for (default: conv, official)")
    parser.add_argument("--num_heads", type=int, default=None,
                        help="only for models outside the Latte-S/B/L/XL registry (not visible in shapes)")
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
    # 1. Read the official checkpoint (no torch needed)
    state, entry = pick_entry(read_checkpoint_tree(args.source), args.use, args.source)
    print(f"read {args.source}: {len(state)} tensors from the {entry!r} entry")

    # 2. Detect the variant from the tensor shapes
    state = strip_prefixes(state, WRAPPER_PREFIXES)
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


def to_official(args):
    # 1. Read the MindSpore checkpoint and what built it
    params, meta = read_ms_checkpoint(args.source)
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


def main(argv=None):
    args = parse_args(argv)
    if args.target.endswith(".ckpt"):
        to_mindspore(args)
    elif args.target.endswith(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)):
        to_official(args)
    else:
        raise CheckpointError(f"--target {args.target}: use .ckpt (to MindSpore) or .pt/.pth/.safetensors "
                              "(to the official layout)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(main))
