"""Benchmarks of latte-ms, written as JSON; every performance claim in the docs comes from here.

    python tools/benchmark.py compare --model_name Latte-S/2 --num_frames 16 --latent_size 32 --out cmp.json

    python tools/benchmark.py forward --model_name Latte-S/2 --num_frames 16 --latent_size 32 --out bench.json
    python tools/benchmark.py train --model_name Latte-S/2 --num_frames 16 --latent_size 32 --vae sd --out t.json
    python tools/benchmark.py train --model_name Latte-S/2 --condition class --use_image_num 8   # joint (Latte+IMG)
    python tools/benchmark.py sample --model_name Latte-S/2 --num_frames 16 --latent_size 32 --ddim --out s.json
    python tools/benchmark.py profile --profile_of train --model_name Latte-S/2 --num_frames 16 --latent_size 32
    python tools/benchmark.py forward --model_name Latte-1 --num_frames 16 --latent_size 32 --cfg_scale 7.5

Tasks:
  compare   latte-ms against the official Latte's computation in PyTorch (tools/benchmark_torch.py), same
            shapes: forward, train step, DDIM sampling step and the VAE, each side in its own process (its
            own peak memory), the two sides alternating; prints port/torch ratios. Refuses to run on a busy
            machine (other processes using more than --max_busy of the CPUs, measured from /proc/stat
            before the first run and recorded before each; torch's OpenMP threads spin under contention and
            distort ratios several-fold) unless --force, which marks the result "busy". --cached times
            latte-ms as a later run of train.py / sample.py runs: its graphs loaded from the graph cache, which
            an untimed first run fills (that run's peak and compile are reported too, as "cold").
  forward   Latte forward (inference): compile, then seconds per forward.
  train     the compiled train step (loss + backward + AdamW), from frames through the VAE (--vae sd, random
            sd-vae-ft-mse weights) or from cached latents (--vae none): compile, s/step,
            images/s = batch x frames / step time, peak memory.
  sample    one compiled denoising step (DDPM or --ddim, optional --cfg_scale): compile, s/step.
  vae       encode and decode of one --image_size frame with the sd-vae-ft-mse architecture: s/frame each.
  profile   MindSpore's per-op profile of --profile_of forward|train|vae: the op types by share of time;
            with --peer torch, torch.profiler's of the torch side (aten ops by share of self CPU time).
forward/train/sample/vae take --peer torch to time the PyTorch side (run as `python -m tools.benchmark` from
the repository root, which is what compare does). All models have random weights; only the shapes matter.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

TASKS = ("forward", "train", "sample", "vae")
CACHED_TASKS = ("forward", "train", "sample")  # the tasks whose graphs MindSpore's compile cache can hold
PEERS = ("latte-ms", "torch")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS + ("compare", "profile"), help="what to time")
    parser.add_argument("--peer", choices=PEERS, default="latte-ms", help="which implementation to time")
    parser.add_argument("--model_name", default="Latte-S/2",
                        help="a Latte variant, or a text-to-video one (Latte-1, Latte-1-T, Latte-1-demo: forward and train)")
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
    parser.add_argument("--use_image_num", type=int, default=0,
                        help="train: image-video joint training, this many images after the video frames")
    parser.add_argument("--ddim", action="store_true", help="sample: DDIM instead of DDPM")
    parser.add_argument("--cfg_scale", type=float, default=1.0, help="sample: guidance (> 1 needs --condition class)")
    parser.add_argument("--image_size", type=int, default=256, help="vae: frame side in pixels")
    parser.add_argument("--num_layers", type=int, default=0,
                        help="text-to-video train: keep this many block pairs of the variant (0: all)")
    parser.add_argument("--text_tokens", type=int, default=120,
                        help="text-to-video models: caption tokens (120 = T5 padded; one mask-cut prompt is fewer)")
    parser.add_argument("--profile_of", choices=("forward", "train", "vae"), default="forward",
                        help="profile: what to profile")
    parser.add_argument("--profile_top", type=int, default=12, help="profile: op types listed")
    parser.add_argument("--repeats", type=int, default=2, help="compare: runs of each side per task (alternating)")
    parser.add_argument("--compare_tasks", default="forward,train,sample,vae",
                        help="compare: comma-separated tasks to compare")
    parser.add_argument("--max_busy", type=float, default=0.15,
                        help="compare: refuse when other processes keep more than this fraction of the CPUs busy")
    parser.add_argument("--force", action="store_true", help="compare: run on a busy machine, marking it busy")
    parser.add_argument("--cached", action="store_true",
                        help="compare: time latte-ms as a later run of train.py / sample.py does, loading its "
                             "graphs from the graph cache (an untimed first run per task compiles them into a "
                             "temporary folder; its peak is reported as latte_ms_cold_peak_gib)")
    parser.add_argument("--graph_cache", default="",
                        help="forward/train/sample: a folder for MindSpore's compile cache (as train.py and "
                             "sample.py keep under output_path): run twice to time the compile of a later run")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    return parser.parse_args(argv)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench_t2v_forward(args, ctx):
    """A text-to-video transformer (random weights) as sample.py calls it: the guided denoiser of
    latte.text_to_video on (B, F, 4, h, w) latents and (B, text_tokens, caption) embeddings; with --cfg_scale > 1
    the model batch is doubled as LattePipeline's guidance does."""
    import mindspore as ms

    from latte.env import resolve_dtype
    from latte.models.latte_t2v import LatteT2V
    from latte.models.precision import apply_amp
    from latte.models.registry import t2v_spec
    from latte.text_to_video import TextGuidedDenoiser

    spec = t2v_spec(args.model_name)
    spec["video_length"] = args.num_frames
    net = LatteT2V(latent_size=args.latent_size, **spec)
    net.set_train(False)
    net = apply_amp(net, resolve_dtype(args.dtype, ctx.device_target))
    denoiser = TextGuidedDenoiser(net, guidance_scale=args.cfg_scale)
    batch = args.batch_size * (2 if denoiser.guided else 1)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch_size, args.num_frames, spec["in_channels"], args.latent_size,
                                       args.latent_size)).astype(np.float32))
    t = ms.Tensor(rng.integers(0, 1000, args.batch_size).astype(np.int32))
    text = ms.Tensor(rng.standard_normal((batch, args.text_tokens, spec["caption_channels"])).astype(np.float32))
    first, times = _timed(lambda: denoiser(x, t, text).asnumpy(), args.steps)
    out = _summary(first, times, args.batch_size, "videos")
    out["params_m"] = round(sum(p.size for p in net.get_parameters()) / 1e6, 2)
    out["model_batch"] = batch
    return out


