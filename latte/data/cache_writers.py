"""Writing latent caches crash-safely: a manifest per rank, and numpy or mindrecord latents files.

Commit protocol (the layout is described in latte/data/cache.py):
1. latents are written under <cache>/.tmp-rank<r>/ (wiped when a writer of that rank starts);
2. the finished file (numpy) or committed chunk folder (mindrecord) is renamed into place (atomic);
3. its videos are appended to manifest.rank<r>.jsonl (flushed and fsynced).
The loader reads only what a manifest names, so a kill at any moment loses at most the unfinished work.
"""
import json
import logging
import os
import shutil

import numpy as np

from latte.config import ConfigError
from latte.data.cache import (
    FAILED, HEADER, MINDRECORD_FILE, ROW_FRAMES, ROW_LABEL, ROW_LATENTS, ROW_SEGMENT, ROW_VIDEO, VIDEO,
    describe_differences, header_differences, manifest_path, mindrecord_part, numpy_file, read_manifest,
)
from latte.data.errors import DataError

logger = logging.getLogger(__name__)

MIB = 2 ** 20
# MindRecord page sizes it accepts (set_page_size); one row must fit in one page
MIN_PAGE_BYTES, MAX_PAGE_BYTES = 32 * 1024, 256 * MIB
ROW_HEADROOM_BYTES = 1024  # a blob row of exactly the page size fails; keep room for its length fields
# The header holds the page table: 4 MiB held 8000 pages (not 12000) in a test. A chunk is committed early
# when its latents fill MAX_PAGES_PER_FILE pages, so files never outgrow their header.
MINDRECORD_HEADER_BYTES = 4 * MIB
MAX_PAGES_PER_FILE = 2000


def tmp_folder(cache_folder, rank):
    return os.path.join(cache_folder, f".tmp-rank{rank}")


