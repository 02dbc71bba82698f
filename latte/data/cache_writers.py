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
from typing import NamedTuple

import numpy as np

from latte.config import ConfigError
from latte.data.cache import (
    FAILED, HEADER, MINDRECORD_FILE, ROW_FRAMES, ROW_LABEL, ROW_LATENTS, ROW_SEGMENT, ROW_TEXT_MASK, ROW_TEXT_STATES,
    ROW_VIDEO, TEXT_MASK, TEXT_MASK_DTYPE, TEXT_STATES, VIDEO, describe_differences, header_differences,
    manifest_path, mindrecord_part, numpy_file, numpy_text_file, read_manifest,
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


class CaptionText(NamedTuple):
    """What a text cache stores of a video's caption."""
    caption: str
    states: np.ndarray  # (L, D) T5 last hidden states, in the stored dtype
    mask: np.ndarray  # (L,) 1 on the caption's tokens and </s>

    @property
    def nbytes(self):
        return self.states.nbytes + self.mask.size * np.dtype(TEXT_MASK_DTYPE).itemsize


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

    def _record(self, video_id, name, latents, label, file, text=None):
        record = {"record": VIDEO, "id": int(video_id), "name": name, "frames": int(latents.shape[0]),
                  "label": None if label is None else int(label), "file": file}
        if text is not None:
            record["caption"] = text.caption
        return record

    def close(self):
        """Commits what is pending and removes the temporary folder."""
        shutil.rmtree(self.tmp, ignore_errors=True)


class NumpyCacheWriter(CacheWriter):
    """One .npy per video (np.load(path, mmap_mode='r') reads any frames without loading the rest), and in a text
    cache one .text.npz of its caption's states and mask beside it."""

    def _place(self, file, write):
        """Writes a file in the temporary folder with write(path), fsyncs it; returns a function renaming it into
        place as `file`."""
        tmp = os.path.join(self.tmp, os.path.basename(file))
        write(tmp)
        _fsync_file(tmp)
        target = os.path.join(self.folder, file)

        def commit():
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)
        return commit

    def add(self, video_id, name, latents, label=None, text=None):
        file = numpy_file(video_id)
        commits = [self._place(file, lambda path: np.save(path, np.ascontiguousarray(latents)))]
        record = self._record(video_id, name, latents, label, file, text)
        if text is not None:
            record["text_file"] = numpy_text_file(video_id)
            commits.append(self._place(record["text_file"], lambda path: np.savez(
                path, **{TEXT_STATES: np.ascontiguousarray(text.states),
                         TEXT_MASK: np.asarray(text.mask, TEXT_MASK_DTYPE)})))
        for commit in commits:  # every file whole before the manifest names any
            commit()
        self.manifest.append([record])
        self.saved += 1


def mindrecord_schema(with_labels, with_text=False):
    schema = {ROW_VIDEO: {"type": "int32"}, ROW_SEGMENT: {"type": "int32"}, ROW_FRAMES: {"type": "int32"},
              ROW_LATENTS: {"type": "bytes"}}
    if with_labels:
        schema[ROW_LABEL] = {"type": "int32"}
    if with_text:
        schema[ROW_TEXT_STATES] = {"type": "bytes"}
        schema[ROW_TEXT_MASK] = {"type": "bytes"}
    return schema


def check_page_size(max_page_size_mib, segment_frames, latent_shape, dtype, text_bytes=0):
    """Page size in bytes for --max_page_size (MiB); raises ConfigError if one row of segment_frames (the first
    row of a video also holding text_bytes of caption states and mask) does not fit."""
    page = int(max_page_size_mib * MIB)
    if not MIN_PAGE_BYTES <= page <= MAX_PAGE_BYTES:
        raise ConfigError(f"max_page_size={max_page_size_mib} MiB: MindRecord pages are {MIN_PAGE_BYTES // 1024} KiB "
                         f"to {MAX_PAGE_BYTES // MIB} MiB")
    frame_bytes = int(np.prod(latent_shape)) * np.dtype(dtype).itemsize
    row = segment_frames * frame_bytes + text_bytes + ROW_HEADROOM_BYTES
    if row > page:
        fits = (page - ROW_HEADROOM_BYTES - text_bytes) // frame_bytes
        text = f" and its caption's T5 states ({text_bytes / MIB:.2f} MiB)" if text_bytes else ""
        raise ConfigError(f"a mindrecord row of segment_frames={segment_frames} latent frames {tuple(latent_shape)} "
                         f"{dtype}{text} takes {row / MIB:.2f} MiB, more than max_page_size={max_page_size_mib} MiB: "
                         f"set segment_frames <= {max(fits, 0)} or raise max_page_size (at most "
                         f"{MAX_PAGE_BYTES // MIB})")
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
        self.with_text = header.get("condition") == "text"
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
        self._writer.add_schema(mindrecord_schema(self.with_labels, self.with_text), "latte-ms latent cache")
        self._writer.add_index([ROW_VIDEO, ROW_SEGMENT])
        self._writer.set_page_size(self.page_size)
        self._writer.set_header_size(MINDRECORD_HEADER_BYTES)

    def add(self, video_id, name, latents, label=None, text=None):
        if self.with_text != (text is not None):
            raise ValueError(f"video {video_id}: caption states {'missing' if text is None else 'given'} for a "
                             f"cache of condition {self.header.get('condition')!r}")
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
            if self.with_text:  # the caption once per video, in its first row
                first = segment == 0
                row[ROW_TEXT_STATES] = np.ascontiguousarray(text.states).tobytes() if first else b""
                row[ROW_TEXT_MASK] = np.asarray(text.mask, TEXT_MASK_DTYPE).tobytes() if first else b""
            rows.append(row)
        self._writer.write_raw_data(rows)
        self._records.append(self._record(video_id, name, latents, label, f"{self._part}/{MINDRECORD_FILE}", text))
        self._bytes += latents.nbytes + (0 if text is None else text.nbytes)
        if len(self._records) >= self.videos_per_file or self._bytes >= MAX_PAGES_PER_FILE * self.page_size:
            self.commit()

    def commit(self):
        """Finishes the open chunk: commit, rename its folder into place, then name its videos in the manifest."""
        if self._writer is None:
            return
        source = os.path.join(self.tmp, os.path.basename(self._part))
        if not self._records:  # its first write failed (e.g. a full disk): place no empty file
            self._writer = None
            shutil.rmtree(source, ignore_errors=True)
            return
        self._writer.commit()
        self._writer = None
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
