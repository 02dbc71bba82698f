"""LatteT2V (Latte-1) checkpoints -> latte-ms parameters (torch-free), and back to a diffusers folder.

Sources: a diffusers `transformer/` folder (config.json + diffusion_pytorch_model.safetensors, or sharded with
its `.safetensors.index.json`, or .bin), one weights file of it, or a torch file of the official repo's LatteT2V
({"ema": sd} and the like). The official LatteT2V and diffusers' LatteTransformer3DModel use the same parameter
names, and so do our cells (latte/models/latte_t2v.py): the rename table is the identity after removing
wrapper prefixes. The fixed sin-cos tables (`pos_embed.pos_embed`, `temp_pos_embed`) are buffers, not
parameters: when a file carries them they are checked against the tables the config gives, then dropped.
"""
import os
import re
from collections import OrderedDict

import numpy as np

from latte.checkpoint_io import CheckpointError
from latte.convert.io import check_mapping, read_json, strip_prefixes
from latte.convert.latte_keys import WRAPPER_PREFIXES
from latte.models.pos_embed import spatial_table, temporal_table
from latte.models.registry import T2V_MODELS, find_t2v_variant
from latte.models.t2v_config import T2VConfig

CONFIG_FILE = "config.json"
DIFFUSERS_CLASS = "LatteTransformer3DModel"  # config.json's _class_name of a diffusers transformer folder
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
# weights of a diffusers model folder, in order of preference (sharded ones through their index)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.safetensors.index.json")
MARKERS = ("pos_embed.proj.weight", "adaln_single.linear.weight")  # keys only a LatteT2V state dict has together
BUFFERS = ("pos_embed.pos_embed", "temp_pos_embed")  # fixed tables some files carry
BUFFER_TOLERANCE = 1e-4  # a carried table further than this from the recomputed one is another model
# Fields the weights do not show; without a config.json they are Latte-1's (every released LatteT2V's)
UNSEEN_DEFAULTS = ("norm_type", "norm_elementwise_affine", "norm_eps", "activation_fn", "num_embeds_ada_norm",
                   "dropout", "sample_size", "video_length")
_SPATIAL = re.compile(r"^transformer_blocks\.(\d+)\.")


def is_t2v_state(state):
    return all(k in state for k in MARKERS)


def variant_name(config):
    """The registered LatteT2V variant whose config this is, or None."""
    return next((name for name, spec in T2V_MODELS.items() if T2VConfig.from_dict(spec) == config), None)


def locate_source(source):
    """(weights file or shard index, config.json or None) of a diffusers model folder or a single file."""
    if not os.path.exists(source):
        raise CheckpointError(f"{source}: no such file or folder")
    if not os.path.isdir(source):
        if os.path.basename(source) == CONFIG_FILE:
            raise CheckpointError(f"{source}: config.json holds no weights; give the folder that contains it")
        return source, None
    found = [os.path.join(source, n) for n in WEIGHT_FILES if os.path.isfile(os.path.join(source, n))]
    if not found:
        raise CheckpointError(f"{source}: folder has none of {', '.join(WEIGHT_FILES)} "
                              f"(it holds: {', '.join(sorted(os.listdir(source))[:8]) or 'nothing'})")
    config = os.path.join(source, CONFIG_FILE)
    return found[0], config if os.path.isfile(config) else None


def read_config(path):
    """T2VConfig of a config.json; a CheckpointError naming the file for anything unreadable or unsupported."""
    try:
        return T2VConfig.from_dict(read_json(path))
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def _dim(state, key, axis, source):
    if key not in state:
        raise CheckpointError(f"{source}: {key} is missing, so the LatteT2V architecture cannot be read from the "
                              "shapes (give the folder with its config.json)")
    return int(np.shape(state[key])[axis])


