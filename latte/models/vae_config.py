"""The architecture of an AutoencoderKL, spelled with diffusers' config.json field names.

Importing this module needs neither MindSpore nor torch, so converters and config checks can read an
architecture cheaply (only inferring one from a .ckpt without its record loads MindSpore).
Defaults are stabilityai/sd-vae-ft-mse (the VAE Latte uses).
"""
import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass

import numpy as np

from latte.checkpoint_io import CheckpointError, meta_path, read_ms_checkpoint

VAE_SCALE_FACTOR = 0.18215  # sd-vae-ft-mse: latents are multiplied by this before the diffusion model sees them
DOWN_BLOCK_TYPE = "DownEncoderBlock2D"
UP_BLOCK_TYPE = "UpDecoderBlock2D"
SUPPORTED_ACTIVATIONS = ("silu", "swish")  # both names mean x * sigmoid(x) in diffusers
CLASS_NAME = "AutoencoderKL"

# config.json fields that do not change the cells (bookkeeping, tiling size, pipeline hints): accepted, unused.
IGNORED_FIELDS = frozenset({
    "_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "sample_size", "force_upcast",
})
# Latent normalisations other VAEs use (SD3, Flux); only their "off" value (None) is supported.
UNSUPPORTED_WHEN_SET = ("shift_factor", "latents_mean", "latents_std")


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple = (128, 256, 512, 512)  # width of each resolution level, highest resolution first
    down_block_types: tuple = None  # None: DOWN_BLOCK_TYPE at every level
    up_block_types: tuple = None  # None: UP_BLOCK_TYPE at every level
    layers_per_block: int = 2  # resnets per encoder level; decoder levels have one more
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    scaling_factor: float = VAE_SCALE_FACTOR

    def __post_init__(self):
        levels = len(self.block_out_channels)
        # frozen dataclass: normalise lists from JSON to tuples and fill the per-level block types
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "down_block_types", tuple(self.down_block_types or (DOWN_BLOCK_TYPE,) * levels))
        object.__setattr__(self, "up_block_types", tuple(self.up_block_types or (UP_BLOCK_TYPE,) * levels))
        self._validate()

    def _validate(self):
        levels = len(self.block_out_channels)
        if levels == 0:
            raise ValueError("block_out_channels is empty: give one width per resolution level, e.g. (128, 256)")
        for name, types, wanted in (("down_block_types", self.down_block_types, DOWN_BLOCK_TYPE),
                                    ("up_block_types", self.up_block_types, UP_BLOCK_TYPE)):
            if len(types) != levels:
                raise ValueError(f"{name} has {len(types)} entries but block_out_channels has {levels}: "
                                 "give one block type per level")
            other = sorted(set(types) - {wanted})
            if other:
                raise ValueError(f"{name} contains {other}: this AutoencoderKL only supports {wanted!r}")
        if self.act_fn not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"act_fn={self.act_fn!r} is not supported: the VAE cells use SiLU ('silu')")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block={self.layers_per_block}: need at least one resnet per level")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block widths {bad}")

    @property
    def downsample_factor(self):
        """Image pixels per latent pixel along H and W (8 for sd-vae-ft-mse)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, fields):
        """Builds a config from diffusers config.json fields (or keyword arguments); unknown fields are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, value in fields.items():
            if name in known:
                kwargs[name] = value
            elif name == "_class_name" and value != CLASS_NAME:
                raise ValueError(f"config is for {value!r}, not {CLASS_NAME!r}: this converter and cell only "
                                 "handle the Stable Diffusion KL autoencoder")
            elif name in UNSUPPORTED_WHEN_SET and value is not None:
                raise ValueError(f"config sets {name}={value!r}: latent shift/normalisation is not supported "
                                 f"(only {CLASS_NAME} configs with {name}=null)")
            elif name not in IGNORED_FIELDS and name not in UNSUPPORTED_WHEN_SET:
                raise ValueError(f"unknown {CLASS_NAME} config field {name!r}: supported fields are "
                                 f"{sorted(known)} (ignored: {sorted(IGNORED_FIELDS)})")
        return cls(**kwargs)

    def to_dict(self):
        """JSON-able dict of every field (tuples as lists), loadable by from_dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------------------
# The architecture of a checkpoint: its record, or its weight shapes
# ---------------------------------------------------------------------------------------------------------

def _shape(state, key, axis):
    if key not in state:
        raise CheckpointError(f"cannot infer the VAE architecture: {key} is missing from the checkpoint "
                              "(give its config.json with --config)")
    return int(np.shape(state[key])[axis])


def _indices(state, pattern):
    return sorted({int(m[1]) for k in state if (m := re.match(pattern, k))})


def infer_architecture(state):
    """AutoencoderKL config fields readable from weight shapes (canonical or MindSpore names).

    norm_num_groups, act_fn and scaling_factor leave no trace in the weights and are not returned.
    """
    levels = _indices(state, r"encoder\.down_blocks\.(\d+)\.")
    if not levels:
        raise CheckpointError("cannot infer the VAE architecture: no encoder.down_blocks.* weights")
    return {
        "in_channels": _shape(state, "encoder.conv_in.weight", 1),
        "out_channels": _shape(state, "decoder.conv_out.weight", 0),
        "latent_channels": _shape(state, "decoder.conv_in.weight", 1),
        "block_out_channels": [_shape(state, f"encoder.down_blocks.{i}.resnets.0.conv1.weight", 0) for i in levels],
        "layers_per_block": len(_indices(state, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")),
        "use_quant_conv": "quant_conv.weight" in state,
        "use_post_quant_conv": "post_quant_conv.weight" in state,
        "mid_block_add_attention": any(".mid_block.attentions." in k for k in state),
    }


def read_vae_architecture(ckpt_path):
    """The VAEConfig of a VAE checkpoint, or None when the file does not exist (yet) or holds no VAE.

    Read from the `<ckpt>.json` record that tools/vae_converter.py and tools/train_vae.py write next to it (or,
    without one, inferred from the weight shapes as load_vae does); it tells the Latte side the latent
    channels, the downsampling and the frame channels. Cached per file version. Raises CheckpointError when the
    record exists but does not describe a usable architecture.
    """
    if not ckpt_path:
        return None
    sidecar = meta_path(ckpt_path)
    path = sidecar if os.path.isfile(sidecar) else ckpt_path
    if not os.path.isfile(path):
        return None
    return _read_architecture(os.path.abspath(path), os.path.getmtime(path))


@functools.lru_cache(maxsize=8)
def _read_architecture(path, _mtime):
    if path.endswith(".json"):
        with open(path) as f:
            fields = json.load(f).get("config")
        if fields is None:
            raise CheckpointError(f"{path} has no 'config' (the VAE architecture): convert or train the VAE again")
    else:
        try:
            fields = infer_architecture(read_ms_checkpoint(path)[0])
        except CheckpointError:
            return None  # not a VAE checkpoint: load_vae reports it when the VAE is built
        fields["norm_num_groups"] = 1  # weights do not show it and only channels/levels are needed here
    try:
        return VAEConfig.from_dict(fields)
    except ValueError as err:
        raise CheckpointError(f"{path}: the VAE architecture it records is not usable ({err})") from None
