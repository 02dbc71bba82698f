"""Benchmarks of latte-ms, written as JSON; every performance claim in the docs comes from here.

    python tools/benchmark.py forward --model_name Latte-S/2 --num_frames 16 --latent_size 32 --out bench.json

    python tools/benchmark.py train --model_name Latte-S/2 --num_frames 16 --latent_size 32 --vae sd --out t.json
    python tools/benchmark.py sample --model_name Latte-S/2 --num_frames 16 --latent_size 32 --ddim --out s.json

Tasks:
  forward   Latte forward (inference): compile, then seconds per forward.
  train     the compiled train step (loss + backward + AdamW), from frames through the VAE (--vae sd, random
            sd-vae-ft-mse weights) or from cached latents (--vae none): compile, s/step,
            images/s = batch x frames / step time, peak memory.
  sample    one compiled denoising step (DDPM or --ddim, optional --cfg_scale): compile, s/step.
All models have random weights; only the shapes matter for speed.
"""
import argparse
import json
import platform
import resource
import time

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("forward", "train", "sample"), help="what to time")
    parser.add_argument("--model_name", default="Latte-S/2")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--latent_size", type=int, default=32, help="latent side (image_size / 8)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--condition", default=None, choices=(None, "class"))
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--mode", type=int, default=0, choices=(0, 1), help="0 graph, 1 pynative")
    parser.add_argument("--device_target", default=None)
    parser.add_argument("--steps", type=int, default=5, help="timed runs after the compile run")
    parser.add_argument("--vae", choices=("none", "sd"), default="none",
                        help="train: encode frames with a random full sd-vae-ft-mse inside the step (sd) or "
                             "start from latents (none, as with the embedding cache)")
    parser.add_argument("--vae_micro_batch", type=int, default=8, help="train --vae sd: frames per VAE call")
    parser.add_argument("--use_recompute", action="store_true", help="recompute blocks in backward")
    parser.add_argument("--ddim", action="store_true", help="sample: DDIM instead of DDPM")
    parser.add_argument("--cfg_scale", type=float, default=1.0, help="sample: guidance (> 1 needs --condition class)")
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
    first, times = _timed(lambda: net(x, t, y).asnumpy(), args.steps)
    out = _summary(first, times, args.batch_size, "videos")
    out["params_m"] = round(sum(p.size for p in net.get_parameters()) / 1e6, 2)
    return out


def _timed(fn, steps):
    """(first call seconds, list of later call seconds); fn must block until its result is ready."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, times


def _summary(first, times, items_per_step, unit):
    step = float(np.median(times))
    return {"first_call_s": round(first, 3), "compile_s_estimate": round(max(first - step, 0.0), 3),
            "s_per_step": round(step, 4), "s_per_step_min": round(min(times), 4),
            f"{unit}_per_s": round(items_per_step / step, 3)}


def bench_train(args, ctx):
    import mindspore as ms

    from latte.diffusion import create_diffusion
    from latte.env import resolve_dtype
    from latte.models import create_latte
    from latte.models.precision import apply_amp
    from latte.training.loss import LatteTrainLoss
    from latte.training.optim import create_optimizer, lr_schedule
    from latte.training.step import TrainStep

    dtype = resolve_dtype(args.dtype, ctx.device_target)
    latte = create_latte(args.model_name, input_size=args.latent_size, num_frames=args.num_frames,
                         condition=args.condition, num_classes=101, use_recompute=args.use_recompute)
    latte.set_train(True)
    vae = None
    if args.vae == "sd":
        from latte.models.vae import AutoencoderKL

        vae = AutoencoderKL(dtype=dtype)
    loss_net = LatteTrainLoss(apply_amp(latte, dtype), create_diffusion(""), vae, 0.18215, args.vae_micro_batch,
                              args.condition)
    optimizer = create_optimizer(latte.trainable_params(), lr_schedule(args.steps + 1, 1e-4))
    step = TrainStep(loss_net, optimizer, "none" if args.dtype == "fp32" else "dynamic", num_terms=2)  # mse, vb
    rng = np.random.default_rng(0)
    b, f, s = args.batch_size, args.num_frames, args.latent_size
    latent = (b, f, 4, s, s)
    x = (b, f, 3, s * 8, s * 8) if vae is not None else latent
    inputs = [ms.Tensor(rng.standard_normal(x).astype(np.float32)),
              ms.Tensor(rng.integers(0, 1000, b).astype(np.int32)),
              ms.Tensor(rng.standard_normal(latent).astype(np.float32)),
              ms.Tensor(rng.standard_normal(latent).astype(np.float32)),
              ms.Tensor((rng.random(b) < 0.1).astype(np.int32))]  # force_drop_ids: label dropout 0.1
    if args.condition == "class":
        inputs.append(ms.Tensor(rng.integers(0, 101, b).astype(np.int32)))
    first, times = _timed(lambda: step(*inputs)[0].asnumpy(), args.steps)
    out = _summary(first, times, b * f, "images")
    out["trainable_params_m"] = round(sum(p.size for p in latte.trainable_params()) / 1e6, 2)
    return out


def bench_sample(args, ctx):
    import mindspore as ms

    from latte.diffusion import create_diffusion, denoise_step
    from latte.env import resolve_dtype
    from latte.models import create_latte
    from latte.models.precision import apply_amp

    net = create_latte(args.model_name, input_size=args.latent_size, num_frames=args.num_frames,
                       condition=args.condition, num_classes=101)
    net.set_train(False)
    net = apply_amp(net, resolve_dtype(args.dtype, ctx.device_target))
    diffusion = create_diffusion("50")
    step = denoise_step(diffusion, net, "ddim" if args.ddim else "ddpm", cfg_scale=args.cfg_scale)
    rng = np.random.default_rng(0)
    b = args.batch_size * (2 if args.cfg_scale > 1 else 1)
    shape = (b, args.num_frames, 4, args.latent_size, args.latent_size)
    x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    noise = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    t = ms.Tensor(np.full((b,), 25, np.int32))
    y = ms.Tensor(rng.integers(0, 101, b).astype(np.int32)) if args.condition == "class" else None
    first, times = _timed(lambda: step(x, t, noise, y)[0].asnumpy(), args.steps)
    return _summary(first, times, args.batch_size, "videos")


def main(argv=None):
    args = parse_args(argv)
    from latte.env import setup_context

    ctx = setup_context(args.device_target, mode=args.mode, seed=0)
    result = {"task": args.task, "config": vars(args), "device": ctx.device_target,
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}}
    result.update({"forward": bench_forward, "train": bench_train, "sample": bench_sample}[args.task](args, ctx))
    result["peak_rss_gib"] = round(peak_rss_gib(), 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
