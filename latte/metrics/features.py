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
from latte.metrics.clips import read_clip
from latte.metrics.stats import FeatureStats

logger = logging.getLogger(__name__)

SAVE_EVERY_CLIPS = 64


def _file_stamp(path):
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, int(stat.st_mtime)]


def cache_tag(clips, detector_path, label):
    """`<label>-<md5>`: the md5 of the clip plan (frames and files) and the detector file."""
    record = {"detector": _file_stamp(detector_path),
              "clips": [[c.name, list(c.indices), _file_stamp(c.path) if not c.frames else
                         [_file_stamp(c.frames[i]) for i in c.indices]] for c in clips]}
    digest = hashlib.md5(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{label}-{digest}"


def gather_features(clips, detector_for, batch_size, desc, cache_dir=None, tag=None, save_every=SAVE_EVERY_CLIPS,
                    capture_all=False, capture_mean_cov=True):
    """FeatureStats of every clip; `detector_for((H, W))` gives the detector cell for frames of that size.

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
        batch = [read_clip(c) for c in clips[first:first + batch_size]]  # each (3, T, H, W) uint8
        sizes = {b.shape[2:] for b in batch}
        for hw in sorted(sizes):  # one detector call per frame size
            group = np.stack([b for b in batch if b.shape[2:] == hw])  # (B, 3, T, H, W)
            stats.append(detector_for(hw)(ms.Tensor(group)).asnumpy())
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
