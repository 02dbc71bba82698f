"""MindSpore checkpoint I/O for the whole library: writing, reading, strict loading and the sidecar records.

A weights file `<name>.ckpt` holds weights only (so a strict load has no unused entries); what built them is
recorded in the JSON sidecar `<name>.ckpt.json` (`meta_path`, `read_meta`). Both are written atomically.

    save_ms_checkpoint(params, "models/x.ckpt", meta={...})   # name -> ndarray/Tensor, + sidecar
    params, meta = read_ms_checkpoint("models/x.ckpt")          # name -> ndarray, sidecar dict ({} if none)
    load_strict(net, params, what="models/x.ckpt")              # every parameter filled, every entry used

Every problem with a checkpoint a user gave is a CheckpointError (a ValueError) whose message is one line naming
the file and the fix. Importing this module does not import MindSpore (only the functions that touch .ckpt do).
"""
import json
import os
import re
from collections import OrderedDict

import numpy as np

CKPT_SUFFIX = ".ckpt"
META_SUFFIX = ".json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

# parameter -> the config key that usually explains a shape mismatch on it (Latte's names)
SHAPE_HINTS = {
    "temp_embed": "num_frames",
    "pos_embed": "image_size (or model_name: patch size)",
    "y_embedder.embedding_table": "num_classes / class_dropout_prob",
    "x_embedder.proj.weight": "model_name (hidden size, patch size) or patch_embedder",
    "final_layer.linear.weight": "model_name (patch size) or learn_sigma",
}
_LISTED = 6  # names shown per kind of problem
# train.py's files under <output>/ckpt/ (latte/training/checkpoints.py writes them)
STATE_FILE = re.compile(r"^train_state-(\d+)\.ckpt$")
LATTE_PREFIX = "latte-"  # ckpt/latte-<step>[-ema].ckpt: what sample.py and the converter load
VAE_PREFIX = "vae-"  # ckpt/vae-<step>.ckpt (tools/train_vae.py): load_vae() loads it; train.py / sample.py take it


def weights_name(step, ema=False, prefix=LATTE_PREFIX):
    """File name of a trainer's weights at `step`: `latte-0002100.ckpt`, `latte-0002100-ema.ckpt`, `vae-...`."""
    return f"{prefix}{step:07d}{'-ema' if ema else ''}{CKPT_SUFFIX}"


class CheckpointError(ValueError):
    """A problem with a checkpoint a user gave us; the message is one line that says what to do."""


# ---------------------------------------------------------------------------------------------------------
# Sidecar records
# ---------------------------------------------------------------------------------------------------------

def meta_path(ckpt_path):
    """The sidecar record of a checkpoint: `<ckpt>.json`."""
    return ckpt_path + META_SUFFIX


def read_meta(path):
    """The sidecar record `<path>.json` of a checkpoint ({} when there is none); the weights are not read."""
    if not os.path.isfile(meta_path(path)):
        return {}
    with open(meta_path(path)) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{meta_path(path)} is not valid JSON ({err}): restore or delete it") from None


def weights_beside_state(path):
    """For a train.py resume state `.../train_state-<step>.ckpt`: the weights saved with it, EMA first
    (`latte-<step>-ema.ckpt`, else `latte-<step>.ckpt`), as (path or None, the EMA path); (None, None) for any
    other file."""
    match = STATE_FILE.match(os.path.basename(path))
    if not match:
        return None, None
    folder, step = os.path.dirname(path), int(match.group(1))
    ema, raw = (os.path.join(folder, weights_name(step, ema=e)) for e in (True, False))
    return next((p for p in (ema, raw) if os.path.isfile(p)), None), ema


def _atomic_write_json(obj, path):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# Writing and reading .ckpt files
# ---------------------------------------------------------------------------------------------------------

