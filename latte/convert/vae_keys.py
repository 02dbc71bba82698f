"""Names and shapes of Stable Diffusion VAE checkpoints: source layouts -> our MindSpore parameter names.

Torch-free (numpy only). Layouts users have:
- diffusers, current attention names: `encoder.mid_block.attentions.0.to_q.weight`, `...to_out.0.weight`;
- diffusers, legacy attention names (older hub files): `...attentions.0.query/key/value/proj_attn.weight`;
- CompVis/LDM (e.g. vae-ft-mse-840000-ema-pruned.ckpt): `encoder.down.0.block.0.nin_shortcut`,
  `encoder.mid.attn_1.q` as 1x1 convs, decoder levels numbered low-resolution-last, optionally under
  `first_stage_model.` inside a whole Stable Diffusion checkpoint, with training leftovers (`loss.*`,
  `model_ema.*`) that are ignored and reported.
Everything is first renamed to the current diffusers names ("canonical"); our cells use those names with
GroupNorm `weight`/`bias` called `gamma`/`beta`.
"""
import os
import re
from collections import OrderedDict

from latte.checkpoint_io import CheckpointError
from latte.convert.io import read_json

CONFIG_FILE = "config.json"
# Weight files of a diffusers folder, in order of preference.
DIFFUSERS_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin",
)

LAYOUT_DIFFUSERS = "diffusers"
LAYOUT_DIFFUSERS_LEGACY = "diffusers with legacy attention names (query/key/value/proj_attn)"
LAYOUT_LDM = "CompVis/LDM"

# A VAE inside a larger checkpoint sits under one of these prefixes (whole SD checkpoints, some single files).
VAE_PREFIXES = ("first_stage_model.", "vae.")
# Training leftovers in LDM autoencoder checkpoints: the GAN/LPIPS loss and the EMA shadow copy.
IGNORED_PREFIXES = ("loss.", "model_ema.")
# Keys that only a Latte transformer checkpoint has.
LATTE_MARKERS = ("x_embedder.proj.weight", "t_embedder.mlp.0.weight", "blocks.0.attn.qkv.weight")
GROUP_NORM_MODULES = ("norm1", "norm2", "conv_norm_out", "group_norm")
GROUP_NORM_PARAMS = {"weight": "gamma", "bias": "beta"}  # torch name -> MindSpore nn.GroupNorm name
ATTENTION_PROJECTIONS = (".to_q", ".to_k", ".to_v", ".to_out.0")  # linear in our cells; 1x1 convs in LDM

