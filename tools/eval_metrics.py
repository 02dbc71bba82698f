"""Video quality metrics of generated videos against a real dataset, as the official Latte evaluation
(tools/calc_metrics_for_dataset.py, StyleGAN-V's metric code) computes them, on MindSpore.

    python tools/eval_metrics.py --real_data_path data/ucf101_frames --fake_data_path samples/ucf101 \\
        --metrics fvd2048_16f --i3d_ckpt models/i3d.ckpt --output metrics.json

Both paths hold .mp4/.gif videos or one folder of frame images per video. The detector comes from the released
file: python tools/metrics_converter.py --detector i3d --source i3d_torchscript.pt --target models/i3d.ckpt.
Features of the real data are cached (--cache_dir) and a killed run resumes where it stopped.
"""
import argparse
import json
import logging
import os
import sys
import time

from latte.cli import run_cli
from latte.config import ConfigError
from latte.env import reexec_for_fast_cpu_convs, setup_context, setup_logging

logger = logging.getLogger("eval_metrics")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "latte-ms", "gan-metrics")


def _bool(text):
    if str(text).lower() in ("1", "true", "yes"):
        return True
    if str(text).lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (use 1/0 or true/false)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    # the official flags
    parser.add_argument("--metrics", default="fvd2048_16f", help="comma-separated metric names")
    parser.add_argument("--real_data_path", required=True, help="real videos (files or frame folders)")
    parser.add_argument("--fake_data_path", required=True, help="generated videos (files or frame folders)")
    parser.add_argument("--mirror", type=_bool, default=False,
                        help="accepted for compatibility: every metric turns mirroring off, as in the official code")
    parser.add_argument("--resolution", type=int, default=None, help="accepted for compatibility (unused)")
    parser.add_argument("--gpus", type=int, default=1, help="only 1 (one device)")
    parser.add_argument("--verbose", type=_bool, default=False)
    parser.add_argument("--use_cache", type=_bool, default=True, help="cache the real data's features")
    parser.add_argument("--num_runs", type=int, default=1, help="repeat each metric (run i uses seed + i)")
    # latte-ms
    parser.add_argument("--i3d_ckpt", default="models/i3d.ckpt", help="converted I3D (tools/metrics_converter.py)")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--max_items", type=int, default=None,
                        help="cap the clips of both sides (quick looks and tests; official numbers need none)")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per detector call")
    parser.add_argument("--seed", type=int, default=0, help="seed of the real clips' sample and offsets")
    parser.add_argument("--device_target", default=None, help="CPU, GPU or Ascend (default: auto)")
    parser.add_argument("--output", default=None, help="JSON file of the results (metric -> record)")
    return parser.parse_args(argv)


def main(argv=None):
    from latte.metrics.recipes import FVD_METRICS, check_metric_names, compute_fvd

    args = parse_args(argv)
    setup_logging()
    metrics = [m for m in args.metrics.split(",") if m and m.lower() != "none"]

    # 1. Check the request
    check_metric_names(metrics)
    if args.gpus != 1:
        raise ConfigError(f"--gpus {args.gpus}: tools/eval_metrics.py runs on one device; use --gpus 1")
    if args.num_runs < 1 or (args.max_items is not None and args.max_items < 2):
        raise ConfigError("--num_runs must be >= 1 and --max_items >= 2 (a covariance needs two clips)")
    from latte.metrics.detectors import load_detector  # MindSpore from here on

    setup_context(args.device_target, mode=1)
    logger.info("metrics %s; real %s; generated %s; cache %s", ",".join(metrics), args.real_data_path,
                args.fake_data_path, args.cache_dir if args.use_cache else "off")

    # 2. The detector, one cell per frame size
    detectors = {}

    def detector_for(hw):
        if hw not in detectors:
            detectors[hw] = load_detector(args.i3d_ckpt, "i3d", input_hw=tuple(hw))
        return detectors[hw]

    # 3. Each metric, each run
    records = {}
    for name in metrics:
        start, runs = time.time(), []
        for run in range(args.num_runs):
            fvd, n_real, n_gen = compute_fvd(FVD_METRICS[name], args.real_data_path, args.fake_data_path,
                                             detector_for, args.i3d_ckpt, args.batch_size, args.seed + run,
                                             args.cache_dir if args.use_cache else None, args.max_items)
            logger.info("%s: %.4f (%d real clips, %d generated clips)", name, fvd, n_real, n_gen)
            runs.append(fvd)
        if args.num_runs == 1:
            results = {name: runs[0]}
        else:
            results = {f"{name}_run{i + 1:02d}": v for i, v in enumerate(runs)}
            results.update({f"{name}_mean": float(sum(runs) / len(runs)),
                            f"{name}_std": float((sum((v - sum(runs) / len(runs)) ** 2 for v in runs)
                                                  / len(runs)) ** 0.5)})
        total = time.time() - start
        records[name] = {"results": results, "metric": name, "total_time": total,
                         "total_time_str": f"{total:.0f}s", "num_gpus": 1, "num_real_clips": n_real,
                         "num_generated_clips": n_gen, "snapshot_pkl": None, "timestamp": time.time()}
        print(json.dumps(records[name]), flush=True)

    # 4. Write the results
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{args.output}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(records, f, indent=2)
        os.replace(tmp, args.output)
        logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    reexec_for_fast_cpu_convs()
    sys.exit(run_cli(main))
