"""The architecture of a LatteT2V (Latte-1) transformer, spelled with diffusers' config.json field names.

Plain Python (no MindSpore, no torch): converters and config checks read it cheaply. Defaults are those of
diffusers' LatteTransformer3DModel, so a config.json that leaves a field out means what it means to diffusers;
the supported values are the ones Latte-1 (and every released LatteT2V) uses. The named variants are in
latte/models/registry.py (T2V_MODELS).
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional

CLASS_NAMES = ("LatteTransformer3DModel", "LatteT2V")  # diffusers' class, and the official repo's
NORM_TYPE = "ada_norm_single"  # adaLN-single (PixArt-alpha): one timestep MLP, a scale_shift_table per block
ACTIVATION = "gelu-approximate"  # tanh-GELU feed-forward

# config.json fields that do not change the cells: bookkeeping, and fields of the official LatteT2V that only
# matter for other input kinds (norm_num_groups, use_linear_projection: continuous input) or for its torch
# attention (upcast_attention: our softmax is float32 whatever the compute dtype).
IGNORED_FIELDS = frozenset({"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values",
                            "norm_num_groups", "use_linear_projection", "upcast_attention"})
# fields of the official LatteT2V that change the model unless they have these (its default) values
FIXED_FIELDS = {"only_cross_attention": False, "double_self_attention": False, "num_vector_embeds": None,
                "attention_type": "default"}


@dataclass(frozen=True)
class T2VConfig:
    num_attention_heads: int = 16
    attention_head_dim: int = 88
    in_channels: Optional[int] = None  # latent channels
    out_channels: Optional[int] = None  # None: in_channels; 2 * in_channels: learned sigma
    num_layers: int = 1  # spatial blocks, and as many temporal blocks
    dropout: float = 0.0  # training only (not applied by these inference cells)
    cross_attention_dim: Optional[int] = None  # None: no cross-attention to the caption
    attention_bias: bool = False  # biases of to_q / to_k / to_v
    sample_size: int = 64  # latent side the positions are scaled for (512 px / 8)
    patch_size: Optional[int] = None
    activation_fn: str = "geglu"
    num_embeds_ada_norm: Optional[int] = None  # recorded only: adaLN-single takes any timestep
    norm_type: str = "layer_norm"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    caption_channels: Optional[int] = None  # text encoder width (T5-XXL: 4096)
    video_length: int = 16  # rows of the temporal position table

    def __post_init__(self):
        required = [n for n in ("in_channels", "patch_size", "caption_channels") if getattr(self, n) is None]
        if required:
            raise ValueError(f"{', '.join(required)} must be set (a LatteT2V takes patches of latents and captions)")
        if self.norm_type != NORM_TYPE:
            raise ValueError(f"norm_type={self.norm_type!r} is not supported: LatteT2V uses {NORM_TYPE!r}")
        if self.activation_fn != ACTIVATION:
            raise ValueError(f"activation_fn={self.activation_fn!r} is not supported: LatteT2V uses {ACTIVATION!r}")
        if self.norm_elementwise_affine:
            raise ValueError("norm_elementwise_affine=True is not supported: LatteT2V's norms have no affine "
                             "parameters (set it to false)")
        if self.cross_attention_dim not in (None, self.inner_dim):
            raise ValueError(f"cross_attention_dim={self.cross_attention_dim} must equal num_attention_heads * "
                             f"attention_head_dim = {self.inner_dim}: the caption is projected to that width")
        if self.sample_size % self.patch_size:
            raise ValueError(f"sample_size={self.sample_size} is not divisible by patch_size={self.patch_size}")
        if self.num_layers < 1 or self.video_length < 1:
            raise ValueError(f"num_layers={self.num_layers} and video_length={self.video_length} must be >= 1")

    @property
    def inner_dim(self):
        """The token width D."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def output_channels(self):
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def interpolation_scale(self):
        """diffusers' (and the official) position scaling: max(sample_size // 64, 1)."""
        return max(self.sample_size // 64, 1)

    @classmethod
    def from_dict(cls, fields):
        """A config from config.json fields (or keyword arguments); unknown fields are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, value in fields.items():
            if name in known:
                kwargs[name] = value
            elif name == "_class_name" and value not in CLASS_NAMES:
                raise ValueError(f"config is for {value!r}, not a LatteT2V ({' or '.join(CLASS_NAMES)})")
            elif name in FIXED_FIELDS:
                if value != FIXED_FIELDS[name]:
                    raise ValueError(f"config sets {name}={value!r}: only {FIXED_FIELDS[name]!r} is supported")
            elif name not in IGNORED_FIELDS:
                raise ValueError(f"unknown LatteT2V config field {name!r}: supported fields are {sorted(known)} "
                                 f"(ignored: {sorted(IGNORED_FIELDS)}; fixed: {FIXED_FIELDS})")
        return cls(**kwargs)

    def to_dict(self):
        return dataclasses.asdict(self)
