"""Axis permutation (transpose) in the formulation of a kernel backend (see backend.py).

MindSpore 2.10's CPU Transpose keeps, from compile time for as long as the graph lives, a table of one 8-byte
input offset per element: 2x the bytes of every transposed tensor, forward and backward. In the Latte-S/2
16-frame train step the 51 transposes (the attention's head transposes and their gradients) held ~1.2 GiB that
way (2.40 against 1.13 GiB after compile, 4.13 against 2.91 GiB after the first step). The native formulation
(cpu_kernels.cc LattePermute) copies the same elements and keeps nothing; `mint.permute`, which keeps no table
either, ran ~4x slower. Ascend and GPU keep ops.transpose.

SplitPermute is a permutation whose result is cut along its first axis (attention's q, k and v from the qkv
projection): natively in one pass that writes each block to its own output (and adds the projection's bias on the
way), where ops.split after the permutation copied every element a second time, forward and backward (Split and
Concat, ~1.4% of the Latte-S/2 16-frame train step, and the bias's own pass ~1.6%). The same copies and the same
single float add, so the same bits.
"""
import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.kernels.backend import check_backend
from latte.kernels.cells import AddBias, custom_op, first_input, resolve_backend

MAX_RANK = 8  # cpu_kernels.cc kMaxPermuteRank


class _PermutedShape:
    """Output shape of the native permute: the input's axes in `perm` order (ops.Custom's out_shape)."""

    def __init__(self, perm):
        self.perm = perm

    def __call__(self, x, perm):
        return [x[axis] for axis in self.perm]


def inverse_permutation(perm):
    """The permutation that undoes `perm`: x.transpose(perm).transpose(inverse_permutation(perm)) == x."""
    return tuple(int(i) for i in np.argsort(perm))


def _permute_op(perm):
    """The native op for one permutation. The permutation is also a primitive attribute: PyNative caches an op's
    inferred output shape by its name, attributes and input shapes, so without it two permutations of same-shaped
    inputs would share one output shape."""
    op = custom_op("LattePermute", _PermutedShape(perm), first_input)
    op.add_prim_attr("perm", perm)
    return op


class _NativePermute(nn.Cell):
    def __init__(self, perm):
        super().__init__()
        inverse = inverse_permutation(perm)
        self.perm = Tensor(np.array(perm, np.int64))
        self.inverse = Tensor(np.array(inverse, np.int64))
        self.forward_op = _permute_op(perm)
        self.backward_op = _permute_op(inverse)

    def construct(self, x):
        return self.forward_op(x, self.perm)

    def bprop(self, x, out, dout):
        return (self.backward_op(dout, self.inverse),)


class Permute(nn.Cell):
    """x.transpose(*perm) for tensors of rank len(perm) (at most MAX_RANK), any dtype, with its gradient."""

    def __init__(self, perm, backend=None):
        super().__init__()
        perm = tuple(int(axis) for axis in perm)
        if sorted(perm) != list(range(len(perm))) or len(perm) > MAX_RANK:
            raise ValueError(f"perm {perm} is not a permutation of 0..{len(perm) - 1} (rank <= {MAX_RANK})")
        self.perm = perm
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.native = _NativePermute(self.perm) if backend == "native" else None

    def construct(self, x):
        if self.native is not None:
            return self.native(x)
        return ops.transpose(x, self.perm)


class _SplitShapes:
    """Output shapes of the native split permute: the permuted shape without its first axis, `parts` times."""

    def __init__(self, perm, parts):
        self.perm, self.parts = perm, parts

    def __call__(self, x, perm, *bias):
        return [[x[axis] for axis in self.perm[1:]]] * self.parts


class _SplitDtypes:
    def __init__(self, parts):
        self.parts = parts

    def __call__(self, x, *others):
        return [x] * self.parts


class _ConcatShape:
    """Output shape of the native concat permute: the blocks stacked on a new first axis, then permuted."""

    def __init__(self, perm):
        self.perm = perm

    def __call__(self, *shapes):
        stacked = [len(shapes) - 1] + list(shapes[0])  # the last input is the permutation
        return [stacked[axis] for axis in self.perm]


class _NativeSplitPermute(nn.Cell):
    """LattePermute with one output per block and, as its gradient, LatteConcatPermute."""

    function = "LattePermute"

    def __init__(self, perm, parts):
        super().__init__()
        inverse = inverse_permutation(perm)
        self.perm = Tensor(np.array(perm, np.int64))
        self.inverse = Tensor(np.array(inverse, np.int64))
        self.forward_op = custom_op(self.function, _SplitShapes(perm, parts), _SplitDtypes(parts))
        self.forward_op.add_prim_attr("perm", perm)  # PyNative caches inferred shapes by attributes (_permute_op)
        self.backward_op = custom_op("LatteConcatPermute", _ConcatShape(inverse), first_input)
        self.backward_op.add_prim_attr("perm", inverse)

    def construct(self, x):
        return self.forward_op(x, self.perm)

    def bprop(self, x, out, dout):
        return (self.backward_op(*dout, self.inverse),)


class _NativeSplitPermuteBias(_NativeSplitPermute):
    """LatteSplitPermuteBias; the bias's gradient a ReduceSum over the rows, as AddBias's (the same sums)."""

    function = "LatteSplitPermuteBias"

    def __init__(self, perm, parts):
        super().__init__(perm, parts)
        self.reduce = ops.ReduceSum()

    def construct(self, x, bias):
        return self.forward_op(x, self.perm, bias)

    def bprop(self, x, bias, out, dout):
        dx = self.backward_op(*dout, self.inverse)
        return dx, self.reduce(dx.reshape(-1, bias.shape[0]), 0)  # (..., L) -> (N, L) -> (L,)


class SplitPermute(nn.Cell):
    """(x + bias).transpose(*perm) cut along its first axis into its `parts` blocks, each without that axis: a tuple
    of `parts` tensors. `bias` (optional) is over x's trailing elements, added as AddBias adds a Linear's bias."""

    def __init__(self, perm, parts, backend=None):
        super().__init__()
        perm = tuple(int(axis) for axis in perm)
        if sorted(perm) != list(range(len(perm))) or len(perm) > MAX_RANK:
            raise ValueError(f"perm {perm} is not a permutation of 0..{len(perm) - 1} (rank <= {MAX_RANK})")
        if parts < 2:
            raise ValueError(f"parts={parts}: SplitPermute cuts into at least 2 blocks; use Permute for one")
        self.perm, self.parts = perm, parts
        self.add_bias = AddBias()
        self.use(resolve_backend(backend))

    def use(self, backend):
        """Switches the formulation (before the cell is compiled)."""
        self.backend = check_backend(backend)
        self.add_bias.use(backend)
        self.native = _NativeSplitPermute(self.perm, self.parts) if backend == "native" else None
        self.native_bias = _NativeSplitPermuteBias(self.perm, self.parts) if backend == "native" else None

    def construct(self, x, bias=None):
        if self.native is not None:
            if bias is not None and x.dtype == ms.float32:
                return self.native_bias(x, bias)
            if bias is not None:  # the kernel adds float32 biases only
                x = self._with_bias(x, bias)
            return self.native(x)
        if bias is not None:
            x = self._with_bias(x, bias)
        blocks = ops.split(ops.transpose(x, self.perm), 1, axis=0)  # parts x (1, ...)
        return tuple(block.squeeze(0) for block in blocks)

    def _with_bias(self, x, bias):
        shape = x.shape
        return self.add_bias(x.reshape(-1, bias.shape[0]), bias).reshape(shape)  # (..., L) -> (N, L) -> back
