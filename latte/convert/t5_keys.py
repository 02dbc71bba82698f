"""transformers T5 checkpoints -> latte-ms T5EncoderModel parameters (torch-free for safetensors).

Sources users have:
- a T5EncoderModel folder (Latte-1's `text_encoder/`): config.json + model.safetensors, or shards
  model-0000x-of-0000N.safetensors listed in model.safetensors.index.json;
- the same saved by older transformers as pytorch_model.bin (or shards + pytorch_model.bin.index.json);
- a whole T5 (T5ForConditionalGeneration, e.g. google/t5-v1_1-xxl): its decoder half (`decoder.*`, `lm_head.*`)
  is skipped and counted.
Our parameter names are transformers' own; the one rename is the token embedding, which transformers ties
between `shared.weight` and `encoder.embed_tokens.weight` and saves under either name or both.
"""
import os
from collections import OrderedDict

import numpy as np

from latte.checkpoint_io import CheckpointError
from latte.convert.io import read_checkpoint_tree, read_shard_index, unwrap_state_dict

CONFIG_FILE = "config.json"
# A transformers folder's weights, in order of preference: (index json listing shards, or the single file)
FOLDER_WEIGHTS = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                  "pytorch_model.bin")
INDEX_SUFFIX = ".index.json"
RENAMES = {"encoder.embed_tokens.weight": "shared.weight"}  # transformers name -> ours (all others are equal)
TIED_EMBEDDING = ("shared.weight", "encoder.embed_tokens.weight")  # one tensor, saved under either or both
DECODER_PREFIXES = ("decoder.", "lm_head.")  # the decoder half of a whole T5 checkpoint: skipped
_STATE_ENTRIES = ("state_dict", "model", "module")  # wrappers around a state dict in hand-saved .bin files


# ---------------------------------------------------------------------------------------------------------
# Finding and reading the files
# ---------------------------------------------------------------------------------------------------------

def locate_source(source, config_path=None):
    """(weight files, index json or None, config.json or None) of a transformers folder, index json or file."""
    if not os.path.exists(source):
        raise CheckpointError(f"{source}: no such file or folder")
    if os.path.isdir(source):
        found = next((os.path.join(source, n) for n in FOLDER_WEIGHTS if os.path.isfile(os.path.join(source, n))),
                     None)
        if found is None:
            held = ", ".join(sorted(os.listdir(source))[:8]) or "nothing"
            raise CheckpointError(f"{source}: folder has none of {', '.join(FOLDER_WEIGHTS)} (it holds: {held}); "
                                  "give the transformers text_encoder folder")
        source = found
    if os.path.basename(source) == CONFIG_FILE:
        raise CheckpointError(f"{source}: config.json holds no weights; give the folder that contains it")
    folder_config = os.path.join(os.path.dirname(source), CONFIG_FILE)
    if config_path is None and os.path.isfile(folder_config):
        config_path = folder_config
    if source.endswith(INDEX_SUFFIX):
        index = read_shard_index(source)
        folder = os.path.dirname(source)
        files = [os.path.join(folder, name) for name in sorted(set(index.values()))]
        absent = [f for f in files if not os.path.isfile(f)]
        if absent:
            raise CheckpointError(f"{source} lists shards that are missing: {', '.join(absent[:4])}; download "
                                  "every shard of the folder")
        return files, source, config_path
    return [source], None, config_path


def read_state(files, index_path=None):
    """name -> array over all `files` (shards); with an index, every tensor must sit in the shard it names."""
    state, where = OrderedDict(), {}
    for path in files:
        shard = unwrap_state_dict(read_checkpoint_tree(path), _STATE_ENTRIES, path)
        for name, value in shard.items():
            if name in state:
                raise CheckpointError(f"{name} is in both {where[name]} and {path}: the shards overlap")
            state[name], where[name] = value, path
    if index_path is not None:
        index = read_shard_index(index_path)
        misplaced = sorted(n for n in index if n in where and os.path.basename(where[n]) != index[n])
        missing = sorted(n for n in index if n not in where)
        unlisted = sorted(n for n in where if n not in index)
        for problem, names in (("listed in the index but in no shard", missing),
                               ("in a shard other than the index says", misplaced),
                               ("in a shard but not in the index", unlisted)):
            if names:
                raise CheckpointError(f"{index_path}: tensors {problem}: {', '.join(names[:4])}"
                                      + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
                                      + "; download the folder again")
    return state


# ---------------------------------------------------------------------------------------------------------
# Renaming
# ---------------------------------------------------------------------------------------------------------

def split_decoder(state):
    """(encoder tensors, names of skipped decoder tensors) of a T5EncoderModel or a whole T5 state dict."""
    encoder = OrderedDict((k, v) for k, v in state.items() if not k.startswith(DECODER_PREFIXES))
    return encoder, [k for k in state if k.startswith(DECODER_PREFIXES)]


def convert_state(state, source="checkpoint"):
    """Renames transformers T5 encoder tensors to our parameter names; returns (our name -> array, origin).

    The tied token embedding becomes `shared.weight`; when both of its names are saved they must be equal.
    """
    tied = [k for k in TIED_EMBEDDING if k in state]
    if len(tied) == 2 and (state[tied[0]].shape != state[tied[1]].shape
                           or not np.array_equal(state[tied[0]], state[tied[1]])):
        raise CheckpointError(f"{source}: shared.weight and encoder.embed_tokens.weight differ, but T5EncoderModel "
                              "ties them (one token embedding); the checkpoint is not a transformers T5 encoder")
    params, origin = OrderedDict(), {}
    for key, value in state.items():
        name = RENAMES.get(key, key)
        if name not in params:
            params[name], origin[name] = value, key
    return params, origin
