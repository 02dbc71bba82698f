"""Convert a transformers T5 text encoder (Latte-1's text_encoder/, t5-v1_1-xxl) to a MindSpore .ckpt.

    python tools/t5_converter.py --source Latte-1/text_encoder --target models/t5-v1_1-xxl.ckpt
    python tools/t5_converter.py --source Latte-1/text_encoder --target models/t5-v1_1-xxl-fp16.ckpt --dtype fp16
    python tools/t5_converter.py --source t5.safetensors --config t5/config.json --target models/t5.ckpt

Sources: a transformers folder (config.json + model.safetensors, or model-0000x-of-0000N.safetensors shards with
model.safetensors.index.json, or pytorch_model.bin [+ shards and pytorch_model.bin.index.json]), an index json,
or one weights file with --config. The decoder half of a whole T5 checkpoint is skipped. Torch is not needed
(fp32, fp16 and bf16 safetensors alike). The architecture is recorded next to the target as `<target>.json`;
`latte.models.load_t5(target)` rebuilds the encoder from it and loads the weights strictly.

Memory (T5-XXL's encoder: 4.76e9 parameters): the .ckpt is 19 GB in fp32 and 9.5 GB with --dtype fp16/bf16.
Converting peaks at about 1.5-1.7x the fp32 size resident (~30 GB; part of it is the memory-mapped safetensors
source, which the OS can page out; a bf16 or .bin source is read into RAM), plus disk for the target. On CPU,
load_t5 peaks at about 2x the fp32 size from an fp32 .ckpt (~38 GB), 1.5x from an fp16/bf16 one (~29 GB), and
then holds 19 GB for fp32 compute; fp16/bf16 compute is for Ascend/GPU.
"""
import argparse
import os
import sys

import numpy as np

from latte.checkpoint_io import CheckpointError, meta_path, save_ms_checkpoint
from latte.convert.io import check_mapping, cli_main, read_json
from latte.convert.t5_keys import convert_state, locate_source, read_state, split_decoder
from latte.models.t5_config import T5EncoderConfig

STORAGE_DTYPES = ("fp32", "fp16", "bf16")
GB = 1e9


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="transformers T5 folder (e.g. Latte-1/text_encoder), its *.index.json, or one "
                             ".safetensors/.bin file")
    parser.add_argument("--target", required=True, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--config", default=None,
                        help="transformers config.json of the model (default: the one beside the weights)")
    parser.add_argument("--dtype", choices=STORAGE_DTYPES, default="fp32",
                        help="storage dtype of the written weights (default fp32, 19 GB for T5-XXL; fp16/bf16 "
                             "halve it, load_t5 casts to the compute dtype)")
    return parser.parse_args(argv)


def read_architecture(config_path):
    if config_path is None:
        raise CheckpointError("no config.json beside the weights: give the model's transformers config.json "
                              "with --config (the shapes do not show num_heads or the feed-forward kind)")
    try:
        return T5EncoderConfig.from_hf_config(read_json(config_path, "config"))
    except ValueError as err:
        raise CheckpointError(f"{config_path}: {err}") from None


def expected_shapes(config):
    """Our parameter name -> shape, from the MindSpore model built without allocating its weights."""
    from mindspore.nn.utils import no_init_parameters

    from latte.models.t5 import T5EncoderModel

    with no_init_parameters():
        net = T5EncoderModel(config)
    return {name: tuple(p.shape) for name, p in net.parameters_and_names()}


def to_storage(params, dtype):
    """our name -> MindSpore Tensor in the storage dtype; fp32 memory-mapped arrays are not copied."""
    import mindspore as ms

    out = {}
    for name, value in params.items():
        if dtype == "bf16":
            out[name] = ms.Tensor(np.asarray(value, np.float32), ms.bfloat16)
            continue
        array = np.ascontiguousarray(value, np.float16 if dtype == "fp16" else np.float32)
        if dtype == "fp16" and not np.isfinite(array).all():
            raise CheckpointError(f"{name} has values beyond float16's range (65504): use --dtype bf16 or fp32")
        out[name] = ms.Tensor.from_numpy(array)
    return out


def main(argv=None):
    args = parse_args(argv)
    if not args.target.endswith(".ckpt"):
        raise CheckpointError(f"--target {args.target}: MindSpore checkpoints must end in .ckpt")

    # 1. Find the weight files and the architecture record
    files, index_path, config_path = locate_source(args.source, args.config)
    print(f"[1/5] source: {len(files)} file(s) " + (f"listed in {index_path}" if index_path else files[0])
          + (f", config {config_path}" if config_path else ""))

    # 2. The architecture, from config.json
    config = read_architecture(config_path)
    print(f"[2/5] architecture: d_model={config.d_model} layers={config.num_layers} heads={config.num_heads}x"
          f"{config.d_kv} d_ff={config.d_ff} vocab={config.vocab_size} {config.feed_forward_proj}; "
          f"{config.num_parameters / 1e9:.2f}e9 parameters ({config.num_parameters * 4 / GB:.1f} GB in fp32)")

    # 3. Read every tensor, set the decoder half aside, rename to our parameter names
    state = read_state(files, index_path)
    encoder_state, decoder_keys = split_decoder(state)
    params, origin = convert_state(encoder_state, source=args.source)
    print(f"[3/5] read {len(state)} tensors" + (f"; skipped {len(decoder_keys)} decoder tensors (decoder.*, "
                                                  "lm_head.*) of a whole T5 checkpoint" if decoder_keys else ""))

    # 4. Every parameter filled, every tensor used, every shape as the MindSpore model has it
    expected = expected_shapes(config)
    known = {k: v for k, v in params.items() if k in expected}
    unused = [origin[k] for k in params if k not in expected]
    check_mapping(known, expected, unused, what=args.source)
    print(f"[4/5] all {len(expected)} parameters of T5EncoderModel filled, shapes checked")

    # 5. Write the weights and the architecture record
    meta = {"model": "T5EncoderModel", "config": config.to_dict(), "source": os.path.abspath(args.source),
            "source_files": [os.path.basename(f) for f in files], "dtype": args.dtype,
            "skipped_decoder_tensors": len(decoder_keys)}
    save_ms_checkpoint(to_storage(known, args.dtype), args.target, meta)
    size = os.path.getsize(args.target) / GB
    print(f"[5/5] wrote {args.target} ({args.dtype}, {size:.3g} GB) and {meta_path(args.target)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
