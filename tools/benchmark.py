"""Benchmarks of latte-ms, written as JSON; every performance claim in the docs comes from here.

    python tools/benchmark.py forward --model_name Latte-S/2 --num_frames 16 --latent_size 32 --out bench.json

Tasks:
  forward   Latte forward (inference) time: compile, then s/step over --steps runs.
"""
import argparse
import json
import platform
import resource
import time

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("forward",), help="what to time")
    parser.add_argument("--model_name", default="Latte-S/2")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--latent_size", type=int, default=32, help="latent side (image_size / 8)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--condition", default=None, choices=(None, "class"))
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--mode", type=int, default=0, choices=(0, 1), help="0 graph, 1 pynative")
    parser.add_argument("--device_target", default=None)
    parser.add_argument("--steps", type=int, default=5, help="timed runs after the compile run")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    return parser.parse_args(argv)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench_forward(args, ctx):
    import mindspore as ms

    from latte.env import resolve_dtype
    from latte.models import create_latte
    from latte.models.precision import apply_amp

    net = create_latte(args.model_name, input_size=args.latent_size, num_frames=args.num_frames,
                       condition=args.condition, num_classes=101)
    net.set_train(False)
    net = apply_amp(net, resolve_dtype(args.dtype, ctx.device_target))
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch_size, args.num_frames, 4, args.latent_size,
                                       args.latent_size)).astype(np.float32))
    t = ms.Tensor(rng.integers(0, 1000, args.batch_size).astype(np.int32))
    y = ms.Tensor(rng.integers(0, 101, args.batch_size).astype(np.int32)) if args.condition else None
    start = time.perf_counter()
    net(x, t, y).asnumpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        net(x, t, y).asnumpy()
        times.append(time.perf_counter() - start)
    step = float(np.median(times))
    return {"first_call_s": round(first, 3), "compile_s_estimate": round(first - step, 3),
            "s_per_forward": round(step, 4), "s_per_forward_min": round(min(times), 4),
            "videos_per_s": round(args.batch_size / step, 3),
            "params_m": round(sum(p.size for p in net.get_parameters()) / 1e6, 2)}


def main(argv=None):
    args = parse_args(argv)
    from latte.env import setup_context

    ctx = setup_context(args.device_target, mode=args.mode, seed=0)
    result = {"task": args.task, "config": vars(args), "device": ctx.device_target,
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}}
    result.update({"forward": bench_forward}[args.task](args, ctx))
    result["peak_rss_gib"] = round(peak_rss_gib(), 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
