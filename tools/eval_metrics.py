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
from latte.env import restart_with_fast_settings, setup_context, setup_logging
from latte.io import write_json

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
                        help="mirror the real frames (the legacy fid50k only; every other metric turns it off, as in "
                             "the official code)")
    parser.add_argument("--resolution", type=int, default=None, help="accepted for compatibility (unused)")
    parser.add_argument("--gpus", type=int, default=1, help="only 1 (one device)")
    parser.add_argument("--verbose", type=_bool, default=False)
    parser.add_argument("--use_cache", type=_bool, default=True, help="cache the real data's features")
    parser.add_argument("--num_runs", type=int, default=1, help="repeat each metric (run i uses seed + i)")
    # latte-ms
    parser.add_argument("--i3d_ckpt", default="models/i3d.ckpt", help="converted I3D (tools/metrics_converter.py)")
    parser.add_argument("--inception_ckpt", default="models/inception.ckpt",
                        help="converted 2015 Inception (tools/metrics_converter.py)")
    parser.add_argument("--c3d_ckpt", default="models/c3d.ckpt", help="converted C3D (tools/metrics_converter.py)")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--max_items", type=int, default=None,
                        help="cap the clips of both sides (quick looks and tests; official numbers need none)")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per detector call (FVD, video IS)")
    parser.add_argument("--frame_batch_size", type=int, default=64, help="frames per detector call (FID, IS)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the real clips' sample and offsets")
    parser.add_argument("--device_target", default=None, help="CPU, GPU or Ascend (default: auto)")
    parser.add_argument("--output", default=None, help="JSON file of the results (metric -> record)")
    return parser.parse_args(argv)


def _summary(name, runs):
    """The official results record of one metric: its value(s), _runNN / _mean / _std over several runs."""
    per_run = [v if isinstance(v, dict) else {name: v} for v in runs]
    if len(per_run) == 1:
        return per_run[0]
    results = {f"{key}_run{i + 1:02d}": value for i, r in enumerate(per_run) for key, value in r.items()}
    for key in per_run[0]:
        values = [r[key] for r in per_run]
        mean = sum(values) / len(values)
        results.update({f"{key}_mean": mean, f"{key}_std": (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5})
    return results


def main(argv=None):
    from latte.metrics.recipes import (FID_METRICS, FVD_METRICS, IS_METRICS, METRICS, check_metric_names,
                                       compute_fid, compute_fvd, compute_is, metric_detector,
                                       reads_single_frames)

    args = parse_args(argv)
    setup_logging()
    metrics = [m for m in args.metrics.split(",") if m and m.lower() != "none"]

    # 1. Check the request
    check_metric_names(metrics)
    if args.gpus != 1:
        raise ConfigError(f"--gpus {args.gpus}: tools/eval_metrics.py runs on one device; use --gpus 1")
    if args.num_runs < 1 or (args.max_items is not None and args.max_items < 2):
        raise ConfigError("--num_runs must be >= 1 and --max_items >= 2 (a covariance needs two clips)")
    checkpoints = {"i3d": args.i3d_ckpt, "inception": args.inception_ckpt, "c3d": args.c3d_ckpt}
    from latte.metrics.detectors import detector_by_size  # MindSpore from here on

    setup_context(args.device_target, mode=1)
    logger.info("metrics %s; real %s; generated %s; cache %s", ",".join(metrics), args.real_data_path,
                args.fake_data_path, args.cache_dir if args.use_cache else "off")

    # 2. The detectors, one cell per detector, call flags and frame size
    by_flags = {}

    def detectors_for(name):
        detector, flags = metric_detector(name)
        key = (detector, tuple(sorted(flags.items())))
        if key not in by_flags:
            by_flags[key] = detector_by_size(checkpoints[detector], detector, **flags)
        sized = by_flags[key]
        if not reads_single_frames(name):
            return sized

        def single_frames(hw):
            net = sized(hw)
            return lambda clips: net(clips[:, :, 0])  # (B, 3, 1, H, W) -> (B, 3, H, W)
        return single_frames

    # 3. Each metric, each run
    records = {}
    for name in metrics:
        start, runs, recipe = time.time(), [], METRICS[name]
        detector_path = checkpoints[metric_detector(name)[0]]
        for run in range(args.num_runs):
            seed, cache = args.seed + run, args.cache_dir if args.use_cache else None
            if name in FVD_METRICS:
                value, n_real, n_gen = compute_fvd(recipe, args.real_data_path, args.fake_data_path,
                                                   detectors_for(name), detector_path, args.batch_size, seed, cache,
                                                   args.max_items)
            elif name in FID_METRICS:
                value, n_real, n_gen = compute_fid(recipe, args.real_data_path, args.fake_data_path,
                                                   detectors_for(name), detector_path, args.frame_batch_size, seed,
                                                   cache, args.max_items, args.mirror)
            else:
                batch = args.frame_batch_size if recipe.num_frames is None else args.batch_size
                (mean, std), n_gen = compute_is(recipe, args.fake_data_path, detectors_for(name), batch, seed,
                                                args.max_items)
                value, n_real = {f"{name}_mean": mean, f"{name}_std": std}, 0
            logger.info("%s: %s (%d real items, %d generated items)", name, value, n_real, n_gen)
            runs.append(value)
        total = time.time() - start
        records[name] = {"results": _summary(name, runs), "metric": name, "total_time": total,
                         "total_time_str": f"{total:.0f}s", "num_gpus": 1, "num_real_items": n_real,
                         "num_generated_items": n_gen, "snapshot_pkl": None, "timestamp": time.time()}
        print(json.dumps(records[name]), flush=True)

    # 4. Write the results
    if args.output:
        write_json(records, args.output)
        logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    restart_with_fast_settings()
    sys.exit(run_cli(main))
