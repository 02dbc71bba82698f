"""tanh-GELU and affine-free LayerNorm cells in the formulation of a kernel backend (see backend.py), and the
fused AdamW step.

Every formulation computes the official math (timm Mlp's GELU(approximate='tanh'), nn.LayerNorm without affine)
in float32; the native ones carry their own backward, which keeps only the input for the gradient.
"""
import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.kernels.backend import check_backend, kernel_backend
from latte.kernels.native import native_library

GELU_A = 0.044715
GELU_K = 1.5957691216057308  # 2 * sqrt(2 / pi): 0.5 * (1 + tanh(z)) == sigmoid(2 z)


def resolve_backend(backend):
    """The backend a kernel cell uses: `backend` when given (checked), else this device's (kernel_backend)."""
    return check_backend(backend) if backend else kernel_backend()[0]


def custom_op(function, out_shape, out_dtype):
    """ops.Custom running `function` of the native library (cpu_kernels.cc); out_shape / out_dtype map the inputs'
    shapes / dtypes to the outputs'."""
    library, why_not = native_library()
    if library is None:
        raise RuntimeError(f"the native kernels are unavailable: {why_not}")
    return ops.Custom(f"{library}:{function}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")


def first_input(*args):
    """An op's output shape / dtype: its first input's (ops.Custom's out_shape / out_dtype)."""
    return args[0]


class _NativeGELU(nn.Cell):
    def __init__(self):
        super().__init__()
        self.forward_op = custom_op("LatteGeluForward", first_input, first_input)
        self.backward_op = custom_op("LatteGeluBackward", first_input, first_input)

    def construct(self, x):
        return self.forward_op(x.astype(ms.float32)).astype(x.dtype)

    def bprop(self, x, out, dout):
        return (self.backward_op(x.astype(ms.float32), dout.astype(ms.float32)).astype(x.dtype),)


class _NativeBiasGELU(nn.Cell):
    """GELU(x + bias) in one pass; the backward gives dx and the bias's row sum in one pass (float32 only)."""

    def __init__(self):
        super().__init__()
        self.forward_op = custom_op("LatteGeluForward", first_input, first_input)
        self.backward_op = custom_op("LatteGeluBackward", _bias_grad_shapes, _bias_grad_shapes)

    def construct(self, x, bias):
        return self.forward_op(x.astype(ms.float32), bias.astype(ms.float32)).astype(x.dtype)

    def bprop(self, x, bias, out, dout):
        dx, dbias = self.backward_op(x.astype(ms.float32), bias.astype(ms.float32), dout.astype(ms.float32))
        return dx.astype(x.dtype), dbias.astype(bias.dtype)


def _bias_grad_shapes(x, bias, *rest):
    return x, bias


class TanhGELU(nn.Cell):
    """GELU with the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    construct(x, bias=None): GELU(x + bias) with a bias (the preceding Linear's, called with add_bias=False): the native
    formulation adds it in the activation's own pass and sums its gradient in the backward's."""

    def __init__(self, backend=None):
        super().__init__()
        self.add_bias = AddBias()
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativeGELU() if backend == "native" else None
        self.native_bias = _NativeBiasGELU() if backend == "native" else None
        self.builtin = nn.GELU(approximate=True) if backend == "builtin" else None
        self.add_bias.use(backend)

    def construct(self, x, bias=None):
        if bias is not None:
            if self.native_bias is not None:
                return self.native_bias(x, bias)
            x = self.add_bias(x, bias)
        if self.native is not None:
            return self.native(x)
        if self.builtin is not None:
            return self.builtin(x)
        return x * ops.sigmoid(GELU_K * (x + GELU_A * x * x * x))  # the same function, ~4x MindSpore's CPU GeLU


class _NativeLayerNorm(nn.Cell):
    def __init__(self, eps):
        super().__init__()
        self.eps = Tensor(np.array([eps], np.float32))
        self.forward_op = custom_op("LatteLayerNormForward", first_input, first_input)
        self.backward_op = custom_op("LatteLayerNormBackward", _backward_shape, _backward_dtype)

    def construct(self, x):
        return self.forward_op(x, self.eps)

    def bprop(self, x, out, dout):
        return (self.backward_op(dout, x, self.eps),)


def _backward_shape(dy, x, eps):
    return x


def _backward_dtype(dy, x, eps):
    return x


class NoAffineLayerNorm(nn.Cell):
    """LayerNorm over the last axis without scale or offset (official: elementwise_affine=False).

    Always normalizes in float32 and returns the input dtype, so it stays exact under fp16/bf16 AMP.
    """

    def __init__(self, hidden_size, eps, backend=None):
        super().__init__()
        self.eps = eps
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        self.ones = Tensor(np.ones(hidden_size, np.float32))
        self.zeros = Tensor(np.zeros(hidden_size, np.float32))
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativeLayerNorm(self.eps) if backend == "native" else None

    def construct(self, x):
        x32 = x.astype(ms.float32)
        if self.native is not None:
            y = self.native(x32)
        else:
            y, _, _ = self.norm(x32, self.ones, self.zeros)
        return y.astype(x.dtype)


