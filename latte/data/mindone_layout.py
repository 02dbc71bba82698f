"""Where mindone's Latte embedding caches are recognised: the names of its cache layouts and files, and the
one-line advice for a training config that points at one. Read by the latte-ms cache reader (cache.py), to refuse
such a folder helpfully, and by the converter (mindone_cache.py)."""
import glob
import os

import numpy as np

from latte.data.errors import DataError

NUMPY, NPZ, MINDRECORD = "numpy", "npz", "mindrecord"  # mindone's names of its cache layouts
LATENT_KEY, NAME_KEY = "video_latent", "video"
FRAME_PREFIX = "video_latent-"  # numpy: <video>/video_latent-<frame>.npy
NPZ_SUFFIX, NPY_SUFFIX, MINDRECORD_SUFFIX = ".npz", ".npy", ".mindrecord"
RECACHE = ("cache the videos again with tools/embedding_cache.py (e.g. -c configs/training/sky_video.yaml "
           "--cache_folder DIR --cache_file_type numpy)")


def npz_keys(path):
    """The array names of an .npz file; a damaged file is a DataError naming it."""
    try:
        with np.load(path) as stored:
            return set(stored.files)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}): a damaged file of a mindone cache; {RECACHE}") from exc


def mindone_layout(folder):
    """mindone's name of the cache layout in folder ("numpy", "npz", "mindrecord"), or None when it holds none."""
    if not os.path.isdir(folder) or glob.glob(os.path.join(folder, "manifest.rank*.jsonl")):
        return None
    if any(name.endswith(MINDRECORD_SUFFIX) for name in os.listdir(folder)):
        return MINDRECORD
    if glob.glob(os.path.join(folder, "*", FRAME_PREFIX + "*" + NPY_SUFFIX)):
        return NUMPY
    npz = sorted(glob.glob(os.path.join(folder, "*" + NPZ_SUFFIX)))
    if npz and LATENT_KEY in npz_keys(npz[0]):
        return NPZ
    return None


def convert_hint(folder, layout):
    """The one-line advice for a training config pointing at a mindone cache."""
    return (f"{folder!r} holds a mindone {layout} embedding cache, not a latte-ms one: convert it with python "
            f"tools/mindone_cache.py --source {folder} --cache_folder {folder.rstrip('/')}_latte and train on that "
            f"folder (train_data_type: numpy), or {RECACHE}")
