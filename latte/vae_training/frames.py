"""Frames for autoencoder training: capturing a sampled fraction of video frames as PNGs, and reading them back
as deterministic, resumable batches.

Capture. Each video's kept frames are drawn from numpy's generator seeded (seed, crc32 of the video's name):
frame i is kept when u_i < ae_frame_sample_prob, so the choice depends on neither the video order nor the
filter list. Frames of `<data_folder>/<dir>/<video>.mp4` go to `<frame_folder>/<dir>/<video>/frame_XXXXXX.png`
(frame index in the name; source resolution, RGB), written to a temporary folder that is renamed when the
video is done: an interrupted capture is continued by running it again (finished videos are skipped).

Batches. Training frames are the images under frame_folder minus `val_frames` held-out ones (chosen by the
seed). Micro-batch k holds global samples k*B .. k*B + B - 1; sample g is position g % N of the permutation
seeded (seed, g // N): a resumed run continues the exact sequence, whatever the number of decoding threads.
"""
import contextlib
import logging
import os
import shutil
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from latte.data.errors import DataError, VideoReadError
from latte.data.readers import short_reason, video_read_errors
from latte.data.sources import get_source_type, natural_key
from latte.data.transforms import center_crop_resize, to_channels, to_model_range, to_rgb
from latte.io import IMAGE_EXTENSIONS
from latte.random_streams import Stream

logger = logging.getLogger(__name__)

FRAME_PATTERN = "frame_{:06d}.png"
PARTIAL_SUFFIX = ".partial"
DECODE_CHUNK = 32  # frames decoded at once while capturing (bounds memory for long videos)


# ---------------------------------------------------------------------------------------------------------
# Capture
# ---------------------------------------------------------------------------------------------------------

@dataclass
class CaptureReport:
    folder: str
    videos: int = 0  # videos listed (after the filter list)
    captured: int = 0  # videos whose frames this run wrote
    already: int = 0  # videos captured by an earlier run (skipped)
    frames: int = 0  # frames this run wrote
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (video, reason): unreadable or failed

    def summary(self):
        text = (f"{self.frames} frames from {self.captured} videos written to {self.folder} "
                f"({self.already} videos already captured, {len(self.skipped)} skipped, {self.videos} listed)")
        if self.skipped:
            text += "; skipped: " + "; ".join(f"{name} ({reason})" for name, reason in self.skipped)
        return text


def kept_frame_indices(name, num_frames, prob, seed):
    """Indices of the frames of video `name` that capture keeps: each with probability prob, seeded."""
    rng = np.random.default_rng([seed, Stream.VAE_CAPTURE, zlib.crc32(name.encode("utf-8"))])
    return np.flatnonzero(rng.random(num_frames) < prob)


def video_frame_folders(frame_folder, entries):
    """Where the frames of each video go: its name (path relative to data_folder) without the file extension,
    or with it when two videos differ only by extension (a.mp4, a.avi)."""
    stems = [os.path.splitext(e.name)[0] if e.path and os.path.isfile(e.path) else e.name for e in entries]
    counts = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    names = [stem if counts[stem] == 1 else e.name for stem, e in zip(stems, entries)]
    return [os.path.join(frame_folder, *name.split("/")) for name in names]


def _write_png(frame, path):
    from PIL import Image

    Image.fromarray(frame).save(path)


def capture_video(source, entry, data_config, image_size, target, prob, seed):
    """Writes the kept frames of one video into `target`; returns how many. Raises VideoReadError."""
    reader = source.open_video(entry, data_config, image_size)
    partial = target + PARTIAL_SUFFIX
    with video_read_errors(), contextlib.closing(reader):
        indices = kept_frame_indices(entry.name, int(reader.num_frames), prob, seed)
        if os.path.isdir(partial):
            shutil.rmtree(partial)  # left by an interrupted run
        os.makedirs(partial)
        for start in range(0, len(indices), DECODE_CHUNK):
            chunk = indices[start:start + DECODE_CHUNK]
            frames = to_rgb(np.asarray(reader.get_frames(chunk)))  # uint8 (k, H, W, 3)
            for index, frame in zip(chunk, frames):
                _write_png(frame, os.path.join(partial, FRAME_PATTERN.format(int(index))))
    os.replace(partial, target)
    return len(indices)