def bench_t2v_train(args, ctx):
    """A text-to-video train step (random weights) as train.py runs it from a text cache: LatteT2VTrainLoss on
    (B, F, 4, h, w) latents and (B, text_tokens, caption) T5 states, backward and AdamW. --num_layers keeps that many
    of the variant's spatial/temporal block pairs (a slice of a model too big for this machine's memory)."""
    import mindspore as ms

    from latte.diffusion import create_diffusion
    from latte.env import resolve_dtype
    from latte.models.latte_t2v import LatteT2V
    from latte.models.precision import apply_amp
    from latte.models.registry import t2v_spec
    from latte.training.optim import create_optimizer, lr_schedule
    from latte.training.step import TrainStep
    from latte.training.text_loss import LatteT2VTrainLoss

    spec = t2v_spec(args.model_name)
    spec["video_length"] = args.num_frames
    if args.num_layers:
        spec["num_layers"] = args.num_layers
    net = LatteT2V(latent_size=args.latent_size, **spec)
    net.set_train(True)
    width, length = spec["caption_channels"], args.text_tokens
    null = (np.zeros((1, length, width), np.float32), np.ones((1, length), np.int32))
    loss_net = LatteT2VTrainLoss(apply_amp(net, resolve_dtype(args.dtype, ctx.device_target)), create_diffusion(""),
                                 null)
    optimizer = create_optimizer(net.trainable_params(), lr_schedule(args.steps + 1, 1e-4))
    step = TrainStep(loss_net, optimizer, "none" if args.dtype == "fp32" else "dynamic", num_terms=2)
    rng = np.random.default_rng(0)
    b = args.batch_size
    latent = (b, args.num_frames, spec["in_channels"], args.latent_size, args.latent_size)
    inputs = [ms.Tensor(rng.standard_normal(latent).astype(np.float32)),
              ms.Tensor(rng.integers(0, 1000, b).astype(np.int32)),
              ms.Tensor(rng.standard_normal(latent).astype(np.float32)), ms.Tensor(np.zeros(latent, np.float32)),
              ms.Tensor((rng.random(b) < 0.1).astype(np.int32)),
              ms.Tensor(rng.standard_normal((b, length, width)).astype(np.float32)),
              ms.Tensor(np.ones((b, length), np.int32))]
    first, times = _timed_train_step(step, inputs, args.steps)
    out = _summary(first, times, b * args.num_frames, "images")
    out["trainable_params_m"] = round(sum(p.size for p in net.trainable_params()) / 1e6, 2)
    out["num_layers"] = spec["num_layers"]
    return out


