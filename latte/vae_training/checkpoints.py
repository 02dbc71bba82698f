"""Autoencoder training checkpoints.

Layout under <output>/ckpt/:
  vae-<step>.ckpt (+ .json)   the AutoencoderKL weights and their architecture record: load_vae() loads it,
                              train.py / sample.py take it as vae_checkpoint
  train_state-<step>.ckpt     everything an exact resume needs: both networks, Adam moments, accumulated
                              gradients, BatchNorm statistics, counters and the step
Files are written under temporary names and renamed; the newest `max_keep` of each kind are kept.
"""
import glob
import os
import re

import mindspore as ms
import numpy as np

from latte.checkpoint_io import meta_path, save_ms_checkpoint

STATE_PREFIX = "train_state-"
WEIGHTS_PREFIX = "vae-"
_STEP = re.compile(r"-(\d+)\.ckpt$")
# rebuilt from the config on resume, so a resumed run may change them
NOT_SAVED_SUFFIX = "learning_rate"


def _step_of(path):
    match = _STEP.search(os.path.basename(path))
    return int(match.group(1)) if match else -1


def state_parameters(cells, exclude=()):
    """name -> Parameter of everything the cells hold (shared parameters once), learning rates and `exclude`
    (frozen networks loaded from their own files) excepted."""
    skip = {id(p) for p in exclude}
    params = {}
    for cell in cells:
        for p in cell.get_parameters():
            if p.name.endswith(NOT_SAVED_SUFFIX) or id(p) in skip:
                continue
            if p.name in params and params[p.name] is not p:
                raise ValueError(f"two different parameters are named {p.name!r}: the resume state needs "
                                 "unique names")
            params[p.name] = p
    return params


class VAECheckpoints:
    def __init__(self, folder, max_keep=3):
        self.folder = folder
        self.max_keep = max_keep
        os.makedirs(folder, exist_ok=True)

    def weights_path(self, step):
        return os.path.join(self.folder, f"{WEIGHTS_PREFIX}{step:07d}.ckpt")

    def state_path(self, step):
        return os.path.join(self.folder, f"{STATE_PREFIX}{step:07d}.ckpt")

    def save(self, step, vae, state, meta):
        """Writes the VAE weights (+ sidecar meta) and the resume state of `step`; prunes old files."""
        weights = {name: p.asnumpy() for name, p in vae.parameters_and_names()}
        save_ms_checkpoint(weights, self.weights_path(step), meta)
        path = self.state_path(step)
        tmp = f"{path}.tmp-{os.getpid()}.ckpt"
        try:
            ms.save_checkpoint([{"name": name, "data": p} for name, p in state.items()], tmp,
                               append_dict={"step": step})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        self._prune()
        return self.weights_path(step)

    def _listing(self, prefix):
        paths = glob.glob(os.path.join(self.folder, f"{prefix}*.ckpt"))
        return sorted((p for p in paths if ".tmp-" not in p), key=_step_of)

    def _prune(self):
        for prefix in (WEIGHTS_PREFIX, STATE_PREFIX):
            for old in self._listing(prefix)[: -self.max_keep]:
                for path in (old, meta_path(old)):
                    if os.path.exists(path):
                        os.remove(path)

    def latest_state(self):
        states = self._listing(STATE_PREFIX)
        return states[-1] if states else None


def load_state(path, state):
    """Restores every parameter of `state` (name -> Parameter) from `path`; returns the saved step."""
    if not os.path.isfile(path):
        raise ValueError(f"resume state {path} not found")
    saved = ms.load_checkpoint(path)
    step = saved.pop("step", None)
    if step is None:
        raise ValueError(f"{path} is not a train_vae.py resume state (no step recorded)")
    missing = sorted(set(state) - set(saved))
    if missing:
        raise ValueError(f"resume state {path} lacks {len(missing)} entries ({', '.join(missing[:5])}): it was "
                         "written for a different architecture, discriminator or accumulation setting")
    for name, param in state.items():
        value = saved[name]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"resume state {path}: {name} has shape {tuple(value.shape)}, the model "
                             f"{tuple(param.shape)}: the config's architecture differs from the saved run")
        param.set_data(value)
    return int(np.asarray(step.asnumpy() if hasattr(step, "asnumpy") else step).item())