def adamw_in_place_kernel():
    """The fused AdamW step of n float32 Parameters in place, in one op: (hyper (6,), weight_decays (n,),
    *params, *first_moments, *second_moments, *grads) -> done (1,), hyper = [lr, beta1, beta2, eps, step_size,
    bias_correction2_sqrt]. It writes the Parameters' own storage, so it is marked as a memory side effect: the
    graph keeps it, and orders it with the Assigns and Parameter reads around it, though nothing uses its output."""
    kernel = custom_op("LatteAdamWInPlace", _flag_shape, _flag_dtype)
    kernel.add_prim_attr("side_effect_mem", True)
    return kernel


def nonfinite_kernel():
    """(*xs) float32 tensors of any shapes -> (1,) float32: 1 where any x holds a NaN or an infinity, else 0."""
    return custom_op("LatteNonFinite", _flag_shape, _flag_dtype)


def _flag_shape(*inputs):
    return (1,)


def _flag_dtype(*inputs):
    return ms.float32


class _NativeModulatedLayerNorm(nn.Cell):
    def __init__(self, eps):
        super().__init__()
        self.eps = Tensor(np.array([eps], np.float32))
        self.forward_op = custom_op("LatteModulatedLayerNormForward", _modulated_shape, _modulated_dtype)
        self.backward_op = custom_op("LatteModulatedLayerNormBackward", _modulated_grad_shapes, _modulated_grad_dtypes)

    def construct(self, x, shift, scale):
        return self.forward_op(x, shift, scale, self.eps)

    def bprop(self, x, shift, scale, out, dout):
        dx, dshift, dscale = self.backward_op(dout, x, scale, self.eps)
        return dx, dshift, dscale


def _modulated_shape(x, shift, scale, eps):
    return x


def _modulated_dtype(x, shift, scale, eps):
    return x


def _modulated_grad_shapes(dy, x, scale, eps):
    return x, scale, scale


def _modulated_grad_dtypes(dy, x, scale, eps):
    return x, scale, scale


class ModulatedLayerNorm(nn.Cell):
    """adaLN: LayerNorm(x) * (1 + scale) + shift, x (N, T, D), shift / scale (N, D) per sample.

    The official modulate(norm(x), shift, scale); the native formulation is one pass forward and one backward
    (five full-size elementwise ops fewer each way than the composite).
    """

    def __init__(self, hidden_size, eps, backend=None):
        super().__init__()
        self.eps = eps
        self.norm = NoAffineLayerNorm(hidden_size, eps, "composite")
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativeModulatedLayerNorm(self.eps) if backend == "native" else None
        self.norm.use("builtin" if backend == "builtin" else "composite")

    def construct(self, x, shift, scale):
        if self.native is not None:
            dtype = x.dtype
            return self.native(x.astype(ms.float32), shift.astype(ms.float32), scale.astype(ms.float32)).astype(dtype)
        return self.norm(x) * (1 + scale.expand_dims(1)) + shift.expand_dims(1)


class _NativeScaledSoftmax(nn.Cell):
    def __init__(self, scale):
        super().__init__()
        self.scale = Tensor(np.array([scale], np.float32))
        self.forward_op = custom_op("LatteScaledSoftmaxForward", first_input, first_input)
        self.backward_op = custom_op("LatteScaledSoftmaxBackward", _softmax_grad_shape, _softmax_grad_shape)

    def construct(self, x):
        return self.forward_op(x, self.scale)

    def bprop(self, x, out, dout):
        return (self.backward_op(dout, out, self.scale),)


def _softmax_grad_shape(dy, y, scale):
    return y


class ScaledSoftmax(nn.Cell):
    """softmax(x * scale [+ bias]) over the last axis in float32 (attention weights from raw q k^T scores); returns
    the input dtype. The native formulation is one pass each way and keeps only its output for the backward."""

    def __init__(self, scale, backend=None):
        super().__init__()
        self.scale = scale
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativeScaledSoftmax(self.scale) if backend == "native" else None

    def construct(self, x, bias=None):
        """softmax(x * scale + bias): bias (float32, broadcast to x) is an additive mask such as LatteT2V's
        cross-attention bias (0 on kept keys, a large negative on padding)."""
        if self.native is not None:
            if bias is not None:  # softmax((x + bias / scale) * scale): x unchanged where the bias is 0
                return self.native(x.astype(ms.float32) + bias * (1.0 / self.scale)).astype(x.dtype)
            return self.native(x.astype(ms.float32)).astype(x.dtype)
        scores = (x * self.scale).astype(ms.float32)
        if bias is not None:
            scores = scores + bias
        return ops.softmax(scores, axis=-1).astype(x.dtype)


class _NativeGatedResidual(nn.Cell):
    def __init__(self):
        super().__init__()
        self.forward_op = custom_op("LatteGatedResidualForward", _gated_shape, _gated_shape)
        self.backward_op = custom_op("LatteGatedResidualBackward", _gated_grad_shapes, _gated_grad_shapes)

    def construct(self, x, gate, y):
        return self.forward_op(x, gate, y)

    def bprop(self, x, gate, y, out, dout):
        dy, dgate = self.backward_op(dout, gate, y)
        return dout, dgate, dy


