"""Reading torch / safetensors checkpoints without torch, and checking a converted mapping.

`read_state_dict` understands the files users download or train with the official code:
- sharded checkpoints through their `*.index.json` (transformers / diffusers save_pretrained);
- torch zip archives written by `torch.save` (.pt / .pth / .bin / .ckpt) -- parsed with a restricted unpickler
  that rebuilds tensors as numpy arrays and never executes code from the file;
- `.safetensors` files (memory-mapped; bfloat16 widened to float32 like torch's, so no torch is needed).
Older (pre-zip) torch files fall back to `torch.load` when torch is installed.

Writing and reading MindSpore checkpoints is latte/checkpoint_io.py; every problem is its CheckpointError.
"""
import json
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np

from latte.checkpoint_io import CheckpointError

_SAFETENSORS_SUFFIX = ".safetensors"
SHARD_INDEX_SUFFIX = ".index.json"  # a sharded checkpoint: {"weight_map": {tensor name: shard file}}
_ZIP_MAGIC = b"PK\x03\x04"

# torch storage class -> numpy dtype; bfloat16 is widened to float32 (numpy has no bfloat16)
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

# safetensors dtype -> numpy dtype; BF16 is widened to float32
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16", "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


# ---------------------------------------------------------------------------------------------------------
# torch zip archives
# ---------------------------------------------------------------------------------------------------------

class _Opaque:
    """Stand-in for any non-tensor object pickled in a checkpoint (argparse.Namespace, optimizer state ...)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _StorageType:
    def __init__(self, name):
        self.name = name


def _bf16_to_fp32(raw):
    widened = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
    return widened.view(np.float32)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    flat = storage
    if not size:
        return np.array(flat[storage_offset])
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *unused):
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles torch.save archives into numpy, allowing no class outside a small safe set."""

    def __init__(self, fileobj, archive, prefix):
        super().__init__(fileobj)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name == "Size":
            return tuple
        return _Opaque

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid[:5]
        if kind != "storage":
            raise CheckpointError(f"unsupported persistent object {kind!r} in torch archive")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            name = storage_type.name if isinstance(storage_type, _StorageType) else str(storage_type)
            dtype = _STORAGE_DTYPES.get(name)
            if dtype is None:
                raise CheckpointError(f"unsupported tensor storage {name} in torch archive")
            self._storages[key] = _bf16_to_fp32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


def _read_torch_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise CheckpointError(f"{path}: a zip file but not a torch checkpoint (no data.pkl inside)")
        prefix = pickles[0][: -len("/data.pkl")] if "/" in pickles[0] else ""
        with archive.open(pickles[0]) as f:
            return _TorchUnpickler(f, archive, prefix).load()


def _read_torch_legacy(path):
    try:
        import importlib

        torch = importlib.import_module("torch")
    except ImportError as err:
        raise CheckpointError(
            f"{path}: not a zip-format torch checkpoint; legacy files need torch installed "
            "(pip install torch==2.13.0) or re-saving with torch >= 1.6"
        ) from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    return _torch_tree_to_numpy(obj, torch)


def _torch_tree_to_numpy(obj, torch):
    if isinstance(obj, torch.Tensor):
        return obj.detach().float().numpy() if obj.dtype == torch.bfloat16 else obj.detach().numpy()
    if isinstance(obj, dict):
        return OrderedDict((k, _torch_tree_to_numpy(v, torch)) for k, v in obj.items())
    return obj


def _read_safetensors(path):
    """name -> array of a .safetensors file, memory-mapped (read-only views: a 19 GB file costs no RAM until
    read); BF16 tensors (which numpy lacks) are widened to float32. Parses the format itself: the safetensors
    library's numpy loader rejects BF16."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if not 0 < header_len <= size - 8:
                raise ValueError(f"header length {header_len} does not fit the {size}-byte file")
            header = json.loads(f.read(header_len))
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len) if size > 8 + header_len else None
        tensors = OrderedDict()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            shape, dtype = tuple(info["shape"]), info["dtype"]
            if dtype not in _SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {name} has unsupported dtype {dtype}")
            if end > size - 8 - header_len or start > end:
                raise ValueError(f"tensor {name} lies past the end of the file (truncated download?)")
            raw = data[start:end] if end > start else np.zeros(0, np.uint8)
            wanted = _SAFETENSORS_DTYPES[dtype]
            array = _bf16_to_fp32(raw) if wanted == "bfloat16" else raw.view(wanted)
            tensors[name] = array.reshape(shape)
        return tensors
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({err})") from err


def read_json(path, what="config.json"):
    """The JSON object in `path` (a config.json, a shard index); a one-line CheckpointError naming the file for a
    missing, malformed or non-object file."""
    try:
        with open(path) as f:
            value = json.load(f)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the {what} ({err.strerror})") from None
    except ValueError as err:
        raise CheckpointError(f"{path}: the {what} is not valid JSON ({err}); download it again") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the {what} must hold a JSON object")
    return value


def read_shard_index(path):
    """The weight_map (tensor name -> shard file name) of a sharded checkpoint's `*.index.json`."""
    weight_map = read_json(path, "shard index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path}: no 'weight_map' (tensor -> shard file) in the shard index")
    return weight_map


