"""Latent caches: VAE latents of every frame of every video, written once by tools/embedding_cache.py.

Layout of a cache folder (one manifest per rank that wrote it; the loader reads them all):

    manifest.rank0.jsonl      line 1: the header (VAE, scale, dtype, image size, latent shape, source listing,
                              classes); then one JSON line per video: cached {"record": "video", "id", "name",
                              "frames", "label", "file"} or skipped {"record": "failed", "id", "name", "reason"}
    latents/0000/0000012.npy  numpy: video 12, (frames, C, h, w) in the stored dtype, np.load(mmap_mode="r")
    mindrecord/part-0000012/latents.mindrecord(.db)
                              mindrecord: the videos of one chunk, one row per segment of <= segment_frames
                              frames: {video_id, segment, frames, label, latents (raw bytes)}

A line is appended only after its file is complete and renamed into place, so everything a manifest names is
whole; a run killed at any moment leaves at most a torn last line (ignored) and temporary files (never named).

Training from a cache uses the video pipeline unchanged (`create_video_dataset`): the types "numpy" and
"mindrecord" are entries of SOURCE_TYPES whose readers return latents instead of pixels. Video names and
their order are those of the source videos, so a clip of the cache is the encoding of the clip the video
pipeline draws for the same (seed, epoch, video) -- without the random flip, which caches cannot apply.
"""
import dataclasses
import functools
import glob
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from latte.data.dataset import DEFAULT_SEED, create_video_dataset
from latte.data.errors import DataError, VideoReadError
from latte.data.readers import short_reason
from latte.data.sources import SOURCE_TYPES, SourceType, VideoEntry, check_data_folder
from latte.data.transforms import as_size

logger = logging.getLogger(__name__)

NUMPY, MINDRECORD = "numpy", "mindrecord"
CACHE_DATA_TYPES = (NUMPY, MINDRECORD)
CACHE_FORMAT = "latte-ms latent cache"
CACHE_VERSION = 1
SAVE_DTYPES = ("float16", "float32")
MANIFEST_GLOB = "manifest.rank*.jsonl"
HEADER, VIDEO, FAILED = "header", "video", "failed"
NUMPY_FOLDER = "latents"
MINDRECORD_FOLDER = "mindrecord"
MINDRECORD_FILE = "latents.mindrecord"
VIDEOS_PER_SUBFOLDER = 1000  # numpy files are spread over latents/<id // 1000>/ to keep folders small
# mindrecord row fields; "video_id" is the indexed category that MindPage reads a video's segments by
ROW_VIDEO, ROW_SEGMENT, ROW_FRAMES, ROW_LABEL, ROW_LATENTS = "video_id", "segment", "frames", "label", "latents"


def manifest_path(folder, rank):
    return os.path.join(folder, f"manifest.rank{rank}.jsonl")


def numpy_file(video_id):
    """Path of video video_id's array, relative to the cache folder."""
    return f"{NUMPY_FOLDER}/{video_id // VIDEOS_PER_SUBFOLDER:04d}/{video_id:07d}.npy"


def mindrecord_part(first_video_id):
    """Folder (relative to the cache folder) of the mindrecord chunk starting with video first_video_id."""
    return f"{MINDRECORD_FOLDER}/part-{first_video_id:07d}"


# ---------------------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------------------

@dataclass
class CacheIndex:
    header: dict
    videos: List[dict]  # cached videos, sorted by id
    failed: List[dict]  # videos the cache run could not decode (and no later run cached)
    manifests: List[str]