class _NativeGatedBiasResidual(nn.Cell):
    def __init__(self):
        super().__init__()
        self.forward_op = custom_op("LatteGatedResidualForward", _gated_shape, _gated_shape)
        self.backward_op = custom_op("LatteGatedResidualBackward", _gated_grad_shapes, _gated_grad_shapes)

    def construct(self, x, gate, y, bias):
        return self.forward_op(x, gate, y, bias)

    def bprop(self, x, gate, y, bias, out, dout):
        dy, dgate, dbias = self.backward_op(dout, gate, y, bias)
        return dout, dgate, dy, dbias


def _gated_shape(x, *rest):
    return x


def _gated_grad_shapes(dout, gate, y, *bias):  # the same for dtypes: (dy, dgate[, dbias])
    return (y, gate) + bias


class GatedResidual(nn.Cell):
    """adaLN-Zero's gated residual x + gate * y, x / y (N, T, D), gate (N, D) per sample (official:
    x + gate.unsqueeze(1) * y). The native formulation is one pass each way, the backward giving dy and the gate's
    token sum together.

    construct(x, gate, y, bias=None): x + gate * (y + bias) with a bias (that of the Linear that made y, called
    with add_bias=False): the native formulation adds it in the same pass and sums its gradient in the backward's."""

    def __init__(self, backend=None):
        super().__init__()
        self.add_bias = AddBias()
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativeGatedResidual() if backend == "native" else None
        self.native_bias = _NativeGatedBiasResidual() if backend == "native" else None
        self.add_bias.use(backend)

    def construct(self, x, gate, y, bias=None):
        if bias is not None:
            if self.native_bias is not None:
                return self.native_bias(x, gate, y, bias)
            y = self.add_bias(y, bias)
        if self.native is not None:
            return self.native(x, gate, y)
        return x + gate.expand_dims(1) * y


class _BiasAdd(nn.Cell):
    """BiasAdd forward, its bias gradient as a ReduceSum over the rows (MindSpore's CPU BiasAddGrad is slow)."""

    def __init__(self):
        super().__init__()
        self.bias_add = ops.BiasAdd()
        self.reduce = ops.ReduceSum()

    def construct(self, y, bias):
        return self.bias_add(y, bias)

    def bprop(self, y, bias, out, dout):
        return dout, self.reduce(dout, 0)


class AddBias(nn.Cell):
    """y (..., D) + bias (D,) as nn.Dense adds it: BiasAdd on the rows (..., D) -> (N, D). On CPU its bias gradient
    is a ReduceSum over the rows: MindSpore's CPU BiasAddGrad took ~14 ms on a (4096, 1536) gradient, 10% of a
    Latte-S/2 train step, and a ReduceSum is several times faster (a broadcast add would also get that gradient
    but doubled the graph's peak memory). The same sums, so the same math; on Ascend/GPU ("builtin") it is
    BiasAdd with its own gradient."""

    def __init__(self, backend=None):
        super().__init__()
        self.bias_add = ops.BiasAdd()
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.cpu_bias = _BiasAdd() if backend != "builtin" else None

    def construct(self, y, bias):
        shape = y.shape
        y = y.reshape(-1, shape[-1])  # (..., D) -> (N, D)
        y = self.cpu_bias(y, bias) if self.cpu_bias is not None else self.bias_add(y, bias)
        return y.reshape(shape)  # (N, D) -> (..., D)


class Linear(nn.Dense):
    """nn.Dense with the same parameters (weight (out, in), bias (out,)), its bias added by AddBias.

    construct(x, add_bias=True); with add_bias=False it returns x W^T alone, for a next op that adds `bias` in its
    own pass (the native GELU and gated residual: TanhGELU / GatedResidual with `bias=linear.bias`).
    """

    def __init__(self, in_channels, out_channels, has_bias=True, backend=None):
        super().__init__(in_channels, out_channels, has_bias=has_bias)
        self.add_bias = AddBias()
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.add_bias.use(backend)

    def construct(self, x, add_bias=True):
        shape = x.shape
        y = self.matmul(x.reshape(-1, shape[-1]), self.weight)  # (..., in) -> (N, in) -> (N, out)
        y = y.reshape(shape[:-1] + (y.shape[-1],))  # (N, out) -> (..., out)
        return self.add_bias(y, self.bias) if self.has_bias and add_bias else y


KERNEL_CELLS = (TanhGELU,  # the cells with a native (float32) formulation
                NoAffineLayerNorm, ModulatedLayerNorm, ScaledSoftmax, GatedResidual)


def float32_kernels_only(net):
    """The native kernels compute in float32; a net about to run in fp16/bf16 (mixed precision, which on CPU is
    only a smoke test: MindSpore has no fast fp16 CPU kernels) switches them to the composite formulation.
    Returns how many cells were switched."""
    switched = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, KERNEL_CELLS) and cell.backend == "native":
            cell.use("composite")
            switched += 1
    return switched
