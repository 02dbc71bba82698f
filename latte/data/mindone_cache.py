"""mindone's Latte embedding caches (mindspore-lab/mindone examples/latte/tools/embedding_cache.py), read to be
converted into a latte-ms numpy cache by tools/mindone_cache.py.

What mindone's cache writers store, from their code:

    numpy       <cache>/<video>.npz               "video": the video's name (a 0-d string array)
                <cache>/<video>/video_latent-<frame>.npy
                                                  one frame's latents (4, h, w); <frame> is the stem of its image
    npz         <cache>/<video>.npz               "video_latent" (F, 4, h, w) and "video" (the earlier writer)
    mindrecord  <cache>/<data yaml stem><N>.mindrecord (+ .db)
                                                  one row per video: "video" (string), "video_latent" float32
                                                  (F, 4, h, w)

Latents are VAE samples (mean + std * unseeded noise, SD VAE: 4 channels, h = w = image_size / 8) of the frames as
mindone's data config transformed them, times sd_scale_factor, in save_data_type (float16 or float32; mindrecord
float32 only). A video's frames are in the order mindone listed its images: by the integer after the last '_' of
the image name's stem (Sky Timelapse's `<video>_frames_00000046.jpg`). <video> is the name of the frame folder.

Not converted (their values are not known well enough to train on here): caches of condition "class" (the "class"
column holds numbers whose class names mindone does not store, and its Sky dataset, the one its cache tool walks,
has no labels) and "text" ("text_emb" holds CLIP or mindone T5 states, not the T5 states latte-ms's text-to-video
model reads). Those are cached again with tools/embedding_cache.py.
"""
import glob
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from latte.data.cache import CACHE_FORMAT, CACHE_VERSION, HEADER
from latte.data.cache_writers import NumpyCacheWriter
from latte.data.config import NUMPY as LATTE_NUMPY
from latte.data.errors import DataError
from latte.data.mindone_layout import (FRAME_PREFIX, LATENT_KEY, MINDRECORD, MINDRECORD_SUFFIX, NAME_KEY, NPY_SUFFIX,
                                       NPZ, NPZ_SUFFIX, NUMPY, RECACHE, mindone_layout, npz_keys)
from latte.env import progress

logger = logging.getLogger(__name__)

CONDITION_KEYS = {"class": "class", "caption": "text", "text_emb": "text", "token_mask": "text"}
UNCONVERTED = {"class": "mindone stores label numbers without their class names",
               "text": "its caption states are CLIP's or its own T5's, not the T5 states latte-ms reads"}
LATENT_CHANNELS = 4  # mindone's SD VAE (its schema and writers fix 4 channels)
VAE_DOWNSAMPLE = 8  # image_size / latent side of the SD VAE
LATENT_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class MindoneVideo:
    name: str
    files: Tuple[str, ...]  # numpy: the frame .npy files in frame order; npz: (the .npz,); mindrecord: (the file,)
    row: int = -1  # mindrecord: the row of the video in its file


def _refuse_condition(where, keys):
    found = sorted(k for k in keys if k in CONDITION_KEYS)
    if found:
        condition = CONDITION_KEYS[found[0]]
        raise DataError(f"{where} holds {', '.join(found)}: a mindone cache of condition {condition!r}, which is not "
                        f"converted ({UNCONVERTED[condition]}); "
                        f"{RECACHE.replace('--cache_file_type numpy', f'--condition {condition}')}")


def frame_order(path):
    """Sort key of a numpy cache's frame file: mindone's image order (the integer after the stem's last '_')."""
    stem = os.path.basename(path)[len(FRAME_PREFIX):-len(NPY_SUFFIX)]
    try:
        return int(stem.split("_")[-1])
    except ValueError:
        raise DataError(f"{path}: frame name {stem!r} does not end in _<number> (mindone orders a video's frames "
                        f"by it), so the frame order is unknown; {RECACHE}") from None