def read_manifest(path):
    """(header or None, records) of one manifest. A torn last line (a kill while appending) is ignored."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:  # no newline after it: the write was cut short
                logger.info("cache: ignoring the unfinished last line of %s", path)
                continue
            raise DataError(f"{path}: line {number + 1} is not JSON: the manifest is damaged; rebuild the cache "
                            "or delete that line (the videos after it are then cached again)") from None
    if not records:
        return None, []
    header = records[0]
    if header.get("record") != HEADER or header.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: not a latte-ms cache manifest (first line is not its header)")
    if header.get("version") != CACHE_VERSION:
        raise DataError(f"{path}: cache format version {header.get('version')}, this code reads {CACHE_VERSION}: "
                        "rebuild the cache with this version of tools/embedding_cache.py")
    return header, records[1:]


def header_differences(a, b):
    """Keys whose values differ between two cache headers (nested keys as 'source.names_sha1')."""
    out = []
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += [f"{key}.{k}" for k in header_differences(a[key], b[key])]
        elif a.get(key) != b.get(key):
            out.append(key)
    return out


def describe_differences(a, b, keys):
    def get(h, dotted):
        for part in dotted.split("."):
            h = h.get(part) if isinstance(h, dict) else None
        return h
    return "; ".join(f"{k}: {get(a, k)!r} vs {get(b, k)!r}" for k in keys[:6])


def _manifest_stamp(folder):
    paths = sorted(glob.glob(os.path.join(folder, MANIFEST_GLOB)))
    return tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)


def read_cache_index(folder):
    """Every manifest of a cache folder, merged: one header (all must agree), cached and failed videos."""
    check_data_folder(folder, "a latent cache written by tools/embedding_cache.py")
    return _read_cache_index(os.path.abspath(folder), _manifest_stamp(folder))


@functools.lru_cache(maxsize=4)
def _read_cache_index(folder, stamp):
    if not stamp:
        raise DataError(f"{folder} holds no cache manifest ({MANIFEST_GLOB}): write the cache with "
                        "tools/embedding_cache.py --cache_folder " + folder)
    header, videos, failed = None, {}, {}
    for path, _, _ in stamp:
        this, records = read_manifest(path)
        if this is None:
            continue
        if header is None:
            header, first = this, path
        elif this != header:
            keys = header_differences(header, this)
            raise DataError(f"{path} and {first} describe different caches ({describe_differences(header, this, keys)})"
                            ": one folder must hold one cache; move the other rank's files to its own folder")
        for record in records:
            if record.get("record") == VIDEO:
                videos.setdefault(record["id"], record)
            elif record.get("record") == FAILED:
                failed[record["id"]] = record
    if header is None:
        raise DataError(f"{folder}: the cache manifests are empty (the writing run ended before its header)")
    failed = [failed[i] for i in sorted(failed) if i not in videos]
    return CacheIndex(header, [videos[i] for i in sorted(videos)], failed, [p for p, _, _ in stamp])


# ---------------------------------------------------------------------------------------------------------
# Readers: the cached latents of one video, the interface of latte.data.readers (num_frames, get_frames, close)
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CachedVideoEntry(VideoEntry):
    video_id: int = 0  # position of the video in the cache's source listing
    latent_shape: Tuple[int, ...] = ()  # (C, h, w) per frame
    dtype: str = "float32"  # stored dtype
    segment_frames: int = 0  # mindrecord: frames per row


class NumpyLatentReader:
    """One .npy per video, memory-mapped: get_frames reads only the frames asked for."""

    def __init__(self, entry):
        try:
            self._array = np.load(entry.path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VideoReadError(f"cannot read cached latents {entry.path} ({short_reason(exc)})") from exc
        expected = (entry.num_frames,) + tuple(entry.latent_shape)
        if self._array.shape != expected:
            raise VideoReadError(f"{entry.path} holds shape {self._array.shape}, the manifest says {expected}")
        self.num_frames = entry.num_frames

    def get_frames(self, indices):
        return np.asarray(self._array[np.asarray(indices, dtype=np.int64)])  # (F, C, h, w)

    def close(self):
        self._array = None


_PAGES = {}  # mindrecord path -> (pid, mtime, MindPage, lock): one open handle per file and process
_PAGES_LOCK = threading.Lock()


def _mind_page(path):
    from mindspore.mindrecord import MindPage

    mtime = os.stat(path).st_mtime_ns
    with _PAGES_LOCK:
        pid, stamp, page, lock = _PAGES.get(path, (None, None, None, None))
        if (pid, stamp) != (os.getpid(), mtime):  # a forked worker, or a file written again
            page = MindPage(path)
            page.category_field = ROW_VIDEO
            lock = threading.Lock()
            _PAGES[path] = (os.getpid(), mtime, page, lock)
        return page, lock


class MindRecordLatentReader:
    """The rows (segments) of one video in a mindrecord chunk, read by video id with MindPage."""

    def __init__(self, entry):
        self.entry = entry
        self.num_frames = entry.num_frames
        try:
            self._page, self._lock = _mind_page(entry.path)
        except Exception as exc:  # MindSpore raises RuntimeError/MRM* errors for missing or damaged files
            raise VideoReadError(f"cannot open {entry.path} ({short_reason(exc)})") from exc

    def _segment(self, segment):
        e = self.entry
        try:
            with self._lock:
                rows = self._page.read_at_page_by_name(str(e.video_id), segment, 1)
        except Exception as exc:
            raise VideoReadError(f"{e.path}: cannot read segment {segment} of video {e.video_id} "
                                 f"({short_reason(exc)})") from exc
        if not rows or rows[0][ROW_SEGMENT] != segment or rows[0][ROW_VIDEO] != e.video_id:
            raise VideoReadError(f"{e.path}: row {segment} of video {e.video_id} is not its segment {segment}")
        row = rows[0]
        return np.frombuffer(row[ROW_LATENTS], dtype=e.dtype).reshape((row[ROW_FRAMES],) + tuple(e.latent_shape))

    def get_frames(self, indices):
        size = self.entry.segment_frames
        indices = [int(i) for i in indices]
        segments = {s: self._segment(s) for s in sorted({i // size for i in indices})}
        return np.stack([segments[i // size][i % size] for i in indices])  # (F, C, h, w)

    def close(self):
        pass


def list_cached_videos(data_config, image_size=None):
    """The cached videos of data_config.data_folder as entries for build_video_index (frame counts known)."""
    folder = data_config.data_folder
    check_data_folder(folder, "a latent cache written by tools/embedding_cache.py")
    header = read_cache_index(folder).header
    kind = data_config.train_data_type
    if header["file_type"] != kind:
        raise DataError(f"data.data_folder={folder!r} holds a {header['file_type']!r} cache but "
                        f"data.train_data_type is {kind!r}: set train_data_type: {header['file_type']}")
    if image_size is not None and as_size(image_size) != tuple(header["image_size"]):
        raise DataError(f"the cache in {folder!r} holds {header['image_size'][0]}x{header['image_size'][1]} frames "
                        f"but training asks image_size {image_size}: set image_size: {header['image_size'][0]} or "
                        "cache the videos again at that size")
    if data_config.random_flip:
        raise DataError("data.random_flip cannot apply to cached latents (frames are flipped before encoding): "
                        "set random_flip: false when training from a cache")
    classes = header.get("class_names") or []
    entries = []
    for v in read_cache_index(folder).videos:
        label = v.get("label")
        entries.append(CachedVideoEntry(
            name=v["name"], path=os.path.join(folder, v["file"]), num_frames=v["frames"],
            class_name=classes[label] if label is not None else None, video_id=v["id"],
            latent_shape=tuple(header["latent_shape"]), dtype=header["dtype"],
            segment_frames=header.get("segment_frames") or 0))
    return entries


def cache_class_names(data_config):
    return list(read_cache_index(data_config.data_folder).header.get("class_names") or [])


def latents_to_sample(frames, image_size=None, rng=None, random_flip=False):
    """Cached latents (F, C, h, w) in the stored dtype -> float32; they are already cropped, resized, scaled."""
    return np.asarray(frames, dtype=np.float32)


def open_numpy_latents(entry, data_config, image_size):
    return NumpyLatentReader(entry)


def open_mindrecord_latents(entry, data_config, image_size):
    return MindRecordLatentReader(entry)


CACHE_SOURCE_TYPES = {
    NUMPY: SourceType(list_cached_videos, open_numpy_latents, scannable=False, to_sample=latents_to_sample,
                      class_names=cache_class_names),
    MINDRECORD: SourceType(list_cached_videos, open_mindrecord_latents, scannable=False,
                           to_sample=latents_to_sample, class_names=cache_class_names),
}
SOURCE_TYPES.update(CACHE_SOURCE_TYPES)


# ---------------------------------------------------------------------------------------------------------
# The training dataset
# ---------------------------------------------------------------------------------------------------------

def check_cache_fits(header, folder, latent_shape=None, scale_factor=None, condition=None):
    """Raises DataError when a cache cannot feed a model expecting latent_shape (C, h, w) scaled by scale_factor."""
    if latent_shape is not None and tuple(latent_shape) != tuple(header["latent_shape"]):
        raise DataError(f"the cache in {folder!r} holds latents of shape (C, h, w) = {tuple(header['latent_shape'])} "
                        f"but the model expects {tuple(latent_shape)} (image_size / VAE downsampling, latent "
                        "channels): train with the image size and VAE the cache was written with")
    if scale_factor is not None and not np.isclose(scale_factor, header["scale_factor"], rtol=1e-6, atol=0):
        raise DataError(f"the cache in {folder!r} was scaled by {header['scale_factor']} but sd_scale_factor is "
                        f"{scale_factor}: set sd_scale_factor: {header['scale_factor']}")
    if condition == "class" and header.get("condition") != "class":
        raise DataError(f"condition 'class' needs labels, but the cache in {folder!r} was written for condition "
                        f"{header.get('condition')!r}: cache the videos again with --condition class")


def describe_cache(header, index):
    return (f"{header['file_type']} cache {header['dtype']} {header['latents']} latents "
            f"{'x'.join(map(str, header['latent_shape']))} of {header['image_size'][0]}x{header['image_size'][1]} "
            f"frames (VAE {header['vae_checkpoint']}, scale {header['scale_factor']}): {len(index.videos)} videos "
            f"of {header['source']['num_videos']} listed, {len(index.failed)} not cached")


def create_cache_dataset(data_config, image_size, num_frames, batch_size, *, latent_shape=None, scale_factor=None,
                         vae_checkpoint=None, condition=None, shard_id=0, num_shards=1, seed=DEFAULT_SEED,
                         drop_remainder=True, start_step=0):
    """The training pipeline over a latent cache. Returns (dataset, DatasetInfo) like `create_video_dataset`.

    dataset columns: "video" float32 (B, F, C, h, w) -- scaled latents, the input of LatteTrainLoss without a
    VAE -- and "label" int32 (B,) when condition == "class". latent_shape (C, h, w) and scale_factor, when
    given, must match the cache; a vae_checkpoint other than the cache's (which decodes samples) is a warning.
    Clips, shuffling, sharding and resume (start_step) follow the video pipeline's
    contract (latte.data.dataset); videos shorter than a clip are skipped with a warning.
    """
    if data_config.train_data_type not in CACHE_DATA_TYPES:
        raise DataError(f"data.train_data_type={data_config.train_data_type!r} is not a cache type "
                        f"{CACHE_DATA_TYPES}: use create_video_dataset")
    index = read_cache_index(data_config.data_folder)
    check_cache_fits(index.header, data_config.data_folder, latent_shape, scale_factor, condition)
    if vae_checkpoint and os.path.abspath(vae_checkpoint) != index.header["vae_checkpoint"]:
        logger.warning("data: the cache was encoded with %s but vae_checkpoint is %s (used to decode samples): "
                       "make sure they are the same VAE", index.header["vae_checkpoint"], vae_checkpoint)
    logger.info("data: %s", describe_cache(index.header, index))
    dataset, info = create_video_dataset(data_config, image_size, num_frames, batch_size, condition=condition,
                                         shard_id=shard_id, num_shards=num_shards, seed=seed,
                                         drop_remainder=drop_remainder, start_step=start_step)
    not_cached = [(f["name"], f"not cached: {f['reason']}") for f in index.failed]
    return dataset, dataclasses.replace(info, skipped=sorted(info.skipped + not_cached))


def cache_header(folder):
    """The header of the cache in folder (what wrote it and how), for tools and logs."""
    return read_cache_index(folder).header


__all__ = ["CACHE_DATA_TYPES", "CacheIndex", "CachedVideoEntry", "create_cache_dataset", "read_cache_index",
           "cache_header", "check_cache_fits"]
