"""Detector features of a clip plan, with a resumable on-disk cache.

The cache file is named by a hash of everything that decides the features (the clips with their frame indices,
each file's size and mtime, the detector checkpoint's path, size and mtime): the same real dataset under the
same recipe is read once. While gathering, the statistics so far are saved every `save_every` clips as
`<tag>.partial.npz` (written to a temporary name, then renamed), so a killed run resumes at the next clip; the
finished statistics become `<tag>.npz`.
"""
import hashlib
import json
import logging
import os

import mindspore as ms
import numpy as np

from latte.env import progress
from latte.metrics.clips import read_clips
from latte.metrics.stats import FeatureStats

logger = logging.getLogger(__name__)

SAVE_EVERY_CLIPS = 64


def _file_stamp(path):
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, int(stat.st_mtime)]


def cache_tag(clips, detector_path, label):
    """`<label>-<md5>`: the md5 of the clip plan (frames, mirroring and files) and the detector file."""
    digest = hashlib.md5(json.dumps(_file_stamp(detector_path)).encode("utf-8"))
    video_stamps = {}
    for c in clips:
        if c.frames:
            files = [_file_stamp(c.frames[i]) for i in c.indices]
        else:
            if c.path not in video_stamps:
                video_stamps[c.path] = _file_stamp(c.path)
            files = video_stamps[c.path]
        digest.update(json.dumps([c.name, list(c.indices), c.flip, files]).encode("utf-8"))
    return f"{label}-{digest.hexdigest()}"


def gather_features(clips, detector_for, batch_size, desc, cache_dir=None, tag=None, save_every=SAVE_EVERY_CLIPS,
                    capture_all=False, capture_mean_cov=True):
    """FeatureStats of every clip, rows in clip order; `detector_for((H, W))` gives the detector cell for frames
    of that size (it takes (B, 3, T, H, W) uint8 clips).

    With cache_dir and tag: a finished cache is returned as is, a partial one is resumed.
    """
    final = partial = None
    stats = FeatureStats(capture_all=capture_all, capture_mean_cov=capture_mean_cov, max_items=len(clips))
    if cache_dir and tag:
        os.makedirs(cache_dir, exist_ok=True)
        final, partial = (os.path.join(cache_dir, f"{tag}{suffix}") for suffix in (".npz", ".partial.npz"))
        if os.path.isfile(final):
            logger.info("%s: features from the cache %s", desc, final)
            return FeatureStats.load(final)
        if os.path.isfile(partial):
            stats = FeatureStats.load(partial)
            logger.info("%s: resuming after %d of %d clips from %s", desc, stats.num_items, len(clips), partial)
    start, since_save = stats.num_items, 0
    bar = progress(total=len(clips), initial=start, desc=desc, unit="clip")
    for first in range(start, len(clips), batch_size):
        batch = read_clips(clips[first:first + batch_size])  # each (3, T, H, W) uint8
        rows = [None] * len(batch)
        for hw in sorted({b.shape[2:] for b in batch}):  # one detector call per frame size
            where = [i for i, b in enumerate(batch) if b.shape[2:] == hw]
            out = detector_for(hw)(ms.Tensor(np.stack([batch[i] for i in where]))).asnumpy()  # (B, 3, T, H, W) in
            for i, row in zip(where, out):
                rows[i] = row
        stats.append(np.stack(rows))  # rows in clip order
        bar.update(len(batch))
        since_save += len(batch)
        if partial and since_save >= save_every and stats.num_items < len(clips):
            stats.save(partial)
            since_save = 0
    bar.close()
    if final:
        stats.save(final)
        if os.path.isfile(partial):
            os.remove(partial)
    return stats
