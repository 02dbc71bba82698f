"""The architecture of a KL autoencoder, spelled with diffusers' config.json field names.

One record for both kinds latte-ms builds (`kind`):
- "kl": diffusers' AutoencoderKL, the Stable Diffusion VAE (per-frame encoder and decoder);
- "temporal_decoder": diffusers' AutoencoderKLTemporalDecoder (Stable Video Diffusion's VAE, Latte-1's
  `vae_temporal_decoder/`): the same encoder, a decoder that mixes frames, no post_quant_conv.
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
SUPPORTED_ACTIVATIONS = ("silu", "swish")  # both names mean x * sigmoid(x) in diffusers
KIND_KL = "kl"
KIND_TEMPORAL = "temporal_decoder"
CLASS_NAMES = {KIND_KL: "AutoencoderKL", KIND_TEMPORAL: "AutoencoderKLTemporalDecoder"}  # kind -> diffusers class
UP_BLOCK_TYPES = {KIND_KL: "UpDecoderBlock2D", KIND_TEMPORAL: "UpBlockTemporalDecoder"}  # the decoder's levels
# A weight only the temporal decoder has (its last layer, a conv over frames): tells the kind from the weights.
TEMPORAL_MARKER = "decoder.time_conv_out.weight"

# config.json fields that do not change the cells (bookkeeping, tiling size, pipeline hints): accepted, unused.
IGNORED_FIELDS = frozenset({
    "_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "sample_size", "force_upcast",
})
# Latent normalisations other VAEs use (SD3, Flux); only their "off" value (None) is supported.
UNSUPPORTED_WHEN_SET = ("shift_factor", "latents_mean", "latents_std")


@dataclass(frozen=True)
class VAEConfig:
    kind: str = KIND_KL  # KIND_KL or KIND_TEMPORAL (see the module docstring); config.json says it as _class_name
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple = (128, 256, 512, 512)  # width of each resolution level, highest resolution first
    down_block_types: tuple = None  # None: DOWN_BLOCK_TYPE at every level
    up_block_types: tuple = None  # None: UP_BLOCK_TYPES[kind] at every level
    layers_per_block: int = 2  # resnets per encoder level; decoder levels have one more
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    use_quant_conv: bool = True
    use_post_quant_conv: bool = None  # None: the kind's (True for "kl"; the temporal decoder has none)
    mid_block_add_attention: bool = True
    scaling_factor: float = VAE_SCALE_FACTOR

    def __post_init__(self):
        kind_of({"kind": self.kind})  # a kind latte-ms builds
        levels = len(self.block_out_channels)
        # frozen dataclass: normalise lists from JSON to tuples and fill the per-level block types
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "down_block_types", tuple(self.down_block_types or (DOWN_BLOCK_TYPE,) * levels))
        object.__setattr__(self, "up_block_types",
                           tuple(self.up_block_types or (UP_BLOCK_TYPES[self.kind],) * levels))
        if self.use_post_quant_conv is None:
            object.__setattr__(self, "use_post_quant_conv", self.kind == KIND_KL)
        self._validate()

    @property
    def class_name(self):
        """The diffusers class of this architecture."""
        return CLASS_NAMES[self.kind]

    @property
    def temporal(self):
        """The decoder mixes the frames of a video (decode needs num_frames)."""
        return self.kind == KIND_TEMPORAL

    def _validate(self):
        levels = len(self.block_out_channels)
        if levels == 0:
            raise ValueError("block_out_channels is empty: give one width per resolution level, e.g. (128, 256)")
        for name, types, wanted in (("down_block_types", self.down_block_types, DOWN_BLOCK_TYPE),
                                    ("up_block_types", self.up_block_types, UP_BLOCK_TYPES[self.kind])):
            if len(types) != levels:
                raise ValueError(f"{name} has {len(types)} entries but block_out_channels has {levels}: "
                                 "give one block type per level")
            other = sorted(set(types) - {wanted})
            if other:
                raise ValueError(f"{name} contains {other}: this {self.class_name} only supports {wanted!r}")
        if self.act_fn not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"act_fn={self.act_fn!r} is not supported: the VAE cells use SiLU ('silu')")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block={self.layers_per_block}: need at least one resnet per level")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block widths {bad}")
        if self.temporal and self.use_post_quant_conv:
            raise ValueError("use_post_quant_conv=True with kind='temporal_decoder': AutoencoderKLTemporalDecoder "
                             "has no post_quant_conv; drop the field")
        if self.temporal and not self.mid_block_add_attention:
            raise ValueError("mid_block_add_attention=False with kind='temporal_decoder': "
                             "AutoencoderKLTemporalDecoder always has its mid-block attentions; drop the field")

    @property
    def downsample_factor(self):
        """Image pixels per latent pixel along H and W (8 for sd-vae-ft-mse)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, fields):
        """Builds a config from diffusers config.json fields (or keyword arguments); unknown fields are errors.

        A diffusers `_class_name` sets the kind (AutoencoderKL or AutoencoderKLTemporalDecoder).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kind = kind_of(fields)
        kwargs = {"kind": kind}
        for name, value in fields.items():
            if name in known:
                kwargs[name] = value
            elif name in UNSUPPORTED_WHEN_SET and value is not None:
                raise ValueError(f"config sets {name}={value!r}: latent shift/normalisation is not supported "
                                 f"(only configs with {name}=null)")
            elif name not in IGNORED_FIELDS and name not in UNSUPPORTED_WHEN_SET:
                raise ValueError(f"unknown {CLASS_NAMES[kind]} config field {name!r}: supported fields "
                                 f"are {sorted(known)} (ignored: {sorted(IGNORED_FIELDS)})")
        return cls(**kwargs)

    def to_dict(self):
        """JSON-able dict of every field (tuples as lists), loadable by from_dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def kind_of(fields):
    """The kind config fields describe: their `kind`, or the one their diffusers `_class_name` names (KIND_KL
    when neither is given). An unknown class, or a kind and a class that disagree, is an error."""
    class_name = fields.get("_class_name")
    if class_name is None:
        kind = fields.get("kind", KIND_KL)
        if kind not in CLASS_NAMES:
            raise ValueError(f"kind={kind!r} is not a VAE kind latte-ms builds: use one of {sorted(CLASS_NAMES)}")
        return kind
    kinds = {name: kind for kind, name in CLASS_NAMES.items()}
    if class_name not in kinds:
        raise ValueError(f"config is for {class_name!r}, not one of {sorted(kinds)}: these converters and cells "
                         "only handle the Stable Diffusion KL autoencoder and its temporal decoder")
    if fields.get("kind", kinds[class_name]) != kinds[class_name]:
        raise ValueError(f"config says kind={fields['kind']!r} but _class_name={class_name!r}: drop one")
    return kinds[class_name]


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
    """VAE config fields readable from weight shapes (canonical or MindSpore names), the kind included.

    norm_num_groups, act_fn and scaling_factor leave no trace in the weights and are not returned.
    """
    levels = _indices(state, r"encoder\.down_blocks\.(\d+)\.")
    if not levels:
        raise CheckpointError("cannot infer the VAE architecture: no encoder.down_blocks.* weights")
    return {
        "kind": KIND_TEMPORAL if TEMPORAL_MARKER in state else KIND_KL,
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