def capture_frames(cfg, show_progress=True):
    """Captures frames of every video of cfg.data_config into cfg.frame_folder. Returns a CaptureReport."""
    from latte.data.index import build_video_index
    from latte.env import progress

    data_config, size = cfg.data_config, cfg.frame_size
    index = build_video_index(data_config, num_frames=1, image_size=size)  # honours the filter list
    source = get_source_type(data_config.train_data_type)
    report = CaptureReport(cfg.frame_folder, videos=len(index.entries) + len(index.skipped),
                           skipped=list(index.skipped))
    os.makedirs(cfg.frame_folder, exist_ok=True)
    targets = video_frame_folders(cfg.frame_folder, index.entries)
    bar = progress(list(zip(index.entries, targets)), desc="capture", unit="video", disable=not show_progress)
    for entry, target in bar:
        if os.path.isdir(target):
            report.already += 1
            continue
        try:
            report.frames += capture_video(source, entry, data_config, size, target, cfg.ae_frame_sample_prob,
                                           cfg.seed)
            report.captured += 1
        except VideoReadError as exc:
            report.skipped.append((entry.name, str(exc)))
            logger.warning("capture: skipping %s (%s)", entry.name, exc)
        bar.set_postfix(frames=report.frames, refresh=False)
    bar.close()
    return report


# ---------------------------------------------------------------------------------------------------------
# Training batches
# ---------------------------------------------------------------------------------------------------------

def list_frame_images(folder):
    """Every image under folder (any depth, natural order), skipping unfinished capture folders."""
    if not os.path.isdir(folder):
        raise DataError(f"frame_folder={folder!r} does not exist: run tools/capture_frames.py -c CONFIG first "
                        "(or point frame_folder at a folder of images)")
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".") and not d.endswith(PARTIAL_SUFFIX)),
                         key=natural_key)
        paths += [os.path.join(root, f) for f in sorted(files, key=natural_key)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise DataError(f"frame_folder={folder!r} holds no images ({'/'.join(IMAGE_EXTENSIONS)}): run "
                        "tools/capture_frames.py -c CONFIG first")
    return paths


def split_frames(paths, val_frames, seed):
    """(train paths, val paths): val_frames images chosen by the seed are held out (at most half)."""
    count = min(val_frames, len(paths) // 2)
    chosen = set(np.random.default_rng([seed, Stream.VAE_SPLIT]).permutation(len(paths))[:count].tolist())
    val = [p for i, p in enumerate(paths) if i in chosen]
    train = [p for i, p in enumerate(paths) if i not in chosen]
    return train, val


def load_frame(path, size, channels):
    """An image file -> float32 (channels, H, W) in [-1, 1]: centre crop to the aspect, resize, RGB or luma."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot decode training frame {path} ({short_reason(exc)}): delete it or capture "
                        "again") from exc
    frame = to_model_range(center_crop_resize(rgb[None], size))[0]  # (1, H0, W0, 3) -> (3, H, W)
    return to_channels(frame, channels, axis=0)


def load_frames(paths, size, channels):
    return np.stack([load_frame(p, size, channels) for p in paths]) if paths else None


class FrameBatches:
    """Deterministic micro-batches of training frames plus their posterior noise, by micro-batch index."""

    def __init__(self, paths, batch_size, size, channels, latent_shape, seed, workers=2):
        self.paths = list(paths)
        self.batch_size = batch_size
        self.size = tuple(size)
        self.channels = channels
        self.latent_shape = tuple(latent_shape)  # (C, h, w) per frame
        self.seed = seed
        self.workers = workers
        self._orders = {}  # epoch -> permutation (worker threads share it)
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.paths)

    def micro_batches_per_epoch(self):
        return max(len(self.paths) // self.batch_size, 1)

    def _order_of(self, epoch):
        with self._lock:
            if epoch not in self._orders:
                if len(self._orders) > 2:  # keep the current epochs only
                    self._orders.pop(min(self._orders))
                rng = np.random.default_rng([self.seed, Stream.VAE_ORDER, epoch])
                self._orders[epoch] = rng.permutation(len(self.paths))
            return self._orders[epoch]

    def sample_paths(self, micro):
        """Frame paths of micro-batch `micro` (global index from the start of training)."""
        n = len(self.paths)
        first = micro * self.batch_size
        out = []
        for g in range(first, first + self.batch_size):
            epoch, position = divmod(g, n)
            out.append(self.paths[int(self._order_of(epoch)[position])])
        return out

    def noise(self, micro):
        """Standard normal posterior noise (B, C, h, w): sample g draws from (seed, g)."""
        first = micro * self.batch_size
        return np.stack([np.random.default_rng([self.seed, Stream.VAE_NOISE, g]).standard_normal(
            self.latent_shape, dtype=np.float32) for g in range(first, first + self.batch_size)])

    def batch(self, micro):
        """(frames float32 (B, C, H, W) in [-1, 1], noise float32 (B, L, h, w)) of micro-batch `micro`."""
        return load_frames(self.sample_paths(micro), self.size, self.channels), self.noise(micro)

    def iterate(self, start_micro, prefetch=4):
        """Yields batch(start_micro), batch(start_micro + 1), ... decoded `prefetch` ahead on worker threads."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending = deque(pool.submit(self.batch, start_micro + i) for i in range(prefetch))
            micro = start_micro + prefetch
            while True:
                result = pending.popleft().result()
                pending.append(pool.submit(self.batch, micro))
                micro += 1
                yield result
