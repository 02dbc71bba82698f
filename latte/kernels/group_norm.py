"""GroupNorm (affine), optionally fused with the SiLU that follows it, in the formulation of a kernel backend.

The Stable Diffusion VAE runs 52 GroupNorms per encoded and decoded 256x256 frame, all but the mid-block
attention's followed by SiLU. MindSpore 2.10's CPU GroupNorm took ~40 ms a call there (17% of the VAE's op time,
the SiLU's Sigmoid and Mul another 3.5%); the native kernel (cpu_kernels.cc) is one pass for the group moments and
one for the normalized, scaled, shifted and activated output, and its backward keeps only the input.
The cell is an nn.GroupNorm (same `gamma` / `beta` parameters and names, same checks), so converters, AMP's
float32 list and isinstance tests see what they saw before.
"""
import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.kernels.backend import check_backend
from latte.kernels.cells import custom_op, resolve_backend


class _NativeGroupNorm(nn.Cell):
    def __init__(self, eps, groups, silu):
        super().__init__()
        self.config = Tensor(np.array([eps, groups, 1.0 if silu else 0.0], np.float32))  # [eps, groups, silu]
        self.forward_op = custom_op("LatteGroupNormForward", _forward_shape, _forward_shape)
        self.backward_op = custom_op("LatteGroupNormBackward", _backward_shapes, _backward_shapes)

    def construct(self, x, gamma, beta):
        return self.forward_op(x, gamma, beta, self.config)

    def bprop(self, x, gamma, beta, out, dout):
        dx, dgamma, dbeta = self.backward_op(dout, x, gamma, beta, self.config)
        return dx, dgamma, dbeta


def _forward_shape(x, gamma, beta, config):
    return x


def _backward_shapes(dy, x, gamma, beta, config):
    return x, gamma, beta


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm over (N, C, ...), then SiLU when `silu` (diffusers' norm + nonlinearity pairs).

    Computes in float32 and returns the input dtype. "native": the fused CPU kernel; otherwise MindSpore's
    GroupNorm (and ops.silu).
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, silu=False, backend=None):
        super().__init__(num_groups, num_channels, eps=eps)
        self.silu = bool(silu)
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativeGroupNorm(self.eps, self.num_groups, self.silu) if backend == "native" else None

    def construct(self, x):
        if self.native is not None:
            return self.native(x.astype(ms.float32), self.gamma, self.beta).astype(x.dtype)
        y = self._cal_output(x)
        return ops.silu(y) if self.silu else y
