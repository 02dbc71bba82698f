"""The state of a training run on disk, for the Latte trainer and the autoencoder trainer alike.

Layout under <output>/:
  ckpt/<prefix><step>.ckpt (+ .json)      the weights (latte-, vae-) and their sidecar record
  ckpt/<prefix><step>-ema.ckpt (+ .json)  EMA weights, when the run keeps them
  ckpt/train_state-<step>.ckpt            everything an exact resume needs: every Parameter of the train step
                                          cells (weights, optimizer moments, loss scale, accumulated gradients,
                                          EMA, BatchNorm statistics, counters) and the record step/epoch/seed
  metrics.csv                             a row per logged optimizer step, flushed at once
Every file is written to a temporary name and renamed, so a kill during a save never leaves a corrupt file under
a final name; the newest `max_keep` of each kind are kept. Also here: the `--resume` rules, the key-settings
block both trainers log at start, and the loss-curve PNG.
"""
import csv
import glob
import hashlib
import logging
import os
import re

import numpy as np

import mindspore as ms

from latte.checkpoint_io import meta_path, save_ms_checkpoint, weights_name
from latte.config import ConfigError

logger = logging.getLogger(__name__)

STATE_PREFIX = "train_state-"
# integers saved next to the Parameters of a train state: where the run is, and the settings a resume must keep
# (the data order, noise and data position depend on them; states of older versions hold the first three only)
RESUME_KEYS = ("seed", "num_frames", "image_size", "train_batch_size", "gradient_accumulation_steps", "use_image_num",
               "timestep_power")
STATE_RECORD = ("step", "epoch") + RESUME_KEYS
# rebuilt from the config on resume (a longer max_steps changes its length), so never part of a state
NOT_SAVED_SUFFIX = "learning_rate"
RESUME_LATEST = ("true", "latest")  # --resume values meaning "the newest state in output_path"
NO_RESUME = ("false", "no", "0")
_STEP = re.compile(r"-(\d+)(?:-ema)?\.ckpt$")


_TMP_PID = re.compile(r"\.tmp-(\d+)")


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _step_of(path):
    match = _STEP.search(os.path.basename(path))
    return int(match.group(1)) if match else -1


# ---- checkpoints ---------------------------------------------------------------------------------------------

class RunCheckpoints:
    """<folder>/<prefix><step>[-ema].ckpt weights (+ sidecar) and <folder>/train_state-<step>.ckpt states."""

    def __init__(self, folder, prefix, max_keep=3):
        self.folder = folder
        self.prefix = prefix
        self.max_keep = max_keep
        os.makedirs(folder, exist_ok=True)
        self.remove_orphans()

    def weights_path(self, step, ema=False):
        return os.path.join(self.folder, weights_name(step, ema, self.prefix))

    def state_path(self, step):
        return os.path.join(self.folder, f"{STATE_PREFIX}{step:07d}.ckpt")

    def save(self, step, state, weights, meta, ema_weights=None, ema_meta=None, **record):
        """Writes the weights ({name: ndarray} + sidecar meta), the EMA weights when given, and the resume state
        (state_parameters' {name: Parameter}, with `step` and the integers of `record`); prunes old files.
        Returns the path of the weights to sample with (the EMA ones when given)."""
        save_ms_checkpoint(weights, self.weights_path(step), meta)
        if ema_weights is not None:
            save_ms_checkpoint(ema_weights, self.weights_path(step, ema=True), ema_meta)
        self._save_state(step, state, dict(record, step=step))
        self._prune()
        return self.weights_path(step, ema=ema_weights is not None)

    def _save_state(self, step, state, record):
        unknown = sorted(set(record) - set(STATE_RECORD))
        if unknown:
            raise ValueError(f"train state record keys {unknown} are not among {STATE_RECORD}")
        path = self.state_path(step)
        tmp = f"{path}.tmp-{os.getpid()}.ckpt"
        try:
            ms.save_checkpoint([{"name": name, "data": p} for name, p in state.items()], tmp,
                               append_dict={k: int(v) for k, v in record.items()})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _listing(self, pattern):
        paths = glob.glob(os.path.join(self.folder, pattern))
        return sorted((p for p in paths if ".tmp-" not in p), key=_step_of)

    def remove_orphans(self):
        """Deletes the temporary files of saves that a killed process left (ours `<file>.tmp-<pid>.ckpt` and .json,
        MindSpore's `<file>.tmp-<pid>.ckpt.tmp`: up to a whole state each). Files of a live process stay."""
        for path in glob.glob(os.path.join(self.folder, "*.tmp-*")):
            match = _TMP_PID.search(os.path.basename(path))
            if match and not _process_alive(int(match.group(1))):
                logger.info("removing %s, left by a save that was interrupted", path)
                try:
                    os.remove(path)
                except FileNotFoundError:  # another process removed it first
                    pass

    def _prune(self):
        for pattern in (f"{self.prefix}*[0-9].ckpt", f"{self.prefix}*-ema.ckpt", f"{STATE_PREFIX}*.ckpt"):
            for old in self._listing(pattern)[: -self.max_keep]:
                for path in (old, meta_path(old)):
                    if os.path.exists(path):
                        os.remove(path)
        self.remove_orphans()

    def latest_state(self):
        states = self._listing(f"{STATE_PREFIX}*.ckpt")
        return states[-1] if states else None


