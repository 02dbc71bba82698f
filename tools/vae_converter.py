"""Convert a Stable Diffusion VAE (diffusers folder/file or CompVis/LDM checkpoint) to a MindSpore .ckpt.

    python tools/vae_converter.py --source path/to/sd-vae-ft-mse --target models/sd-vae-ft-mse.ckpt
    python tools/vae_converter.py --source vae-ft-mse-840000-ema-pruned.ckpt --target models/sd-vae-ft-mse.ckpt
    python tools/vae_converter.py --source Latte-1/vae_temporal_decoder --target models/vae_temporal.ckpt

Both diffusers AutoencoderKL and AutoencoderKLTemporalDecoder (Latte-1's default decoder) are converted; which
one a source holds comes from its config.json (_class_name) or, without one, from its weights.

The architecture (from config.json, or inferred from the weight shapes) is recorded next to the target as
`<target>.json`; `latte.models.vae.load_vae(target)` rebuilds and loads it strictly. Torch is not needed.
"""
import argparse
import os
import sys

import numpy as np

from latte.checkpoint_io import CheckpointError, load_strict, meta_path, save_ms_checkpoint
from latte.convert.io import check_mapping, cli_main, read_state_dict
from latte.convert.vae_keys import (convert_state, detect_layout, locate_source, read_config, select_vae_keys,
                                    split_known, summarize_ignored)
from latte.models.vae import build_vae
from latte.models.vae_config import VAEConfig, infer_architecture

STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True,
                        help="diffusers folder (config.json + diffusion_pytorch_model.safetensors/.bin), "
                             "a single .safetensors/.bin file, or an LDM .ckpt (e.g. vae-ft-mse-840000-ema-pruned)")
    parser.add_argument("--target", required=True, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--config", default=None,
                        help="config.json describing the architecture (default: the one in the source folder; "
                             "without any, the architecture is inferred from the weight shapes)")
    parser.add_argument("--norm-num-groups", type=int, default=None,
                        help="GroupNorm groups, which weights do not reveal (default: config.json, else 32)")
    parser.add_argument("--dtype", choices=sorted(STORAGE_DTYPES), default="float32",
                        help="storage dtype of the written weights; float16 halves the file, load_vae widens it")
    return parser.parse_args(argv)


def resolve_architecture(config_path, params, norm_num_groups):
    """(VAEConfig, where it came from): config.json when given, else the shapes; --norm-num-groups wins."""
    if config_path is not None:
        fields, origin = read_config(config_path), config_path
    else:
        unrecorded = ["act_fn", "scaling_factor"] + (["norm_num_groups"] if norm_num_groups is None else [])
        fields, origin = infer_architecture(params), f"weight shapes ({', '.join(unrecorded)}: defaults)"
    if norm_num_groups is not None:
        fields["norm_num_groups"] = norm_num_groups
        origin += " and --norm-num-groups"
    try:
        return VAEConfig.from_dict(fields), origin
    except ValueError as err:
        raise CheckpointError(f"{origin}: {err}") from err


def main(argv=None):
    args = parse_args(argv)
    if not args.target.endswith(".ckpt"):
        raise CheckpointError(f"--target {args.target}: MindSpore checkpoints must end in .ckpt")

    # 1. Find the weights and the architecture record
    weights_path, config_path = locate_source(args.source, args.config)
    print(f"[1/5] source: {weights_path}" + (f" with {config_path}" if config_path else " (no config.json)"))

    # 2. Read, find the VAE and its layout
    state = read_state_dict(weights_path)
    vae_state, prefix, ignored = select_vae_keys(state)
    layout = detect_layout(vae_state)
    print(f"[2/5] format: {layout}; {len(state)} tensors read, {len(vae_state)} belong to the VAE"
          + (f" (under '{prefix}')" if prefix else ""))
    if ignored:
        print(f"      ignored {len(ignored)} tensors: {summarize_ignored(ignored, prefix)}")

    # 3. Rename to our parameter names and settle the architecture
    params, origin = convert_state(vae_state, layout)
    config, config_origin = resolve_architecture(config_path, params, args.norm_num_groups)
    print(f"[3/5] {config.class_name} from {config_origin}: block_out_channels={list(config.block_out_channels)} "
          f"layers_per_block={config.layers_per_block} latent_channels={config.latent_channels} "
          f"norm_num_groups={config.norm_num_groups} mid attention={config.mid_block_add_attention}")

    # 4. Every tensor used, every parameter filled, every shape as the network expects; then load it
    vae = build_vae(config)
    expected = {p.name: tuple(p.shape) for p in vae.get_parameters()}
    known, unused = split_known(params, origin, expected)
    check_mapping(known, expected, unused, what=weights_path)
    load_strict(vae, known, what=weights_path)
    print(f"[4/5] all {len(expected)} parameters filled, shapes checked, strict load into {config.class_name} passed")

    # 5. Write weights and the architecture record
    storage = STORAGE_DTYPES[args.dtype]
    meta = {"model": config.class_name, "config": config.to_dict(), "source": os.path.abspath(weights_path),
            "source_format": layout, "architecture_from": config_origin, "dtype": args.dtype}
    save_ms_checkpoint({k: np.asarray(v, dtype=storage) for k, v in known.items()}, args.target, meta)
    print(f"[5/5] wrote {args.target} ({args.dtype}) and {meta_path(args.target)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
