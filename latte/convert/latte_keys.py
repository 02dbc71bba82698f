"""Official PyTorch Latte state dict <-> latte-ms parameters (torch-free).

Names are identical except the label table (`y_embedder.embedding_table.weight` -> `.embedding_table`) and,
for the "linear" patch embedder, the patch weight reshaped (D, C, p, p) <-> (D, C*p*p).
"""
import math
import re
from collections import OrderedDict

import numpy as np

from latte.checkpoint_io import CheckpointError
from latte.convert.io import check_mapping, strip_prefixes
from latte.models.registry import find_variant, model_spec

WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile / DDP wrappers
_LABEL_TORCH, _LABEL_MS = "y_embedder.embedding_table.weight", "y_embedder.embedding_table"
_PATCH_WEIGHT = "x_embedder.proj.weight"
_REQUIRED = ("x_embedder.proj.weight", "pos_embed", "t_embedder.mlp.0.weight", "final_layer.linear.weight")
_VAE_MARKERS = ("encoder.conv_in.weight", "decoder.conv_in.weight", "encoder.down.0.block.0.conv1.weight",
                "first_stage_model.encoder.conv_in.weight", "quant_conv.weight")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def check_is_latte(state, source="checkpoint"):
    """Raises CheckpointError naming what the file is when it is not an official Latte state dict."""
    keys = set(state)
    if any(k in keys for k in _VAE_MARKERS):
        raise CheckpointError(f"{source} is a VAE checkpoint, not Latte: convert it with tools/vae_converter.py")
    missing = [k for k in _REQUIRED if k not in keys]
    if missing:
        raise CheckpointError(f"{source} is not a Latte checkpoint (missing {', '.join(missing)}; "
                              f"first keys: {', '.join(sorted(keys)[:5])})")
    if "temp_embed" not in keys:
        raise CheckpointError(f"{source} has no temp_embed: it is an image model (DiT?), not a video Latte")


def describe_official(state, num_heads=None, num_classes=None, source="checkpoint"):
    """Latte(...) kwargs (plus 'model_name') read from the shapes of an official state dict."""
    check_is_latte(state, source)
    hidden, in_channels, patch = (int(s) for s in state[_PATCH_WEIGHT].shape[:3])
    depth = 1 + max(int(m.group(1)) for m in map(_BLOCK.match, state) if m)
    num_patches = int(state["pos_embed"].shape[1])
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise CheckpointError(f"{source}: pos_embed has {num_patches} tokens, not a square patch grid")
    out_dim = int(state["final_layer.linear.weight"].shape[0])
    learn_sigma = out_dim == patch * patch * 2 * in_channels
    mlp_hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    config = dict(input_size=grid * patch, patch_size=patch, in_channels=in_channels, hidden_size=hidden,
                  depth=depth, mlp_ratio=mlp_hidden / hidden, num_frames=int(state["temp_embed"].shape[1]),
                  learn_sigma=learn_sigma, condition=None)
    if _LABEL_TORCH in state:
        rows = int(state[_LABEL_TORCH].shape[0])
        # released/trained models use class_dropout_prob > 0, so the last row is the null (CFG) class
        config.update(condition="class", num_classes=num_classes or rows - 1,
                      class_dropout_prob=0.1 if (num_classes or rows - 1) < rows else 0.0)
    elif "text_embedding_projection.1.weight" in state:
        config["condition"] = "text"
    name = find_variant(depth, hidden, patch)
    if num_heads is None:
        if name is None:
            raise CheckpointError(f"{source}: depth={depth} hidden={hidden} patch={patch} matches no registered "
                                  "variant, so num_heads is unknown: pass --num_heads")
        num_heads = model_spec(name)["num_heads"]
    config["num_heads"] = num_heads
    config["model_name"] = name
    return config


def official_to_ms(state, patch_embedder="conv"):
    """Official names -> latte-ms names (see module doc). Returns a new OrderedDict."""
    state = strip_prefixes(state, WRAPPER_PREFIXES)
    out = OrderedDict()
    for key, value in state.items():
        if key == _LABEL_TORCH:
            key = _LABEL_MS
        elif key == _PATCH_WEIGHT and patch_embedder == "linear":
            value = value.reshape(value.shape[0], -1)  # (D, C, p, p) -> (D, C*p*p)
        out[key] = np.ascontiguousarray(value, dtype=np.float32)  # fp16/bf16 sources -> fp32 master weights
    return out


def ms_to_official(params, in_channels, patch_size):
    """latte-ms parameter names -> official state dict (conv patch weight, `.weight` label table)."""
    out = OrderedDict()
    for key, value in params.items():
        if key == _LABEL_MS:
            key = _LABEL_TORCH
        elif key == _PATCH_WEIGHT and value.ndim == 2:
            value = value.reshape(value.shape[0], in_channels, patch_size, patch_size)  # (D, C*p*p) -> (D, C, p, p)
        out[key] = np.ascontiguousarray(value)
    return out


def convert_official(state, net, patch_embedder="conv", source="checkpoint"):
    """Maps an official state dict onto `net`'s parameters; every key used, every parameter filled."""
    converted = official_to_ms(state, patch_embedder)
    expected = {p.name: tuple(p.shape) for p in net.get_parameters()}
    unused = [k for k in converted if k not in expected]
    check_mapping({k: v for k, v in converted.items() if k in expected}, expected, unused, what=source)
    return converted
