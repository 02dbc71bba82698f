"""Latent caches: VAE latents of every frame of every video, written once by tools/embedding_cache.py.

Layout of a cache folder (one manifest per rank that wrote it; the loader reads them all):

    manifest.rank0.jsonl      line 1: the header (VAE, scale, dtype, image size, latent shape, source listing,
                              classes, text encoder); then one JSON line per video: cached {"record": "video",
                              "id", "name", "frames", "label", "file"} (a text cache adds "caption" and, numpy,
                              "text_file") or skipped {"record": "failed", "id", "name", "reason"}
    latents/0000/0000012.npy  numpy: video 12, (frames, C, h, w) in the stored dtype, np.load(mmap_mode="r")
    latents/0000/0000012.text.npz
                              numpy, condition text: its caption's T5 states "states" (L, D) in the stored dtype
                              and mask "mask" (L,) int32
    mindrecord/part-0000012/latents.mindrecord(.db)
                              mindrecord: the videos of one chunk, one row per segment of <= segment_frames
                              frames: {video_id, segment, frames, label, latents (raw bytes)}; condition text adds
                              text_states (L, D) and text_mask (L,) int32 raw bytes to segment 0 (b"" in the others)

The header of a text cache (condition "text") holds "text": {"text_encoder": T5 .ckpt, "width": D, "max_length":
L}, with "text_tokenizer" and "text_encoder_dtype"; states are T5's last hidden states of the whole padded
caption (latte.text_to_video.encode_texts), mask 1 on its tokens and </s>.

A line is appended only after its files are complete and renamed into place, so everything a manifest names is
whole; a run killed at any moment leaves at most a torn last line (ignored) and temporary files (never named).

Reading a cache for training: latte/data/cache_dataset.py. Writing one: cache_writers.py, cache_builder.py.
"""
import functools
import glob
import json
import logging
import os
from dataclasses import dataclass
from typing import List

from latte.data.errors import DataError
from latte.data.mindone_layout import convert_hint, mindone_layout
from latte.data.sources import check_data_folder

logger = logging.getLogger(__name__)

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
ROW_TEXT_STATES, ROW_TEXT_MASK = "text_states", "text_mask"  # text caches, segment 0 of each video
TEXT_STATES, TEXT_MASK = "states", "mask"  # arrays of a numpy text file
TEXT_MASK_DTYPE = "int32"
TEXT_RECORD = "text"  # header key of the text record {"text_encoder", "width", "max_length"}


def manifest_path(folder, rank):
    return os.path.join(folder, f"manifest.rank{rank}.jsonl")


def numpy_file(video_id):
    """Path of video video_id's array, relative to the cache folder."""
    return f"{NUMPY_FOLDER}/{video_id // VIDEOS_PER_SUBFOLDER:04d}/{video_id:07d}.npy"


def numpy_text_file(video_id):
    """Path of video video_id's caption states and mask (text caches), relative to the cache folder."""
    return numpy_file(video_id)[:-len(".npy")] + ".text.npz"


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
        layout = mindone_layout(folder)
        if layout is not None:
            raise DataError(convert_hint(folder, layout))
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