def infer_config(state, num_heads=None, source="checkpoint"):
    """(T2VConfig, what decided it) from the weight shapes. num_attention_heads comes from a registered variant
    of the same shapes, else `num_heads`; the fields weights do not show are Latte-1's (UNSEEN_DEFAULTS)."""
    inner, in_channels, patch = (_dim(state, "pos_embed.proj.weight", a, source) for a in (0, 1, 2))
    layers = sorted({int(m[1]) for m in map(_SPATIAL.match, state) if m})
    if not layers:
        raise CheckpointError(f"{source}: no transformer_blocks.N weights: not a LatteT2V checkpoint")
    shape_fields = dict(
        in_channels=in_channels, patch_size=patch, num_layers=layers[-1] + 1,
        out_channels=_dim(state, "proj_out.weight", 0, source) // (patch * patch),
        caption_channels=_dim(state, "caption_projection.linear_1.weight", 1, source),
        attention_bias="transformer_blocks.0.attn1.to_q.bias" in state)
    cross = state.get("transformer_blocks.0.attn2.to_k.weight")
    name = find_t2v_variant(inner, **shape_fields)
    if num_heads is None and name is None:
        raise CheckpointError(f"{source}: width {inner} with {shape_fields} matches no registered LatteT2V "
                              f"({', '.join(T2V_MODELS)}), so num_attention_heads is unknown: pass --num_heads")
    heads = num_heads or T2V_MODELS[name]["num_attention_heads"]
    if inner % heads:
        raise CheckpointError(f"{source}: width {inner} is not divisible by --num_heads {heads}")
    fields = {k: T2V_MODELS["Latte-1"][k] for k in UNSEEN_DEFAULTS}
    fields.update(shape_fields, num_attention_heads=heads, attention_head_dim=inner // heads,
                  cross_attention_dim=None if cross is None else int(np.shape(cross)[1]))
    if name is not None:
        fields.update({k: T2V_MODELS[name][k] for k in ("sample_size", "video_length")})
    origin = f"weight shapes (num_attention_heads, sample_size, video_length: {name})" if name else \
        f"weight shapes and --num_heads ({', '.join(UNSEEN_DEFAULTS)}: Latte-1's)"
    try:
        return T2VConfig.from_dict(fields), origin
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None


def _check_buffer(name, value, wanted, source):
    value = np.asarray(value, np.float64)
    value = value[0] if value.ndim == 3 and value.shape[0] == 1 else value  # (1, N, D) -> (N, D)
    if value.shape != wanted.shape or np.abs(value - wanted).max() > BUFFER_TOLERANCE:
        raise CheckpointError(f"{source}: its {name} table is not the sin-cos table of the config "
                              f"({tuple(wanted.shape)}); the config (sample_size / video_length) does not fit "
                              "these weights")


def convert_t2v(state, config, expected_shapes, source="checkpoint"):
    """Maps a LatteT2V state dict onto our parameter names (every key used, every parameter filled, every
    shape checked); returns name -> float32 array. `expected_shapes`: our parameter name -> shape."""
    state = strip_prefixes(state, WRAPPER_PREFIXES)  # torch.compile / DDP wrappers
    tables = {"pos_embed.pos_embed": spatial_table(config.inner_dim, config.sample_size // config.patch_size,
                                                   config.sample_size // config.patch_size,
                                                   config.interpolation_scale),
              "temp_pos_embed": temporal_table(config.inner_dim, config.video_length)}
    out = OrderedDict()
    for key, value in state.items():
        if key in BUFFERS:
            _check_buffer(key, value, tables[key], source)
            continue
        out[key] = np.ascontiguousarray(value, dtype=np.float32)  # fp16/bf16 sources -> fp32 master weights
    unused = [k for k in out if k not in expected_shapes]
    check_mapping({k: v for k, v in out.items() if k in expected_shapes}, expected_shapes, unused, what=source)
    return out


def t2v_to_diffusers(params, config, expected_shapes, source="checkpoint"):
    """The reverse of convert_t2v: our LatteT2V parameters -> diffusers' state dict (the same names: the table is
    the identity; the fixed tables are buffers diffusers recomputes), every parameter of `config`'s model present
    with its shape and no other key; returns name -> float32 array."""
    state = OrderedDict((k, np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items())
    unused = [k for k in state if k not in expected_shapes]
    check_mapping({k: v for k, v in state.items() if k in expected_shapes}, expected_shapes, unused, what=source)
    return state


def diffusers_config(config):
    """config.json of a diffusers LatteTransformer3DModel folder for a T2VConfig."""
    return dict(_class_name=DIFFUSERS_CLASS, **config.to_dict())
