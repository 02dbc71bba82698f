"""Axis permutation (transpose) in the formulation of a kernel backend (see backend.py).

MindSpore 2.10's CPU Transpose keeps, from compile time for as long as the graph lives, a table of one 8-byte
input offset per element: 2x the bytes of every transposed tensor, forward and backward. In the Latte-S/2
16-frame train step the 51 transposes (the attention's head transposes and their gradients) held ~1.2 GiB that
way (2.40 against 1.13 GiB after compile, 4.13 against 2.91 GiB after the first step). The native formulation
(cpu_kernels.cc LattePermute) copies the same elements and keeps nothing; `mint.permute`, which keeps no table
either, ran ~4x slower. Ascend and GPU keep ops.transpose.
"""
import numpy as np

from mindspore import Tensor, nn, ops

from latte.kernels.backend import check_backend
from latte.kernels.cells import custom_op, resolve_backend

MAX_RANK = 8  # cpu_kernels.cc kMaxPermuteRank


class _PermutedShape:
    """Output shape of the native permute: the input's axes in `perm` order (ops.Custom's out_shape)."""

    def __init__(self, perm):
        self.perm = perm

    def __call__(self, x, perm):
        return [x[axis] for axis in self.perm]


def _same_dtype(x, perm):
    return x


def inverse_permutation(perm):
    """The permutation that undoes `perm`: x.transpose(perm).transpose(inverse_permutation(perm)) == x."""
    return tuple(int(i) for i in np.argsort(perm))


def _permute_op(perm):
    """The native op for one permutation. The permutation is also a primitive attribute: PyNative caches an op's
    inferred output shape by its name, attributes and input shapes, so without it two permutations of same-shaped
    inputs would share one output shape."""
    op = custom_op("LattePermute", _PermutedShape(perm), _same_dtype)
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
