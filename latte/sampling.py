"""Turning a Latte checkpoint into videos: model loading, label choice, denoising, decoding and writing."""
import logging
import os
import time
from collections import OrderedDict

import numpy as np

import mindspore as ms

from latte.diffusion import duplicate_for_cfg, guidance_enabled, sample_loop
from latte.env import resolve_dtype
from latte.io import save_frames, save_video, video_to_uint8
from latte.models.loader import load_latte

logger = logging.getLogger(__name__)


class Timer:
    """Named wall-clock sections, printed as a table at the end of a run."""

    def __init__(self):
        self.sections = OrderedDict()

    def add(self, name, seconds):
        self.sections[name] = self.sections.get(name, 0.0) + seconds

    def section(self, name):
        timer = self

        class _Section:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.add(name, time.perf_counter() - self.start)

        return _Section()

    def table(self, extra=()):
        rows = list(self.sections.items()) + list(extra)
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name:<{width}}  {value:10.2f}" if isinstance(value, float) else
                         f"  {name:<{width}}  {value:>10}" for name, value in rows)


def load_latte_for_inference(cfg, device_target):
    """Latte for `cfg`'s options with the checkpoint loaded strictly, in eval mode and cfg.dtype."""
    describe = (f"{cfg.model_name} (image_size {cfg.image_size}, num_frames {cfg.num_frames}, "
                f"condition {cfg.condition})")
    return load_latte(cfg.checkpoint, resolve_dtype(cfg.dtype, device_target), describe, model_name=cfg.model_name,
                      **cfg.latte_kwargs())


def choose_labels(cfg, count, rng):
    """class_labels cycled to `count`, or random labels; None for unconditional models."""
    if cfg.condition != "class":
        return None
    if cfg.class_labels:
        return np.resize(np.asarray(cfg.class_labels, np.int32), count)
    return rng.integers(0, cfg.num_classes, count).astype(np.int32)


class VideoSampler:
    """Denoises batches of latent videos with one compiled step graph (DDPM or DDIM, optional CFG)."""

    def __init__(self, cfg, model):
        self.cfg = cfg
        self.model = model
        # As the official sample.py: the respacing is built from the step count, for DDPM and DDIM alike.
        self.diffusion = cfg.create_diffusion(str(cfg.sampling_steps))
        self.method = "ddim" if cfg.ddim_sampling else "ddpm"
        self.use_cfg = guidance_enabled(cfg.guidance_scale)

    def latent_shape(self, batch):
        c = self.cfg
        return (batch, c.num_frames, c.latent_channels, c.latent_size, c.latent_size)

    @staticmethod
    def compile_seconds(step_times):
        """The first step's extra time over a typical step: the graph compile (0 when nothing was timed)."""
        if len(step_times) < 2:
            return 0.0
        return max(step_times[0] - float(np.median(step_times[1:])), 0.0)

    def sample(self, labels, batch, seed, trajectory=False, step_times=None):
        """Latents (B, F, C, h, w) [and the trajectory (T + 1, B, F, C, h, w)] for one batch.

        step_times, when a list, receives the wall time of every denoising step.
        """
        rng = np.random.default_rng(seed)
        z = rng.standard_normal(self.latent_shape(batch), dtype=np.float32)
        y = None if labels is None else ms.Tensor(labels)
        if self.use_cfg:  # [z, z] with [labels, null]: the official recipe
            z, y = duplicate_for_cfg(z, labels, null_label=self.cfg.num_classes)
        out = sample_loop(self.diffusion, self.model, tuple(z.shape), method=self.method, noise=z, y=y,
                          cfg_scale=self.cfg.guidance_scale if self.use_cfg else 1.0, clip_denoised=self.cfg.clip_x0,
                          eta=self.cfg.ddim_eta if self.method == "ddim" else 0.0, progress=True,
                          return_trajectory=trajectory, seed=seed + 1, step_times=step_times,
                          resample_rounds=self.cfg.resample_rounds)
        latents, path = out if trajectory else (out, None)
        if self.use_cfg:  # keep the guided half
            latents = latents[:batch]
            path = None if path is None else path[:, :batch]
        return latents, path


class FrameDecoder:
    """Latents (B, F, C, h, w) -> frames (B, F, 3, H, W) in about [-1, 1]: the VAE, or identity in pixel space."""

    def __init__(self, cfg, device_target):
        self.cfg = cfg
        self.vae = None
        if not cfg.pixel_space:
            from latte.models.vae import load_vae

            vae_dtype = getattr(cfg, "vae_dtype", None) or cfg.dtype
            self.vae = load_vae(cfg.vae_checkpoint, dtype=resolve_dtype(vae_dtype, device_target))

    def __call__(self, latents):
        if self.vae is None:
            return latents
        from latte.models.vae import decode_video

        return decode_video(self.vae, latents, self.cfg.vae_micro_batch, scale=self.cfg.latent_scale)


def enlarge(frames, scale):
    """(..., H, W, C) uint8 -> (..., H*scale, W*scale, C), nearest neighbour."""
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def run_dir(output_path, stamp=None):
    """output_path/<YYYY-mm-dd_HH-MM-SS>, made unique if two runs start in the same second."""
    stamp = stamp or time.strftime("%Y-%m-%d_%H-%M-%S")
    path = os.path.join(output_path, stamp)
    suffix = 1
    while os.path.exists(path):
        path = os.path.join(output_path, f"{stamp}_{suffix}")
        suffix += 1
    os.makedirs(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------

def video_name(index, label):
    if label is None:
        return f"sample_{index:03d}"
    return f"sample_{index:03d}_class{int(label)}"


SAMPLE_FRAMES_FOLDER = "videos"  # save_format frames: <run>/videos/<sample>/<frame>.png, what the metrics read


def write_video(frames_uint8, stem, cfg):
    """frames (F, H, W, 3) uint8 -> stem.gif / stem.mp4 as cfg.save_format says, or (frames) a folder of PNG
    frames <run>/videos/<stem name>/; returns the paths."""
    if cfg.save_format == "frames":
        folder = os.path.join(os.path.dirname(stem), SAMPLE_FRAMES_FOLDER, os.path.basename(stem))
        return [save_frames(frames_uint8, folder)]
    suffixes = {"gif": [".gif"], "mp4": [".mp4"], "both": [".gif", ".mp4"]}[cfg.save_format]
    paths = [stem + suffix for suffix in suffixes]
    for path in paths:
        save_video(frames_uint8, path, fps=cfg.fps)
    return paths


def trajectory_frames(decode, path, index, cfg):
    """Decoded x_t of sample `index` at every trajectory_stride-th step (and the last): each a grid of all frames."""
    steps = list(range(0, path.shape[0], cfg.trajectory_stride))
    steps += [path.shape[0] - 1] if steps[-1] != path.shape[0] - 1 else []
    frames = []
    for k in steps:
        clip = decode(path[k, index:index + 1])
        video = enlarge(video_to_uint8(clip.asnumpy()[0]), cfg.display_scale)  # (F, H, W, 3)
        frames.append(mosaic(video))  # one (rows*H, cols*W, 3) image
    return np.stack(frames)


def mosaic(frames):
    """(F, H, W, 3) -> (rows*H, cols*W, 3) with cols = ceil(sqrt(F))."""
    f, h, w, c = frames.shape
    cols = int(np.ceil(np.sqrt(f)))
    rows = int(np.ceil(f / cols))
    canvas = np.zeros((rows * cols, h, w, c), frames.dtype)
    canvas[:f] = frames
    canvas = canvas.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)  # -> (rows, H, cols, W, 3)
    return canvas.reshape(rows * h, cols * w, c)