def bench_forward(args, ctx):
    import mindspore as ms

    from latte.models.registry import T2V_MODELS

    if args.model_name in T2V_MODELS:
        return bench_t2v_forward(args, ctx)

    from latte.env import resolve_dtype
    from latte.models.factory import create_latte
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


def _timed_train_step(step, inputs, steps):
    """_timed for a train step, which train.py compiles (and then releases the compiler's freed memory) before
    its first call: the first call's seconds include that compile."""
    from latte.allocator import compile_and_release

    start = time.perf_counter()
    compile_and_release(step, *inputs)
    compiled = time.perf_counter() - start
    first, times = _timed(lambda: step(*inputs)[0].asnumpy(), steps)
    return compiled + first, times


def _summary(first, times, items_per_step, unit):
    step = float(np.median(times))
    return {"first_call_s": round(first, 3), "compile_s_estimate": round(max(first - step, 0.0), 3),
            "s_per_step": round(step, 4), "s_per_step_min": round(min(times), 4),
            f"{unit}_per_s": round(items_per_step / step, 3)}


def bench_train(args, ctx):
    from latte.models.registry import T2V_MODELS

    if args.model_name in T2V_MODELS:
        return bench_t2v_train(args, ctx)
    import mindspore as ms

    from latte.diffusion import create_diffusion
    from latte.env import resolve_dtype
    from latte.models.factory import create_latte
    from latte.models.precision import apply_amp
    from latte.models.vae_config import VAE_SCALE_FACTOR
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
    joint_class = args.use_image_num > 0 and args.condition == "class"
    if joint_class:  # each image conditioned on its own label
        from latte.training.joint import JointClassTrainLoss

        loss_net = JointClassTrainLoss(apply_amp(latte, dtype), create_diffusion(""), vae, VAE_SCALE_FACTOR,
                                       args.vae_micro_batch)
    else:
        loss_net = LatteTrainLoss(apply_amp(latte, dtype), create_diffusion(""), vae, VAE_SCALE_FACTOR,
                                  args.vae_micro_batch, args.condition)
    optimizer = create_optimizer(latte.trainable_params(), lr_schedule(args.steps + 1, 1e-4))
    step = TrainStep(loss_net, optimizer, "none" if args.dtype == "fp32" else "dynamic", num_terms=2)  # mse, vb
    rng = np.random.default_rng(0)
    b, f, s = args.batch_size, args.num_frames + args.use_image_num, args.latent_size  # video frames + images
    latent = (b, f, 4, s, s)
    x = (b, f, 3, s * 8, s * 8) if vae is not None else latent
    inputs = [ms.Tensor(rng.standard_normal(x).astype(np.float32)),
              ms.Tensor(rng.integers(0, 1000, b).astype(np.int32)),
              ms.Tensor(rng.standard_normal(latent).astype(np.float32)),
              ms.Tensor(rng.standard_normal(latent).astype(np.float32)),
              ms.Tensor((rng.random(b) < 0.1).astype(np.int32))]  # force_drop_ids: label dropout 0.1
    if args.condition == "class":
        inputs.append(ms.Tensor(rng.integers(0, 101, b).astype(np.int32)))
    if joint_class:  # the images' labels and their dropout
        inputs += [ms.Tensor(rng.integers(0, 101, (b, args.use_image_num)).astype(np.int32)),
                   ms.Tensor((rng.random(b) < 0.1).astype(np.int32))]
    first, times = _timed_train_step(step, inputs, args.steps)
    out = _summary(first, times, b * f, "images")
    out["trainable_params_m"] = round(sum(p.size for p in latte.trainable_params()) / 1e6, 2)
    return out


