"""Building blocks of Latte: norms, MLP, patch / timestep / label embedders.

Submodule and parameter names follow the official PyTorch Latte so checkpoints convert by (near) identity.
"""
import math

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from latte.kernels import Linear, Permute, TanhGELU

LAYER_NORM_EPS = 1e-6
PATCH_ORDER = (0, 2, 4, 1, 3, 5)  # (N, C, h, p, w, p) -> (N, h, w, C, p, p): patches in the conv weight's order
TIMESTEP_FREQ_DIM = 256
TIMESTEP_MAX_PERIOD = 10000


class Mlp(nn.Cell):
    """fc1 (D -> hidden), GELU with tanh approximation, fc2 (hidden -> D)."""

    def __init__(self, in_features, hidden_features, kernels=None):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features, backend=kernels)
        self.act = TanhGELU(backend=kernels)
        self.fc2 = Linear(hidden_features, in_features, backend=kernels)

    def construct(self, x, add_bias=True):
        """add_bias=False: without fc2's bias (for a next op that adds it). fc1's bias is added by the activation
        (in its pass, with the native kernels)."""
        return self.fc2(self.act(self.fc1(x, add_bias=False), self.fc1.bias), add_bias=add_bias)


class ConvPatchEmbed(nn.Cell):
    """Official patch embedding: Conv2d(kernel = stride = patch); (N, C, H, W) -> (N, h*w, D), tokens row-major.

    On CPU (kernels "native" / "composite") the same map runs as one matmul of the flattened patches with the
    conv weight viewed as (D, C*p*p): oneDNN's stride-p convolution falls back to a slow reference kernel on
    AVX-512 CPUs unless the ISA is capped, and the cap slows every matmul. The parameters (proj.weight
    (D, C, p, p), proj.bias) are the conv's either way, so checkpoints do not depend on the device.
    """

    def __init__(self, patch_size, in_channels, hidden_size, kernels=None):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size, pad_mode="valid",
                              has_bias=True)
        self.as_matmul = kernels in ("native", "composite")
        self.matmul = ops.MatMul(transpose_b=True)
        self.to_patches = Permute(PATCH_ORDER, kernels)

    def construct(self, x):
        if self.as_matmul:
            n, c, hh, ww = x.shape
            p = self.patch_size
            h, w = hh // p, ww // p
            x = x.reshape(n, c, h, p, w, p)  # (N, C, H, W) -> (N, C, h, p, w, p)
            x = self.to_patches(x)  # -> (N, h, w, C, p, p): the conv weight's (C, p, p) order
            x = x.reshape(n * h * w, c * p * p)  # -> (N*h*w, C*p*p)
            weight = self.proj.weight.reshape(self.proj.weight.shape[0], c * p * p)  # (D, C, p, p) -> (D, C*p*p)
            x = self.matmul(x, weight) + self.proj.bias  # -> (N*h*w, D)
            return x.reshape(n, h * w, -1)  # -> (N, h*w, D)
        x = self.proj(x)  # (N, C, H, W) -> (N, D, h, w)
        n, d, h, w = x.shape
        return x.reshape(n, d, h * w).swapaxes(1, 2)  # (N, D, h, w) -> (N, h*w, D)


class LinearPatchEmbed(nn.Cell):
    """The same map as ConvPatchEmbed written as a Dense on flattened patches (bf16-friendly on Ascend).

    proj.weight is the conv weight reshaped (D, C, p, p) -> (D, C*p*p), so checkpoints move between the two.
    """

    def __init__(self, patch_size, in_channels, hidden_size, kernels=None):
        super().__init__()
        self.patch_size = patch_size
        self.proj = Linear(in_channels * patch_size * patch_size, hidden_size, backend=kernels)
        self.to_patches = Permute(PATCH_ORDER, kernels)

    def construct(self, x):
        n, c, hh, ww = x.shape
        p = self.patch_size
        h, w = hh // p, ww // p
        x = x.reshape(n, c, h, p, w, p)  # (N, C, H, W) -> (N, C, h, p, w, p)
        x = self.to_patches(x)  # -> (N, h, w, C, p, p)
        x = x.reshape(n, h * w, c * p * p)  # -> (N, h*w, C*p*p)
        return self.proj(x)  # -> (N, h*w, D)


