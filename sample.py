"""Sample videos from a Latte checkpoint.

    python sample.py -c configs/inference/sky.yaml                       # unconditional
    python sample.py -c configs/inference/ucf101.yaml --guidance_scale 7  # class-conditional with guidance
    python sample.py -c configs/inference/t2v.yaml --prompt "a cat wearing sunglasses"   # Latte-1 text-to-video

The checkpoint's record picks the keys: a LatteT2V (kind latte_t2v) reads TextToVideoSampleConfig's, any other
Latte SampleConfig's.

Writes <output_path>/<timestamp>/ with the videos (gif and/or mp4; save_format frames: a folder of PNG frames
per video under videos/, the --fake_data_path of tools/eval_metrics.py), a PNG grid of first frames, optional
trajectory videos, and config.yaml (the resolved config that ran).
"""
import logging
import os
import time

import numpy as np

from latte.cli import run_cli
from latte.config import load_config, save_config, to_dict
from latte.env import restart_with_fast_settings, setup_context_from, setup_logging
from latte.graph_cache import graph_cache
from latte.io import save_image_grid, save_video, video_to_uint8
from latte.t2v_options import TextToVideoSampleConfig, sample_config_class

logger = logging.getLogger("sample")


def main(argv=None):
    start = time.perf_counter()
    # 1. Config, device, output folder (a config error comes before MindSpore is imported)
    cfg = load_config(sample_config_class(argv), argv, __doc__)
    if isinstance(cfg, TextToVideoSampleConfig):
        return main_text_to_video(cfg, start)
    from latte.sampling import (FrameDecoder, Timer, VideoSampler, choose_labels, enlarge, load_latte_for_inference,
                                run_dir, trajectory_frames, video_name, write_video)

    setup_logging()
    ctx = setup_context_from(cfg)
    timer = Timer()

    with graph_cache(cfg.graph_cache, cfg.output_path, "sample.py", to_dict(cfg), ctx):
        # 2. Models: Latte (strictly loaded) and the VAE (none for pixel-space models); then the output folder
        with timer.section("checkpoint load"):
            latte = load_latte_for_inference(cfg, ctx.device_target)
            decode = FrameDecoder(cfg, ctx.device_target)
        sampler = VideoSampler(cfg, latte)
        out_dir = run_dir(cfg.output_path)
        save_config(cfg, os.path.join(out_dir, "config.yaml"))
        logger.info("sampling %d video(s) with %s from %s, %s %d steps, guidance %.1f -> %s", cfg.num_samples,
                    cfg.model_name, cfg.checkpoint, "DDIM" if cfg.ddim_sampling else "DDPM", cfg.sampling_steps,
                    cfg.guidance_scale, out_dir)

        # 3. Denoise and decode, batch by batch
        labels = choose_labels(cfg, cfg.num_samples, np.random.default_rng(cfg.seed))
        first_frames, written, step_times = [], [], []
        for first in range(0, cfg.num_samples, cfg.batch_size):
            count = min(cfg.batch_size, cfg.num_samples - first)
            batch_labels = None if labels is None else labels[first:first + count]
            with timer.section("denoising"):
                latents, path = sampler.sample(batch_labels, count, seed=cfg.seed + first,
                                               trajectory=cfg.save_trajectory, step_times=step_times)
            with timer.section("VAE decode"):
                videos = enlarge(video_to_uint8(decode(latents).asnumpy()), cfg.display_scale)  # (B, F, H, W, 3)
            with timer.section("writing"):
                for i in range(count):
                    stem = os.path.join(out_dir, video_name(first + i, None if labels is None else batch_labels[i]))
                    written += write_video(videos[i], stem, cfg)
                    first_frames.append(videos[i][0])
                    if path is not None:
                        save_video(trajectory_frames(decode, path, i, cfg), stem + "_trajectory.gif", fps=cfg.fps)
        if cfg.save_grid:
            save_image_grid(np.stack(first_frames), os.path.join(out_dir, "first_frames.png"))

        # 4. Report
        timer.sections["denoising"] -= sampler.compile_seconds(step_times)
        extra = [("graph compile", sampler.compile_seconds(step_times)),
                 ("total", time.perf_counter() - start),
                 ("s / denoising step", float(np.median(step_times)) if step_times else 0.0)]
        logger.info("wrote %d video file(s), %d file(s) in all, to %s\ntiming (s):\n%s", len(written),
                    len(os.listdir(out_dir)), out_dir, timer.table(extra))
    return out_dir