def save_ms_checkpoint(params, path, meta=None):
    """Writes `params` (name -> numpy array or Tensor) as a MindSpore .ckpt, atomically.

    `meta` (JSON-able) goes to the sidecar `<path>.json`; the .ckpt holds weights only.
    """
    import mindspore as ms

    if not path.endswith(CKPT_SUFFIX):
        raise CheckpointError(f"{path}: MindSpore checkpoints must end in {CKPT_SUFFIX}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    entries = [{"name": name, "data": ms.Tensor(np.asarray(value)) if isinstance(value, np.ndarray) else value}
               for name, value in params.items()]
    tmp = f"{path}.tmp-{os.getpid()}{CKPT_SUFFIX}"
    try:
        ms.save_checkpoint(entries, tmp)
        if meta is not None:
            _atomic_write_json(meta, meta_path(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_ms_checkpoint(path, what="checkpoint", converter="tools/latte_converter.py"):
    """Returns (name -> numpy array, sidecar record or {}) of a MindSpore .ckpt.

    Torch/safetensors files get a pointer to `converter`; missing and damaged files are CheckpointErrors.
    Non-tensor entries (a resume state's step counters) are left out.
    """
    import mindspore as ms

    if not path:
        raise CheckpointError(f"{what} path is empty: give a .ckpt file")
    if path.endswith(TORCH_SUFFIXES):
        raise CheckpointError(f"{what} {path} is a torch/safetensors file: convert it first with "
                              f"'python {converter} --source {path} --target {os.path.splitext(path)[0]}.ckpt'")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} not found: convert the released weights to it with 'python {converter} "
                              f"--source <downloaded weights> --target {path}' (README: Convert the released "
                              "checkpoints), or fix the path")
    try:
        loaded = ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError for damaged files
        raise CheckpointError(f"{what} {path} is not a readable MindSpore checkpoint ({err})") from err
    params = OrderedDict((k, v.asnumpy()) for k, v in loaded.items() if hasattr(v, "asnumpy"))
    return params, read_meta(path)


# ---------------------------------------------------------------------------------------------------------
# Strict loading
# ---------------------------------------------------------------------------------------------------------

def _shape_problem(name, stored, wanted):
    hint = SHAPE_HINTS.get(name)
    return f"{name}: checkpoint {stored} vs model {wanted}" + (f" (check {hint})" if hint else "")


def load_strict(net, weights, what="checkpoint", describe="", in_place=False):
    """Loads name -> array (numpy or Tensor) into `net`; raises CheckpointError naming every missing or unused
    key and every shape mismatch (with the config key that usually explains it).

    Names are relative to `net` (structural), so a net already nested in another cell still matches. Values are
    cast to each parameter's dtype (fp16-stored weights load into fp32 parameters).
    in_place: copy into the parameters' existing memory instead of replacing it -- needed to reload a net that an
    @ms.jit construct already ran in PyNative mode: MindSpore 2.10's compiled graph keeps reading the memory it
    was compiled with, so set_data (and load_param_into_net) would change nothing it computes.
    """
    import mindspore as ms

    params = dict(net.parameters_and_names())
    weights = {k: v for k, v in weights.items() if hasattr(v, "shape")}
    missing = sorted(set(params) - set(weights))
    unused = sorted(set(weights) - set(params))
    wrong = [_shape_problem(name, tuple(weights[name].shape), tuple(params[name].shape))
             for name in sorted(set(params) & set(weights))
             if tuple(params[name].shape) != tuple(weights[name].shape)]
    if missing or unused or wrong:
        parts = [f"{what} does not fit {describe or type(net).__name__}"]
        if wrong:
            parts.append("shape mismatches: " + "; ".join(wrong[:_LISTED]))
        if missing:
            parts.append(f"{len(missing)} parameters missing from the checkpoint: {', '.join(missing[:_LISTED])}")
        if unused:
            parts.append(f"{len(unused)} checkpoint keys the model does not have: {', '.join(unused[:_LISTED])}")
        raise CheckpointError(". ".join(parts))
    for name, param in params.items():
        value = weights[name]
        array = value if isinstance(value, np.ndarray) else value.asnumpy()
        if in_place:
            param.copy_(ms.Tensor(array, param.dtype))
        else:
            param.set_data(ms.Tensor(array, param.dtype))


def load_checkpoint_into(net, path, describe="", converter="tools/latte_converter.py", in_place=False):
    """Reads the .ckpt at `path` and loads it strictly into `net` (load_strict's in_place); returns its sidecar
    record."""
    params, meta = read_ms_checkpoint(path, converter=converter)
    load_strict(net, params, what=f"checkpoint {path}", describe=describe, in_place=in_place)
    return meta