def list_mindone_videos(folder, layout):
    """The videos of a mindone cache, sorted by name."""
    if layout == MINDRECORD:
        return _list_mindrecord(folder)
    if layout == NPZ:
        videos = [MindoneVideo(os.path.basename(p)[:-len(NPZ_SUFFIX)], (p,))
                  for p in glob.glob(os.path.join(folder, "*" + NPZ_SUFFIX))]
    else:
        videos = []
        for sub in glob.glob(os.path.join(folder, "*", "")):
            frames = sorted(glob.glob(os.path.join(sub, FRAME_PREFIX + "*" + NPY_SUFFIX)), key=frame_order)
            if frames:
                videos.append(MindoneVideo(os.path.basename(os.path.dirname(sub)), tuple(frames)))
        for path in glob.glob(os.path.join(folder, "*" + NPZ_SUFFIX)):  # the per-video records beside them
            _refuse_condition(path, npz_keys(path))
    names = [v.name for v in videos]
    if len(set(names)) != len(names):
        raise DataError(f"{folder}: two videos are named alike in a mindone cache: {sorted(names)[:6]}")
    return sorted(videos, key=lambda v: v.name)


def _mindrecord_reader(path):
    from mindspore.mindrecord import FileReader

    try:
        return FileReader(path)
    except Exception as exc:  # MindSpore raises RuntimeError/MRM* errors for damaged files
        raise DataError(f"cannot open {path} ({' '.join(str(exc).split())[:200]}); {RECACHE}") from exc


def _list_mindrecord(folder):
    videos = []
    for path in sorted(glob.glob(os.path.join(folder, "*" + MINDRECORD_SUFFIX))):
        reader = _mindrecord_reader(path)
        try:
            for row, item in enumerate(reader.get_next()):
                if row == 0:
                    _refuse_condition(path, item)
                    if LATENT_KEY not in item or NAME_KEY not in item:
                        raise DataError(f"{path} has the columns {sorted(item)}, not mindone's {NAME_KEY!r} and "
                                        f"{LATENT_KEY!r}; {RECACHE}")
                videos.append(MindoneVideo(_text(item[NAME_KEY]), (path,), row))
        finally:
            reader.close()
    return sorted(videos, key=lambda v: v.name)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def check_latents(array, where):
    """Raises DataError unless array is latents (F, 4, h, w) in a stored dtype."""
    if array.ndim != 4 or array.shape[1] != LATENT_CHANNELS or not len(array):
        raise DataError(f"{where}: latents of shape {array.shape}, mindone writes (frames, {LATENT_CHANNELS}, h, w)")
    if array.dtype.name not in LATENT_DTYPES:
        raise DataError(f"{where}: latents in {array.dtype}, mindone writes {' or '.join(LATENT_DTYPES)}")


def _load_npy(path):
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); {RECACHE}") from exc


def read_videos(videos, layout, skip=()):
    """Yields (i, latents (F, 4, h, w) in their stored dtype, checked) for each videos[i] with i not in skip;
    a mindrecord file is read once, in its row order."""
    if layout == MINDRECORD:
        yield from _read_mindrecord(videos, skip)
        return
    for i, video in enumerate(videos):
        if i in skip:
            continue
        if layout == NUMPY:
            frames = [_load_npy(p) for p in video.files]
            for path, frame in zip(video.files, frames):
                if frame.shape != frames[0].shape or frame.dtype != frames[0].dtype:
                    raise DataError(f"{path}: a frame of shape {frame.shape} {frame.dtype} in a video whose first "
                                    f"frame is {frames[0].shape} {frames[0].dtype}")
            latents = np.stack(frames)  # F x (4, h, w) -> (F, 4, h, w)
        else:
            with np.load(video.files[0]) as stored:
                _refuse_condition(video.files[0], stored.files)
                if LATENT_KEY not in stored.files:
                    raise DataError(f"{video.files[0]} has no {LATENT_KEY!r} array (it holds {sorted(stored.files)})")
                latents = stored[LATENT_KEY]
        check_latents(latents, f"{video.name} ({video.files[0]})")
        yield i, latents