PATCH_EMBEDDERS = {"conv": ConvPatchEmbed, "linear": LinearPatchEmbed}


def timestep_frequencies(dim=TIMESTEP_FREQ_DIM, max_period=TIMESTEP_MAX_PERIOD):
    """float32 frequencies exp(-ln(max_period) * i / half), i < half, computed in float32 like the official."""
    half = dim // 2
    return np.exp(np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32) / np.float32(half))


class TimestepSinusoid(nn.Cell):
    """Timesteps t (N,) (int or float) -> [cos(t f) | sin(t f)] (N, dim) in float32, f = timestep_frequencies(dim).

    A cell of its own so mixed precision keeps it float32 (precision.FP32_CELLS): in fp16, t * f for t near 1000
    would lose the phase (fp16 spacing 0.5 there).
    """

    def __init__(self, dim=TIMESTEP_FREQ_DIM):
        super().__init__()
        if dim % 2:
            raise ValueError(f"frequency_embedding_size={dim} must be even")
        self.freqs = Tensor(timestep_frequencies(dim)[None])  # (1, half)

    def construct(self, t):
        args = t.astype(ms.float32).expand_dims(1) * self.freqs  # (N, 1) * (1, half) -> (N, half)
        return ops.cat([ops.cos(args), ops.sin(args)], axis=-1)  # (N, dim)


class TokensToImages(nn.Cell):
    """Tokens (N, h*w, p*p*c), each ordered (p_h, p_w, c) -> images (N, c, h*p, w*p) (the official unpatchify)."""

    def __init__(self, patch_size, channels, kernels=None):
        super().__init__()
        self.patch_size = patch_size
        self.channels = channels
        self.permute = Permute((0, 5, 1, 3, 2, 4), kernels)  # (N, h, w, p, p, c) -> (N, c, h, p, w, p)

    def construct(self, x, grid_h, grid_w):
        n, p, c = x.shape[0], self.patch_size, self.channels
        x = self.permute(x.reshape(n, grid_h, grid_w, p, p, c))  # (N, T, p*p*c) -> (N, h, w, p, p, c) -> (N, c, h, p, w, p)
        return x.reshape(n, c, grid_h * p, grid_w * p)  # -> (N, c, H, W)


class TimestepEmbedder(nn.Cell):
    """Timestep t (N,) -> [cos | sin] sinusoid (N, 256) -> Linear, SiLU, Linear -> (N, D)."""

    def __init__(self, hidden_size, frequency_embedding_size=TIMESTEP_FREQ_DIM):
        super().__init__()
        self.sinusoid = TimestepSinusoid(frequency_embedding_size)
        self.mlp = nn.SequentialCell(
            nn.Dense(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Dense(hidden_size, hidden_size),
        )

    def construct(self, t):
        return self.mlp(self.sinusoid(t))  # (N, 256) -> (N, D)


class LabelEmbedder(nn.Cell):
    """Class label -> (N, D). With dropout_prob > 0 the table has a last 'null' row (id num_classes) for CFG.

    Label dropout is the official `token_drop` with `force_drop_ids`: labels where force_drop_ids == 1 become
    the null id. The caller draws force_drop_ids (training draws them on the host from its seeded streams,
    probability dropout_prob, see latte.training.loss.StepNoise); without them labels pass unchanged.
    """

    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        use_cfg_embedding = int(dropout_prob > 0)
        table = np.random.normal(0.0, 0.02, (num_classes + use_cfg_embedding, hidden_size)).astype(np.float32)
        self.embedding_table = Parameter(Tensor(table), name="embedding_table")
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def construct(self, labels, force_drop_ids=None):
        if force_drop_ids is not None:
            labels = ops.where(force_drop_ids == 1, ops.full_like(labels, self.num_classes), labels)
        return ops.gather(self.embedding_table, labels, 0)