def bench_sample(args, ctx):
    import mindspore as ms

    from latte.diffusion import create_diffusion, denoise_step
    from latte.env import resolve_dtype
    from latte.models.factory import create_latte
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


def bench_vae(args, ctx):
    import mindspore as ms

    from latte.models.vae import AutoencoderKL

    vae = AutoencoderKL()  # the sd-vae-ft-mse architecture, random weights
    vae.set_train(False)
    rng = np.random.default_rng(0)
    side = args.image_size
    frame = ms.Tensor(rng.uniform(-1, 1, (1, 3, side, side)).astype(np.float32))
    latent = ms.Tensor(rng.standard_normal((1, 4, side // 8, side // 8)).astype(np.float32))
    encode, decode = _Call(vae.encode), _Call(vae.decode)
    enc = _timed(lambda: encode(frame)[0].asnumpy(), args.steps)
    dec = _timed(lambda: decode(latent).asnumpy(), args.steps)
    return _vae_summary(enc, dec)


def _vae_summary(enc, dec):
    return {"encode": _summary(*enc, 1, "frames"), "decode": _summary(*dec, 1, "frames"),
            "s_per_step": round(float(np.median(enc[1])) + float(np.median(dec[1])), 4)}


def _Call(fn):
    """A graph-compiled cell around a bound method (encode / decode) of a cell."""
    import mindspore as ms

    class Call(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.owner = fn.__self__

        def construct(self, x):
            return fn(x)

    return Call()


def bench_torch(args):
    import torch

    from tools import benchmark_torch

    torch.set_num_threads(os.cpu_count() or 1)
    if args.task == "vae":
        encode, decode = benchmark_torch.vae_functions(args)
        return _vae_summary(_timed(encode, args.steps), _timed(decode, args.steps))
    from latte.models.registry import model_spec

    spec = model_spec(args.model_name)
    arch = dict(depth=spec["depth"], hidden_size=spec["hidden_size"], num_heads=spec["num_heads"],
                patch_size=spec["patch_size"])
    first, times = _timed(benchmark_torch.step_function(args.task, arch, args), args.steps)
    unit = "images" if args.task == "train" else "videos"
    items = args.batch_size * (args.num_frames if args.task == "train" else 1)
    return _summary(first, times, items, unit)


def profile(args, ctx):
    """Runs forward or train under mindspore.Profiler; returns the op types sorted by their share of time."""
    import csv
    import glob

    import mindspore as ms

    with tempfile.TemporaryDirectory() as folder:
        prof = ms.Profiler(output_path=folder)
        timing = {"forward": bench_forward, "train": bench_train, "vae": bench_vae}[args.profile_of](args, ctx)
        prof.analyse()
        tables = glob.glob(os.path.join(folder, "**", "cpu_op_type_info_0.csv"), recursive=True)
        if not tables:
            raise RuntimeError(f"the profiler wrote no cpu_op_type_info_0.csv under {folder}")
        with open(tables[0]) as f:
            rows = list(csv.DictReader(f))
    total = sum(float(r["total_compute_time"]) for r in rows)
    rows.sort(key=lambda r: -float(r["total_compute_time"]))
    ops_table = [{"op": r["op_type"], "share": round(float(r["total_compute_time"]) / total, 4),
                  "calls_per_step": int(r["execution_frequency(per-step)"]),
                  "ms_per_call": round(float(r["avg_time(ms)"]), 3)} for r in rows[: args.profile_top]]
    return {"profile_of": args.profile_of, "timing": timing, "ops": ops_table}


def profile_torch(args):
    """torch.profiler over the torch side's runs of --profile_of; the ops by share of their self CPU time (the
    time of the op itself, its threads' work included, without the ops it calls), as profile() lists MindSpore's."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    task_args = argparse.Namespace(**{**vars(args), "task": args.profile_of})
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        timing = bench_torch(task_args)
    rows = sorted((e for e in prof.key_averages() if e.self_cpu_time_total > 0), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    runs = args.steps + 1  # the first call and the timed ones, as MindSpore's profile counts them
    ops_table = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 4),
                  "calls_per_step": round(e.count / runs),
                  "ms_per_call": round(e.self_cpu_time_total / e.count / 1e3, 3)} for e in rows[: args.profile_top]]
    return {"profile_of": args.profile_of, "timing": timing, "ops": ops_table}


def _shape_args(args):
    out = ["--model_name", args.model_name, "--num_frames", str(args.num_frames), "--latent_size",
           str(args.latent_size), "--batch_size", str(args.batch_size), "--steps", str(args.steps),
           "--image_size", str(args.image_size)]
    return out + (["--condition", args.condition] if args.condition else [])


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds`, from /proc/stat (the load average would count this tool's
    own runs of the last minute); None where /proc/stat does not exist."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return None
    return round(1.0 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def _run_side(task, peer, args, graph_cache=""):
    """One task of one side in a fresh process (so its peak memory is its own); returns its JSON. With
    `graph_cache` (a folder) the latte-ms side compiles into it, or loads what an earlier run compiled there."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.json")
        cmd = [sys.executable, "-m", "tools.benchmark", task, "--peer", peer, "--out", out] + _shape_args(args)
        if task == "sample":
            cmd.append("--ddim")
        if graph_cache and peer == "latte-ms" and task in CACHED_TASKS:
            cmd += ["--graph_cache", graph_cache]
        busy = cpu_busy()
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        with open(out) as f:
            result = json.load(f)
    result["cpu_busy_before"] = busy
    return result


def _significant(x, digits):
    """x to `digits` significant figures: a fixed count of decimals would cut a small ratio's precision."""
    return float(f"{x:.{digits}g}")


def _ratio(a, b):
    return _significant(a / b, 3) if a and b else None


def compare(args):
    busy = cpu_busy(3.0)
    if busy is not None and busy > args.max_busy and not args.force:
        raise SystemExit(f"compare: other processes keep {busy:.0%} of the CPUs busy (> --max_busy "
                         f"{args.max_busy:.0%}): torch's OpenMP threads spin under contention and the ratios would "
                         "be wrong. Stop other jobs and retry, or pass --force to measure anyway (marked busy).")
    if busy is not None and busy > args.max_busy:
        print(f"WARNING: {busy:.0%} of the CPUs busy before the first run: ratios measured now are unreliable",
              file=sys.stderr)
    tasks = [t.strip() for t in args.compare_tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise SystemExit(f"--compare_tasks: {unknown} not among {list(TASKS)}")
    with tempfile.TemporaryDirectory() as cache:
        return _compare_runs(args, tasks, busy, cache if args.cached else "")


def _compare_runs(args, tasks, busy, cache):
    runs = {task: {peer: [] for peer in PEERS} for task in tasks}
    cold = {}
    if cache:  # one untimed latte-ms run per task compiles into the cache; the timed ones load from it
        for task in [t for t in tasks if t in CACHED_TASKS]:
            cold[task] = _run_side(task, "latte-ms", args, cache)
            print(f"{task:8s} latte-ms  {cold[task]['s_per_step']:.4f} s/step  peak {cold[task]['peak_rss_gib']:.2f} "
                  f"GiB  (compiling into the graph cache)", file=sys.stderr)
    for repeat in range(args.repeats):
        for task in tasks:
            order = PEERS if repeat % 2 == 0 else PEERS[::-1]  # alternate who goes first: drift cancels
            for peer in order:
                result = _run_side(task, peer, args, cache)
                runs[task][peer].append(result)
                print(f"{task:8s} {peer:9s} {result['s_per_step']:.4f} s/step  peak {result['peak_rss_gib']:.2f} GiB"
                      f"  (CPUs busy before: {result['cpu_busy_before']})", file=sys.stderr)
    summary = {}
    for task, sides in runs.items():
        med = {peer: float(np.median([r["s_per_step"] for r in rs])) for peer, rs in sides.items()}
        mem = {peer: float(np.median([r["peak_rss_gib"] for r in rs])) for peer, rs in sides.items()}
        entry = {"latte_ms_s": _significant(med["latte-ms"], 4), "torch_s": _significant(med["torch"], 4),
                 "time_ratio": _ratio(med["latte-ms"], med["torch"]),
                 "latte_ms_peak_gib": round(mem["latte-ms"], 2), "torch_peak_gib": round(mem["torch"], 2),
                 "memory_ratio": _ratio(mem["latte-ms"], mem["torch"])}
        if task == "vae":
            for part in ("encode", "decode"):
                ours = float(np.median([r[part]["s_per_step"] for r in sides["latte-ms"]]))
                theirs = float(np.median([r[part]["s_per_step"] for r in sides["torch"]]))
                entry[f"{part}_ratio"] = _ratio(ours, theirs)
        else:
            entry["latte_ms_compile_s"] = round(float(np.median(
                [r["compile_s_estimate"] for r in sides["latte-ms"]])), 2)
        if task in cold:  # the run that compiled, as a first run of train.py / sample.py does
            entry["latte_ms_cold_peak_gib"] = cold[task]["peak_rss_gib"]
            entry["memory_ratio_cold"] = _ratio(cold[task]["peak_rss_gib"], mem["torch"])
            entry["latte_ms_cold_compile_s"] = cold[task]["compile_s_estimate"]
        summary[task] = entry
    before = [r["cpu_busy_before"] for sides in runs.values() for rs in sides.values() for r in rs]
    measured = [b for b in [busy] + before if b is not None]
    return {"busy": bool(measured) and max(measured) > args.max_busy, "cpu_busy_before_each_run": before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "summary": summary, "runs": runs,
            "cold_runs": cold}


def main(argv=None):
    args = parse_args(argv)
    result = {"task": args.task, "config": vars(args),
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}}
    if args.task == "compare":
        result.update(compare(args))
    elif args.peer == "torch":
        result["device"] = "CPU"
        result.update(profile_torch(args) if args.task == "profile" else bench_torch(args))
    else:
        from latte.env import setup_context

        ctx = setup_context(args.device_target, mode=args.mode, seed=0)
        result["device"] = ctx.device_target
        tasks = {"forward": bench_forward, "train": bench_train, "sample": bench_sample, "vae": bench_vae,
                 "profile": profile}
        from latte.graph_cache import graph_cache

        settings = {k: v for k, v in vars(args).items() if k not in ("out", "graph_cache")}
        with graph_cache(bool(args.graph_cache), args.graph_cache, "benchmark.py", settings, ctx) as folder:
            result.update(tasks[args.task](args, ctx))
        result["graph_cache"] = folder
    result["peak_rss_gib"] = round(peak_rss_gib(), 2)
    text = json.dumps(result, indent=2)
    print(text if args.task != "compare" else json.dumps(result["summary"], indent=2))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def restart_as_the_entry_scripts(args):
    """latte-ms's side runs as train.py / sample.py do: jemalloc preloaded, and oneDNN's ISA capped where the VAE's
    convolutions run (latte.env.restart_with_fast_settings). Torch's side and compare's parent run as started."""
    if args.task != "compare" and args.peer == "latte-ms":
        from latte.env import restart_with_fast_settings

        vae = args.task == "vae" or (args.task == "profile" and args.profile_of == "vae") or args.vae == "sd"
        restart_with_fast_settings(convolutions=vae)


if __name__ == "__main__":
    restart_as_the_entry_scripts(parse_args())
    raise SystemExit(main())