def _read_sharded(index_path):
    """The state dict of a sharded checkpoint: its `*.index.json` weight_map names each tensor's shard file."""
    weight_map = read_shard_index(index_path)
    folder, state = os.path.dirname(index_path), OrderedDict()
    for shard in sorted(set(weight_map.values())):
        tensors = read_checkpoint_tree(os.path.join(folder, shard))
        wanted = {k for k, v in weight_map.items() if v == shard}
        missing, extra = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
        if missing or extra:
            raise CheckpointError(f"{index_path}: shard {shard} does not hold what the index says (missing: "
                                  f"{_listing(missing) or 'none'}; not in the index: {_listing(extra) or 'none'})")
        state.update((k, tensors[k]) for k in sorted(wanted))
    return state


def read_checkpoint_tree(path):
    """Reads a torch or safetensors checkpoint (or a sharded one's `*.index.json`) into nested dicts whose leaves
    are numpy arrays."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file inside it")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: file is empty")
    if path.endswith(SHARD_INDEX_SUFFIX):
        return _read_sharded(path)
    if path.endswith(_SAFETENSORS_SUFFIX):
        return _read_safetensors(path)
    if zipfile.is_zipfile(path):
        try:
            return _read_torch_zip(path)
        except CheckpointError:
            raise
        except Exception as err:  # truncated members, bad pickles
            raise CheckpointError(f"{path}: damaged torch checkpoint ({type(err).__name__}: {err})") from err
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == _ZIP_MAGIC:
        raise CheckpointError(f"{path}: damaged or truncated torch checkpoint (zip archive without its end); "
                              "download or copy it again")
    if head[:1] == b"\x80":  # a bare pickle: the pre-1.6 torch format
        return _read_torch_legacy(path)
    if _looks_like_safetensors(head, path):
        return _read_safetensors(path)
    raise CheckpointError(f"{path}: not a torch (.pt/.bin/.ckpt) or .safetensors checkpoint")


def _looks_like_safetensors(head, path):
    if len(head) < 8:
        return False
    header_len = int.from_bytes(head, "little")
    return 0 < header_len < os.path.getsize(path)


def is_array(value):
    return isinstance(value, np.ndarray)


def read_state_dict(path, prefer=("ema", "model", "state_dict", "module")):
    """Reads a checkpoint and returns its flat name -> numpy state dict.

    Wrapped forms are unwrapped in the order of `prefer` (official Latte files hold {"ema": sd} or
    {"model": sd, "ema": sd}; Lightning files hold {"state_dict": sd}).
    """
    return unwrap_state_dict(read_checkpoint_tree(path), prefer, path)


def unwrap_state_dict(tree, prefer, path="checkpoint"):
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path}: holds a {type(tree).__name__}, not a state dict")
    if tree and all(is_array(v) for v in tree.values()):
        return OrderedDict(tree)
    for key in prefer:
        if isinstance(tree.get(key), dict):
            return unwrap_state_dict(tree[key], prefer, path)
    keys = ", ".join(sorted(str(k) for k in tree)[:8])
    raise CheckpointError(f"{path}: found no state dict (top-level keys: {keys})")


# ---------------------------------------------------------------------------------------------------------
# Mapping checks
# ---------------------------------------------------------------------------------------------------------

def _listing(names, limit=12):
    names = sorted(names)
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_mapping(converted, expected_shapes, unused_source_keys, what="checkpoint"):
    """Raises CheckpointError unless `converted` fills exactly `expected_shapes` and no source key is unused.

    converted: target name -> array; expected_shapes: target name -> shape tuple.
    """
    problems = []
    missing = set(expected_shapes) - set(converted)
    extra = set(converted) - set(expected_shapes)
    wrong = [f"{k} {tuple(converted[k].shape)} != expected {tuple(expected_shapes[k])}"
             for k in sorted(set(converted) & set(expected_shapes))
             if tuple(converted[k].shape) != tuple(expected_shapes[k])]
    if missing:
        problems.append(f"parameters not filled: {_listing(missing)}")
    if extra:
        problems.append(f"unexpected parameters: {_listing(extra)}")
    if unused_source_keys:
        problems.append(f"source keys not used: {_listing(unused_source_keys)}")
    if wrong:
        problems.append(f"shape mismatches: {_listing(wrong, 6)}")
    if problems:
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(problems))


def strip_prefixes(state, prefixes):
    """Removes any of `prefixes` (e.g. '_orig_mod.', 'module.') from the start of every key, repeatedly."""
    out = OrderedDict()
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def cli_main(fn, argv=None):
    """Runs a converter main: a user error (CheckpointError, a missing file...) becomes one line on stderr and exit
    code 2 (latte.cli)."""
    from latte.cli import run_cli

    return run_cli(fn, argv)