def state_parameters(cells, exclude=()):
    """name -> Parameter of everything the cells hold (shared parameters once): what a train state saves.
    Learning rates and `exclude` (frozen networks loaded from their own files) are left out."""
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


def _as_int(value):
    return int(np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value).item())


def read_state_record(path):
    """{'step', and 'epoch' / 'seed' when recorded} of a train state, without restoring anything: a resumed run
    knows where its data continues before it builds the pipeline."""
    if not os.path.isfile(path):
        raise ConfigError(f"resume state {path} not found: give an existing train_state-*.ckpt, or --resume latest")
    saved = ms.load_checkpoint(path, choice_func=lambda name: name in STATE_RECORD)
    if "step" not in saved:
        raise ConfigError(f"{path} is not a resume state (no step recorded): give a train_state-*.ckpt")
    return {k: _as_int(saved[k]) for k in STATE_RECORD if k in saved}


def load_state(path, state):
    """Restores every Parameter of `state` (name -> Parameter) from `path`; returns read_state_record(path)."""
    record = read_state_record(path)
    saved = ms.load_checkpoint(path, choice_func=lambda name: name not in STATE_RECORD)
    missing = sorted(set(state) - set(saved))
    if missing:
        raise ValueError(f"resume state {path} lacks {len(missing)} entries ({', '.join(missing[:5])}): it was "
                         "written by a different model, optimizer or accumulation setup")
    for name, param in state.items():
        value = saved[name]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"resume state {path}: {name} has shape {tuple(value.shape)}, the model "
                             f"{tuple(param.shape)}: the config's architecture differs from the saved run")
        param.set_data(value)
    return record


def resolve_resume(resume, checkpoints, output_path, refuse_existing=True):
    """The resume-state path `--resume` asks for, or None for a fresh run.

    Empty/false: a fresh run, refused (refuse_existing) when output_path already holds one; true/latest: the
    newest state `checkpoints` (a RunCheckpoints) finds; anything else: that path.
    """
    if resume is None or str(resume).lower() in NO_RESUME:
        latest = checkpoints.latest_state()
        if latest and refuse_existing:
            raise ConfigError(f"output_path {output_path} already holds a training run ({latest}): continue it "
                              "with --resume, or choose a new output_path")
        return None
    if str(resume).lower() in RESUME_LATEST:
        latest = checkpoints.latest_state()
        if latest is None:
            raise ConfigError(f"--resume: there is no resume state yet (no train_state-*.ckpt under "
                              f"{checkpoints.folder}): start the run without --resume")
        return latest
    return resume


def check_resume_settings(record, settings, path):
    """Refuses a resume whose settings (RESUME_KEYS: {key: value} of this run) differ from those the state
    recorded, naming the key: the data order, the noise and the data position would silently change."""
    changed = [f"{k}={settings[k]} but the state has {k}={record[k]}" for k in RESUME_KEYS
               if k in record and k in settings and settings[k] != record[k]]
    if changed:
        raise ConfigError(f"cannot resume {path} with other settings: {'; '.join(changed)} (the data order, noise "
                          "and data position depend on them): resume with the state's values, or start a new run")


def weights_digest(arrays):
    """A short sha256 of {name: ndarray} (names, dtypes, shapes, bytes): equal digests mean bit-equal weights."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ---- metrics and the start-of-run log ------------------------------------------------------------------------

class MetricsCSV:
    """metrics.csv with columns `fields`, a row per logged step, flushed at once; on resume (resume_step given),
    the rows up to the resumed step are kept and later ones dropped; otherwise the file starts empty."""

    def __init__(self, path, fields, resume_step=None):
        self.path = path
        self.fields = tuple(fields)
        rows = []
        if resume_step is not None and os.path.exists(path):
            rows = [r for r in read_metrics(path) if int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row):
        unknown = sorted(set(row) - set(self.fields))
        if unknown:
            raise ValueError(f"metrics row has columns {unknown} that {self.path} does not have {self.fields}")
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow({k: row.get(k, "") for k in self.fields})


def read_metrics(path):
    """The rows of a metrics.csv as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def log_key_settings(rows):
    """Logs the one key-settings block of a run: rows of (name, description)."""
    width = max(len(name) for name, _ in rows) + 1
    logger.info("key settings:\n%s", "\n".join(f"  {name:<{width}}{value}" for name, value in rows))


def plot_loss_curve(metrics_path, png_path, smooth=20, column="loss"):
    """Writes `column` (raw and moving average) of metrics.csv against step as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if r.get(column)]  # rows of checkpoint columns only are skipped
    if not rows:
        return None
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r[column]) for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, loss, alpha=0.35, label=column)
    if len(loss) >= smooth:
        kernel = np.ones(smooth) / smooth
        ax.plot(steps[smooth - 1:], np.convolve(loss, kernel, mode="valid"), label=f"mean of {smooth}")
    ax.set_xlabel("optimizer step")
    has_vb = "vb" in rows[0] and any(float(r["vb"]) != 0.0 for r in rows)  # learn_sigma: false has no vb term
    ax.set_ylabel(("loss (mse + vb)" if has_vb else "loss (mse)") if column == "loss" else column)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