def main_text_to_video(cfg, start):
    """Prompts -> videos with a LatteT2V (Latte-1), as the official sample/sample_t2x.py: one prompt at a time."""
    # 1. Device, scheduler
    from latte.sampling import Timer
    from latte.text_to_video import create_sampling_scheduler

    setup_logging()
    ctx = setup_context_from(cfg)
    scheduler = create_sampling_scheduler(cfg.scheduler, cfg.scheduler_config, cfg.ddim_eta, cfg.scheduler_overrides())
    timer = Timer()
    with graph_cache(cfg.graph_cache, cfg.output_path, "sample.py", to_dict(cfg), ctx):
        return _text_to_video(cfg, ctx, scheduler, timer, start)


def _text_to_video(cfg, ctx, scheduler, timer, start):
    """Phases 2-5 of main_text_to_video (inside its graph cache)."""
    from latte.sampling import VideoSampler, run_dir
    from latte.t2v_sampling import (TextToVideoSampler, VideoDecoder, load_transformer, prompt_embeddings,
                                    sample_stem, write_sample)

    # 2. Prompt embeddings: T5 (then released) or the text embeddings file
    with timer.section("text encoding"):
        embeddings = prompt_embeddings(cfg, ctx.device_target)

    # 3. Models: LatteT2V and the VAE, strictly loaded
    with timer.section("checkpoint load"):
        sampler = TextToVideoSampler(cfg, load_transformer(cfg, ctx.device_target), scheduler)
        decode = VideoDecoder(cfg, ctx.device_target)
    out_dir = run_dir(cfg.output_path)  # once everything loaded: a failed start leaves no empty folder
    save_config(cfg, os.path.join(out_dir, "config.yaml"))
    prompts = cfg.prompts()
    logger.info("sampling %d prompt(s) x %d with %s, %s %d steps, guidance %.1f, %d frame(s) of %dx%d -> %s",
                len(prompts), cfg.num_samples_per_prompt, cfg.checkpoint, type(scheduler).__name__,
                cfg.sampling_steps, cfg.guidance_scale, cfg.video_length, *cfg.frame_size, out_dir)

    # 4. Denoise, decode and write, one video at a time
    written, step_times, compile_seconds = [], [], 0.0
    for p, (prompt, (embeds, negative)) in enumerate(zip(prompts, embeddings)):
        for s in range(cfg.num_samples_per_prompt):
            logger.info("prompt %d/%d, sample %d: %r", p + 1, len(prompts), s + 1, prompt)
            times = []
            with timer.section("denoising"):
                latents = sampler.sample(embeds, negative, p, s, step_times=times)
            with timer.section("VAE decode"):
                frames = decode(latents)[0]  # (F, H, W, 3) uint8
            with timer.section("writing"):
                written += write_sample(frames, sample_stem(out_dir, p, prompt, s, cfg.num_samples_per_prompt), cfg)
            compile_seconds += VideoSampler.compile_seconds(times)  # a new text length compiles a new graph
            step_times += times

    # 5. Report
    timer.sections["denoising"] -= compile_seconds
    extra = [("graph compile", compile_seconds), ("total", time.perf_counter() - start),
             ("s / denoising step", float(np.median(step_times)) if step_times else 0.0)]
    logger.info("wrote %d video file(s), %d file(s) in all, to %s\ntiming (s):\n%s", len(written),
                len(os.listdir(out_dir)), out_dir, timer.table(extra))
    return out_dir


if __name__ == "__main__":
    restart_with_fast_settings()
    raise SystemExit(run_cli(main, exit_code_from_main=False))