def _fsync_file(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def existing_records(cache_folder, header):
    """(ids cached by any earlier run, [manifest paths]) -- raising if an earlier run wrote another cache."""
    done = set()
    for name in sorted(os.listdir(cache_folder)):
        if not (name.startswith("manifest.rank") and name.endswith(".jsonl")):
            continue
        path = os.path.join(cache_folder, name)
        theirs, records = read_manifest(path)
        if theirs is None:
            continue
        keys = header_differences(theirs, header)
        if keys:
            raise DataError(f"{cache_folder} already holds a cache written with other settings "
                            f"({describe_differences(theirs, header, keys)}; left: {name}, right: this run): use "
                            "another --cache_folder, or the settings of that cache to continue it")
        done.update(r["id"] for r in records if r.get("record") == VIDEO)
    return done


class ManifestWriter:
    """Appends JSON lines to manifest.rank<r>.jsonl; each append is flushed and fsynced before returning."""

    def __init__(self, cache_folder, rank, header):
        if header.get("record") != HEADER:
            raise ValueError("a cache header must have record='header' (see latte.data.cache_builder.cache_header)")
        self.path = manifest_path(cache_folder, rank)
        if os.path.exists(self.path) and os.path.getsize(self.path):
            self._drop_torn_line()
        else:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(header, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def _drop_torn_line(self):
        with open(self.path, "rb+") as f:
            data = f.read()
            if not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, records):
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


class CacheWriter:
    """Shared part of the writers: the manifest, counts, failures. Subclasses store the latents."""

    def __init__(self, cache_folder, rank, header):
        self.folder = cache_folder
        self.rank = rank
        self.header = header
        os.makedirs(cache_folder, exist_ok=True)
        self.done = existing_records(cache_folder, header)  # before this rank's manifest may be created
        self.tmp = tmp_folder(cache_folder, rank)
        shutil.rmtree(self.tmp, ignore_errors=True)  # unfinished files of a killed run of this rank
        os.makedirs(self.tmp)
        self.manifest = ManifestWriter(cache_folder, rank, header)
        self.saved = 0  # videos committed by this run
        self.failed = []  # (video id, name, reason) skipped by this run

    def add_failure(self, video_id, name, reason):
        self.failed.append((video_id, name, reason))
        self.manifest.append([{"record": FAILED, "id": video_id, "name": name, "reason": reason}])

    @property
    def pending(self):
        """Ids of videos encoded but not committed yet (lost if the run stops now)."""
        return []

    def _record(self, video_id, name, latents, label, file):
        return {"record": VIDEO, "id": int(video_id), "name": name, "frames": int(latents.shape[0]),
                "label": None if label is None else int(label), "file": file}

    def close(self):
        """Commits what is pending and removes the temporary folder."""
        shutil.rmtree(self.tmp, ignore_errors=True)


class NumpyCacheWriter(CacheWriter):
    """One .npy per video (np.load(path, mmap_mode='r') reads any frames without loading the rest)."""

    def add(self, video_id, name, latents, label=None):
        file = numpy_file(video_id)
        target = os.path.join(self.folder, file)
        tmp = os.path.join(self.tmp, os.path.basename(file))
        np.save(tmp, np.ascontiguousarray(latents))
        _fsync_file(tmp)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(tmp, target)
        self.manifest.append([self._record(video_id, name, latents, label, file)])
        self.saved += 1


def mindrecord_schema(with_labels):
    schema = {ROW_VIDEO: {"type": "int32"}, ROW_SEGMENT: {"type": "int32"}, ROW_FRAMES: {"type": "int32"},
              ROW_LATENTS: {"type": "bytes"}}
    if with_labels:
        schema[ROW_LABEL] = {"type": "int32"}
    return schema


def check_page_size(max_page_size_mib, segment_frames, latent_shape, dtype):
    """Page size in bytes for --max_page_size (MiB); raises ConfigError if one row of segment_frames does not fit."""
    page = int(max_page_size_mib * MIB)
    if not MIN_PAGE_BYTES <= page <= MAX_PAGE_BYTES:
        raise ConfigError(f"max_page_size={max_page_size_mib} MiB: MindRecord pages are {MIN_PAGE_BYTES // 1024} KiB "
                         f"to {MAX_PAGE_BYTES // MIB} MiB")
    frame_bytes = int(np.prod(latent_shape)) * np.dtype(dtype).itemsize
    row = segment_frames * frame_bytes + ROW_HEADROOM_BYTES
    if row > page:
        fits = (page - ROW_HEADROOM_BYTES) // frame_bytes
        raise ConfigError(f"a mindrecord row of segment_frames={segment_frames} latent frames {tuple(latent_shape)} "
                         f"{dtype} takes {row / MIB:.2f} MiB, more than max_page_size={max_page_size_mib} MiB: set "
                         f"segment_frames <= {fits} or raise max_page_size (at most {MAX_PAGE_BYTES // MIB})")
    return page


class MindRecordCacheWriter(CacheWriter):
    """Chunks of videos_per_file videos (fewer if they fill MAX_PAGES_PER_FILE pages), one mindrecord file each;
    a video is rows of <= segment_frames frames.

    No video is too long for a page: rows are segments, and --max_page_size is checked against one segment.
    A chunk is written in .tmp-rank<r>/, committed, then its folder renamed to mindrecord/part-<first id>/
    (MindRecord files cannot be renamed, their folder can).
    """

    def __init__(self, cache_folder, rank, header, videos_per_file, page_size):
        super().__init__(cache_folder, rank, header)
        self.videos_per_file = videos_per_file
        self.page_size = page_size
        self.segment_frames = header["segment_frames"]
        self.with_labels = header.get("condition") == "class"
        self._writer = None
        self._records = []  # manifest records of the open chunk
        self._bytes = 0  # latent bytes in the open chunk
        self._part = None

    @property
    def pending(self):
        return [r["id"] for r in self._records]

    def _open(self, first_video_id):
        from mindspore.mindrecord import FileWriter

        self._part = mindrecord_part(first_video_id)
        folder = os.path.join(self.tmp, os.path.basename(self._part))
        os.makedirs(folder)
        self._writer = FileWriter(os.path.join(folder, MINDRECORD_FILE), shard_num=1, overwrite=True)
        self._writer.add_schema(mindrecord_schema(self.with_labels), "latte-ms latent cache")
        self._writer.add_index([ROW_VIDEO, ROW_SEGMENT])
        self._writer.set_page_size(self.page_size)
        self._writer.set_header_size(MINDRECORD_HEADER_BYTES)

    def add(self, video_id, name, latents, label=None):
        if self._writer is None:
            self._open(video_id)
        latents = np.ascontiguousarray(latents)
        rows = []
        for segment, start in enumerate(range(0, latents.shape[0], self.segment_frames)):
            part = latents[start:start + self.segment_frames]
            row = {ROW_VIDEO: int(video_id), ROW_SEGMENT: segment, ROW_FRAMES: int(part.shape[0]),
                   ROW_LATENTS: part.tobytes()}
            if self.with_labels:
                row[ROW_LABEL] = int(label)
            rows.append(row)
        self._writer.write_raw_data(rows)
        self._records.append(self._record(video_id, name, latents, label, f"{self._part}/{MINDRECORD_FILE}"))
        self._bytes += latents.nbytes
        if len(self._records) >= self.videos_per_file or self._bytes >= MAX_PAGES_PER_FILE * self.page_size:
            self.commit()

    def commit(self):
        """Finishes the open chunk: commit, rename its folder into place, then name its videos in the manifest."""
        if self._writer is None:
            return
        self._writer.commit()
        self._writer = None
        source = os.path.join(self.tmp, os.path.basename(self._part))
        target = os.path.join(self.folder, self._part)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        for name in os.listdir(source):
            _fsync_file(os.path.join(source, name))
        if os.path.exists(target):  # renamed by a run killed before its manifest lines: never read, replace it
            shutil.rmtree(target)
        os.replace(source, target)
        self.manifest.append(self._records)
        self.saved += len(self._records)
        self._records, self._bytes = [], 0

    def close(self):
        self.commit()
        super().close()

    def abandon(self):
        """Drops the open chunk (after a failure inside MindRecord, whose state is then unknown)."""
        self._writer = None
        self._records, self._bytes = [], 0
        super().close()