_LEGACY_ATTENTION = (("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0"))
_LDM_RULES = (  # applied in order, each at most once per key
    (r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out."),
    (r"^(encoder|decoder)\.mid\.block_(\d)\.", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."),
    (r"^(encoder|decoder)\.mid\.attn_1\.norm\.", r"\1.mid_block.attentions.0.group_norm."),
    (r"^(encoder|decoder)\.mid\.attn_1\.(q|k|v)\.", r"\1.mid_block.attentions.0.to_\2."),
    (r"^(encoder|decoder)\.mid\.attn_1\.proj_out\.", r"\1.mid_block.attentions.0.to_out.0."),
    (r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
    (r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0."),
    (r"\.nin_shortcut\.", ".conv_shortcut."),
)


# ---------------------------------------------------------------------------------------------------------
# Finding the files, the VAE inside them and its layout
# ---------------------------------------------------------------------------------------------------------

def locate_source(source, config_path=None):
    """(weights file, config.json or None) for a diffusers folder or a single checkpoint file."""
    if not os.path.exists(source):
        raise CheckpointError(f"{source}: no such file or folder")
    if os.path.isdir(source):
        found = [os.path.join(source, n) for n in DIFFUSERS_WEIGHT_FILES if os.path.isfile(os.path.join(source, n))]
        if not found:
            raise CheckpointError(f"{source}: folder has none of {', '.join(DIFFUSERS_WEIGHT_FILES)} "
                                  f"(it holds: {', '.join(sorted(os.listdir(source))[:8]) or 'nothing'})")
        folder_config = os.path.join(source, CONFIG_FILE)
        if config_path is None and os.path.isfile(folder_config):
            config_path = folder_config
        return found[0], config_path
    if os.path.basename(source) == CONFIG_FILE:
        raise CheckpointError(f"{source}: config.json holds no weights; give the folder that contains it")
    return source, config_path


def read_config(path):
    """The dict in a diffusers config.json; a CheckpointError for a missing or malformed file."""
    return read_json(path)


def select_vae_keys(state):
    """Returns (vae_state, prefix, ignored_keys): the VAE tensors with any wrapping prefix removed.

    Keys outside the VAE prefix (the rest of a Stable Diffusion checkpoint) and training leftovers are
    returned in `ignored_keys`; a Latte transformer checkpoint or a file without VAE weights is an error.
    """
    if any(marker in state for marker in LATTE_MARKERS) or any(k.startswith("blocks.") for k in state):
        raise CheckpointError("this is a Latte transformer checkpoint (x_embedder/blocks.N.attn.qkv), not a VAE: "
                              "convert it with tools/latte_converter.py")
    prefix = next((p for p in VAE_PREFIXES if any(k.startswith(p + "encoder.") for k in state)), "")
    vae_state, ignored = OrderedDict(), []
    for key, value in state.items():
        if not key.startswith(prefix):
            ignored.append(key)
            continue
        name = key[len(prefix):]
        if name.startswith(IGNORED_PREFIXES):
            ignored.append(key)
        else:
            vae_state[name] = value
    if not any(k.startswith("encoder.") for k in vae_state):
        sample = ", ".join(list(state)[:5])
        raise CheckpointError(f"no VAE weights found (expected keys like encoder.conv_in.weight; "
                              f"the file starts with: {sample})")
    return vae_state, prefix, ignored


def detect_layout(state):
    if any(k.startswith(("encoder.down.", "decoder.up.")) or ".mid.block_" in k for k in state):
        return LAYOUT_LDM
    if any(f".attentions.0.{old}." in k for k in state for old, _ in _LEGACY_ATTENTION):
        return LAYOUT_DIFFUSERS_LEGACY
    return LAYOUT_DIFFUSERS


def summarize_ignored(keys, prefix=""):
    """'loss.* (12), model_ema.* (3)': ignored keys grouped by their first name component after `prefix`."""
    groups = OrderedDict()
    for key in keys:
        inside = prefix if prefix and key.startswith(prefix) else ""
        rest = key[len(inside):]
        head = inside + rest.split(".", 1)[0] + (".*" if "." in rest else "")
        groups[head] = groups.get(head, 0) + 1
    return ", ".join(f"{head} ({n})" for head, n in groups.items())


# ---------------------------------------------------------------------------------------------------------
# Renaming
# ---------------------------------------------------------------------------------------------------------

def _ldm_name(key, decoder_levels):
    for pattern, replacement in _LDM_RULES:
        key = re.sub(pattern, replacement, key, count=1)
    # LDM numbers decoder levels from the highest resolution (up.0 runs last); diffusers in running order
    match = re.match(r"^decoder\.up\.(\d+)\.(block\.(\d+)|upsample)\.", key)
    if match:
        level = decoder_levels - 1 - int(match[1])
        inner = f"resnets.{match[3]}" if match[3] is not None else "upsamplers.0"
        key = f"decoder.up_blocks.{level}.{inner}." + key[match.end():]
    return key


def _legacy_name(key):
    for old, new in _LEGACY_ATTENTION:
        key = key.replace(f".attentions.0.{old}.", f".attentions.0.{new}.")
    return key


def canonical_name(key, layout, decoder_levels):
    """One source key of `layout` -> its current diffusers name."""
    if layout == LAYOUT_LDM:
        return _ldm_name(key, decoder_levels)
    if layout == LAYOUT_DIFFUSERS_LEGACY:
        return _legacy_name(key)
    return key


def mindspore_name(canonical):
    """Current diffusers name -> our cells' name (GroupNorm weight/bias -> gamma/beta)."""
    module, leaf = canonical.rsplit(".", 1)
    if module.rsplit(".", 1)[-1] in GROUP_NORM_MODULES:
        leaf = GROUP_NORM_PARAMS.get(leaf, leaf)
    return f"{module}.{leaf}"


def convert_state(state, layout):
    """Renames a VAE state dict of `layout` to our names; LDM's 1x1-conv attention weights become 2-D.

    Returns (params, origin): our name -> array, and our name -> the source key it came from.
    """
    decoder_levels = 1 + max((int(m[1]) for k in state if (m := re.match(r"decoder\.up\.(\d+)\.", k))), default=-1)
    params, origin = OrderedDict(), {}
    for key, value in state.items():
        canonical = canonical_name(key, layout, decoder_levels)
        if canonical.rsplit(".", 1)[0].endswith(ATTENTION_PROJECTIONS) and value.ndim > 2:
            if any(size != 1 for size in value.shape[2:]):
                raise CheckpointError(f"{key}: attention projection of shape {value.shape} is not a 1x1 conv")
            value = value.reshape(value.shape[:2])  # (C_out, C_in, 1[, 1]) conv -> (C_out, C_in) linear
        name = mindspore_name(canonical)
        if name in params:
            raise CheckpointError(f"{origin[name]} and {key} both map to {name}: the checkpoint mixes layouts")
        params[name], origin[name] = value, key
    return params, origin


def split_known(params, origin, expected_shapes):
    """(known, unused): the params the network has, and the source keys of those it does not have."""
    known = OrderedDict((k, v) for k, v in params.items() if k in expected_shapes)
    unused = [origin[k] for k in params if k not in expected_shapes]
    return known, unused
