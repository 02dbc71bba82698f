"""Convert a released metric detector (StyleGAN-V's TorchScript files) to a MindSpore .ckpt.

    python tools/metrics_converter.py --detector i3d --source i3d_torchscript.pt --target models/i3d.ckpt
    python tools/metrics_converter.py --detector inception --source inception-2015-12-05.pt \
        --target models/inception.ckpt
    python tools/metrics_converter.py --detector c3d --source c3d_ucf101.pt --target models/c3d.ckpt

The file is opened with torch.jit.load (a .pkl with pickle: a pickled torch module, as StyleGAN3's
inception-2015-12-05.pkl, whose unpickling needs the torch_utils package of StyleGAN3 / the official Latte tools
importable); torch is needed here only. Every tensor is renamed by
latte/convert/metric_keys.py, every parameter of the MindSpore cell must be filled with the right shape and no
tensor may be left over. The detector name and its architecture go to `<target>.json`, which
latte.metrics.detectors.load_detector reads.
"""
import argparse
import os
import sys
from collections import OrderedDict

import numpy as np

from latte.checkpoint_io import CheckpointError, load_strict, meta_path, save_ms_checkpoint
from latte.convert.io import check_mapping, cli_main
from latte.convert.metric_keys import convert_detector_state, infer_detector_config, strip_wrapper_prefix
from latte.metrics.detectors import DETECTORS, build_detector


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", required=True, choices=sorted(DETECTORS),
                        help="i3d: i3d_torchscript.pt (FVD); inception: inception-2015-12-05.pt or .pkl (FID, IS); "
                             "c3d: c3d_ucf101.pt (video IS)")
    parser.add_argument("--source", required=True, help="the released TorchScript file (.pt) or pickle (.pkl)")
    parser.add_argument("--target", required=True, help="MindSpore checkpoint to write (.ckpt)")
    return parser.parse_args(argv)


def _load_pickled_module(path, torch):
    """A torch module pickled whole (StyleGAN3's .pkl detectors). Unpickling runs the file's own code: only
    convert files from a source you trust."""
    import pickle

    try:
        with open(path, "rb") as f:
            module = pickle.load(f)
    except ModuleNotFoundError as err:
        raise CheckpointError(f"{path}: unpickling needs the module {err.name!r} (StyleGAN3's / the official Latte "
                              "tools' torch_utils and dnnlib): put that folder on PYTHONPATH, or convert the .pt "
                              "TorchScript file of the same network instead") from None
    except Exception as err:
        raise CheckpointError(f"{path}: not a pickled detector ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:160]})") from None
    if not isinstance(module, torch.nn.Module):
        raise CheckpointError(f"{path}: holds a {type(module).__name__}, not a torch module")
    return module


def read_torchscript_state(path):
    """name -> float32 numpy array of a TorchScript file's (or a pickled module's) parameters and buffers."""
    try:
        import torch
    except ImportError as err:
        raise CheckpointError(f"reading {path} needs torch (pip install torch): {err}") from None
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file; download the released detector first (README: Video "
                              "quality metrics)")
    if path.endswith(".pkl"):
        module = _load_pickled_module(path, torch)
    else:
        try:
            module = torch.jit.load(path, map_location="cpu")
        except Exception as err:  # torch raises RuntimeError/ValueError for non-TorchScript files
            raise CheckpointError(f"{path}: not a TorchScript file ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:160]})") from None
    return OrderedDict((k, v.detach().cpu().float().numpy()) for k, v in module.state_dict().items())


def main(argv=None):
    args = parse_args(argv)
    if not args.target.endswith(".ckpt"):
        raise CheckpointError(f"--target {args.target}: MindSpore checkpoints must end in .ckpt")

    # 1. Read the TorchScript file
    state = read_torchscript_state(args.source)
    state, prefix = strip_wrapper_prefix(state, args.detector, args.source)
    print(f"[1/4] {args.source}: {len(state)} tensors" + (f" under '{prefix}'" if prefix else ""))

    # 2. Rename; the architecture from the shapes
    params, skipped = convert_detector_state(state)
    config = infer_detector_config(args.detector, params)
    print(f"[2/4] {len(params)} tensors, {len(skipped)} BatchNorm step counters left out; config {config}")

    # 3. Every tensor used, every parameter filled, every shape as the cell expects; then a strict load
    net = build_detector(args.detector, config)
    expected = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    check_mapping(params, expected, [], what=args.source)
    load_strict(net, params, what=args.source, describe=f"the {args.detector} detector")
    print(f"[3/4] all {len(expected)} parameters filled, shapes checked, strict load passed")

    # 4. Write the weights and the record
    meta = {"detector": args.detector, "config": config, "source": os.path.abspath(args.source),
            "source_prefix": prefix}
    save_ms_checkpoint({k: np.asarray(v, dtype=np.float32) for k, v in params.items()}, args.target, meta)
    print(f"[4/4] wrote {args.target} and {meta_path(args.target)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