def _read_mindrecord(videos, skip):
    at = {(v.files[0], v.row): i for i, v in enumerate(videos)}
    for path in sorted({v.files[0] for v in videos}):
        reader = _mindrecord_reader(path)
        try:
            for row, item in enumerate(reader.get_next()):
                i = at.get((path, row))
                if i is None or i in skip:
                    continue
                if _text(item[NAME_KEY]) != videos[i].name:
                    raise DataError(f"{path}: row {row} is {_text(item[NAME_KEY])!r}, not {videos[i].name!r} (the "
                                    "file changed while converting)")
                latents = np.asarray(item[LATENT_KEY])
                check_latents(latents, f"{videos[i].name} ({path} row {row})")
                yield i, latents
        finally:
            reader.close()


# ---------------------------------------------------------------------------------------------------------
# Converting into a latte-ms numpy cache
# ---------------------------------------------------------------------------------------------------------

def converted_header(source, layout, videos, first, scale_factor, vae_checkpoint):
    """The latte-ms cache header of a converted mindone cache whose first read video's latents are `first`."""
    latent_shape = list(first.shape[1:])
    return {"record": HEADER, "format": CACHE_FORMAT, "version": CACHE_VERSION, "file_type": LATTE_NUMPY,
            "dtype": first.dtype.name, "latents": "sample", "noise_seed": None, "scale_factor": float(scale_factor),
            "image_size": [latent_shape[1] * VAE_DOWNSAMPLE, latent_shape[2] * VAE_DOWNSAMPLE],
            "latent_shape": latent_shape, "vae_checkpoint": os.path.abspath(vae_checkpoint), "vae_config": None,
            "vae_dtype": None, "condition": None, "class_names": [], "segment_frames": None,
            "source": {"mindone_cache": os.path.abspath(source), "layout": layout, "num_videos": len(videos),
                       "names_sha1": hashlib.sha1("\n".join(v.name for v in videos).encode("utf-8")).hexdigest()}}


@dataclass
class ConvertReport:
    layout: str
    videos: int  # in the mindone cache
    already: int  # converted by an earlier run (not touched)
    converted: int  # by this run
    frames: int  # latent frames written by this run


def convert_mindone_cache(source, cache_folder, scale_factor, vae_checkpoint, show_progress=True):
    """Writes the mindone cache in `source` as a latte-ms numpy cache in cache_folder (crash-safe, a rerun
    continues). scale_factor and vae_checkpoint: the sd_scale_factor and VAE the mindone cache was written with.
    Returns a ConvertReport; raises DataError naming the file when a layout, shape or dtype is not mindone's."""
    layout = mindone_layout(source)
    if layout is None:
        raise DataError(f"{source!r} holds no mindone embedding cache (no *{MINDRECORD_SUFFIX} files, no "
                        f"<video>/{FRAME_PREFIX}*{NPY_SUFFIX} frames, no *{NPZ_SUFFIX} with {LATENT_KEY!r})")
    videos = list_mindone_videos(source, layout)
    if not videos:
        raise DataError(f"{source!r}: the mindone {layout} cache holds no videos")
    peek = read_videos(videos, layout)
    _, first = next(peek)
    peek.close()
    header = converted_header(source, layout, videos, first, scale_factor, vae_checkpoint)
    writer = NumpyCacheWriter(cache_folder, 0, header)
    report = ConvertReport(layout, len(videos), len(writer.done), 0, 0)
    logger.info("mindone %s cache %s: %d videos (%d converted already), latents %s %s -> %s", layout, source,
                len(videos), len(writer.done), tuple(header["latent_shape"]), header["dtype"], cache_folder)
    bar = progress(total=len(videos) - len(writer.done), desc="convert", unit="video", disable=not show_progress)
    try:
        for i, latents in read_videos(videos, layout, skip=writer.done):
            if list(latents.shape[1:]) != header["latent_shape"] or latents.dtype.name != header["dtype"]:
                raise DataError(f"{videos[i].name} ({videos[i].files[0]}): latents {latents.shape} {latents.dtype} "
                                f"in a cache whose videos hold (F, {', '.join(map(str, header['latent_shape']))}) "
                                f"{header['dtype']}")
            writer.add(i, videos[i].name, latents)
            report.converted += 1
            report.frames += len(latents)
            bar.update(1)
            bar.set_postfix(saved=writer.saved, refresh=False)
        writer.close()
    finally:
        bar.close()
    return report
