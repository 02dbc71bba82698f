"""Training checkpoints: raw and EMA weights (loadable by sample.py and the converter) and the resume state.

Layout under <output>/ckpt/:
  latte-<step>.ckpt (+ .json)       raw Latte weights, the same names as converted official checkpoints
  latte-<step>-ema.ckpt (+ .json)   EMA weights (what the official code samples with)
  train_state-<step>.ckpt           everything a resume needs: weights, optimizer moments, loss scale,
                                    accumulated gradients, EMA, and the step/data position
Every file is written to a temporary name and renamed, so a kill during a save never leaves a corrupt file
under a final name; the newest `ckpt_max_keep` of each kind are kept.
"""
import glob
import hashlib
import logging
import os
import re

import numpy as np

import mindspore as ms

from latte.checkpoint_io import meta_path, save_ms_checkpoint

logger = logging.getLogger(__name__)

STATE_PREFIX = "train_state-"
_STEP = re.compile(r"-(\d+)(?:-ema)?\.ckpt$")
STATE_META_KEYS = ("step", "epoch", "seed")
# rebuilt from the config on resume (a longer max_steps changes its length), so not part of the state
NOT_SAVED = ("learning_rate",)
RESUME_LATEST = ("true", "latest")  # --resume values meaning "the newest state in output_path"
NO_RESUME = ("false", "no", "0")


def _step_of(path):
    match = _STEP.search(os.path.basename(path))
    return int(match.group(1)) if match else -1


def _listing(folder, pattern):
    return sorted(glob.glob(os.path.join(folder, pattern)), key=_step_of)


def latte_weights(latte, ema=None):
    """({name: ndarray} raw, {name: ndarray} EMA or None) of the Latte cell, named as in the weight files."""
    # names relative to the Latte cell (its parameters' global names carry the loss network's prefix)
    named = list(latte.parameters_and_names())
    raw = {name: p.asnumpy() for name, p in named}
    if ema is None:
        return raw, None
    shadow = ema.averaged()
    return raw, {name: shadow[id(p)].asnumpy() if id(p) in shadow else raw[name] for name, p in named}


def weights_digest(arrays):
    """A short sha256 of {name: ndarray} (names, dtypes, shapes, bytes): equal digests mean bit-equal weights."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


class CheckpointManager:
    def __init__(self, folder, max_keep=3, meta=None):
        self.folder = folder
        self.max_keep = max_keep
        self.meta = meta or {}
        os.makedirs(folder, exist_ok=True)

    def save(self, step, latte, train_step, ema=None, epoch=0, seed=0):
        """Writes the weights (raw, EMA) and the resume state for `step`; prunes old files."""
        raw, averaged = latte_weights(latte, ema)
        meta = dict(self.meta, step=step, weights="raw")
        save_ms_checkpoint(raw, self.weights_path(step), meta)
        if ema is not None:
            save_ms_checkpoint(averaged, self.weights_path(step, ema=True), dict(meta, weights="ema"))
        self._save_state(step, train_step, ema, epoch, seed)
        self._prune()
        return self.weights_path(step, ema=ema is not None)

    def weights_path(self, step, ema=False):
        return os.path.join(self.folder, f"latte-{step:07d}{'-ema' if ema else ''}.ckpt")

    def state_path(self, step):
        return os.path.join(self.folder, f"{STATE_PREFIX}{step:07d}.ckpt")

    def _save_state(self, step, train_step, ema, epoch, seed):
        entries = [{"name": p.name, "data": p} for p in train_step.get_parameters() if p.name not in NOT_SAVED]
        if ema is not None:
            entries += [{"name": p.name, "data": p} for p in ema.get_parameters() if p.name.startswith("ema.")]
        path = self.state_path(step)
        tmp = f"{path}.tmp-{os.getpid()}.ckpt"
        try:
            ms.save_checkpoint(entries, tmp, append_dict={"step": step, "epoch": epoch, "seed": seed})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _prune(self):
        for pattern in ("latte-*[0-9].ckpt", "latte-*-ema.ckpt", f"{STATE_PREFIX}*.ckpt"):
            for old in _listing(self.folder, pattern)[: -self.max_keep]:
                for path in (old, meta_path(old)):
                    if os.path.exists(path):
                        os.remove(path)

    def latest_state(self):
        states = [p for p in _listing(self.folder, f"{STATE_PREFIX}*.ckpt") if ".tmp-" not in p]
        return states[-1] if states else None


def load_resume_state(path, train_step, ema=None):
    """Restores everything `CheckpointManager.save` wrote; returns {'step', 'epoch', 'seed'}."""
    if not os.path.isfile(path):
        raise ValueError(f"resume state {path} not found")
    saved = ms.load_checkpoint(path)
    meta = {k: int(np.asarray(saved.pop(k).asnumpy()).item()) if hasattr(saved.get(k), "asnumpy")
            else int(saved.pop(k)) for k in STATE_META_KEYS}
    cells = [train_step] + ([ema] if ema is not None else [])
    wanted = {p.name for cell in cells for p in cell.get_parameters() if p.name not in NOT_SAVED}
    missing = sorted(wanted - set(saved))
    if missing:
        raise ValueError(f"resume state {path} lacks {len(missing)} entries ({', '.join(missing[:5])}): it was "
                         "written by a different model or optimizer setup")
    for cell in cells:
        params = {p.name: p for p in cell.get_parameters() if p.name not in NOT_SAVED}
        not_loaded, _ = ms.load_param_into_net(cell, {k: v for k, v in saved.items() if k in params})
        not_loaded = [name for name in not_loaded if name not in NOT_SAVED]
        if not_loaded:
            raise ValueError(f"resume state {path}: could not restore {not_loaded[:5]}")
    return meta


def resolve_resume(resume, manager, output_path, refuse_existing=True):
    """The resume-state path `--resume` asks for, or None for a fresh run.

    Empty/false: a fresh run, refused (refuse_existing) when output_path already holds one; true/latest: the
    newest state `manager` (latte's or the VAE's CheckpointManager) finds; anything else: that path.
    """
    if resume is None or str(resume).lower() in NO_RESUME:
        latest = manager.latest_state()
        if latest and refuse_existing:
            raise ValueError(f"output_path {output_path} already holds a training run ({latest}): continue it "
                             "with --resume, or choose a new output_path")
        return None
    if str(resume).lower() in RESUME_LATEST:
        latest = manager.latest_state()
        if latest is None:
            raise ValueError(f"--resume: no train_state-*.ckpt under {manager.folder} to continue from")
        return latest
    return resume
