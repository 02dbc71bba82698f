"""Every native CPU kernel, forward and backward, on inputs large enough to be split over 3 threads
(run by tests/test_kernels.py with different $LATTE_KERNEL_THREADS, which the library reads once per process).

    python -m tests.kernel_threads_worker OUT.npz

Writes each kernel's outputs and gradients, and the thread counts the library reports, to OUT.npz.
"""
import sys

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from latte.kernels import (GatedResidual, GroupNorm, ModulatedLayerNorm, NoAffineLayerNorm, Permute, ScaledSoftmax,
                           SplitPermute, TanhGELU, library_threads, native_library, nonfinite_kernel)
from latte.training.optim import create_optimizer
from tests.grads import Grads


def run(name, cell, inputs, rng, results):
    tensors = [ms.Tensor(a) for a in inputs]
    out = cell(*tensors)
    results[f"{name}.out"] = out.asnumpy()
    sens = ms.Tensor(rng.standard_normal(out.shape).astype(np.float32))
    input_grads, weight_grads = Grads(cell)(*tensors, sens)
    for i, grad in enumerate(list(input_grads) + list(weight_grads)):
        results[f"{name}.grad{i}"] = grad.asnumpy()


class Stacked(nn.Cell):
    """A cell of several outputs as one: its outputs stacked."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, *inputs):
        return ops.stack(self.cell(*inputs))


def main(out):
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    results = {}
    # (8, 320, 100): 2560 rows, so every row- and column-split kernel has work for 3 threads (chunks of 32768
    # elements; the bias-gradient kernels split 100 columns into lines of 16)
    run("gelu_bias", TanhGELU("native"), [normal(8, 320, 100), normal(100)], rng, results)
    run("layer_norm", NoAffineLayerNorm(100, 1e-6, "native"), [normal(8, 320, 100)], rng, results)
    run("modulated_norm", ModulatedLayerNorm(100, 1e-6, "native"), [normal(8, 320, 100), normal(8, 100),
                                                                      normal(8, 100)], rng, results)
    run("softmax", ScaledSoftmax(0.125, "native"), [normal(8, 4, 64, 64) * 8], rng, results)
    run("gated_residual", GatedResidual("native"), [normal(1, 2560, 100), normal(1, 100), normal(1, 2560, 100),
                                                    normal(100)], rng, results)
    run("permute", Permute((0, 2, 1, 3), "native"), [normal(4, 64, 8, 100)], rng, results)
    run("split_permute", Stacked(SplitPermute((2, 0, 3, 1, 4), 3, "native")), [normal(2, 320, 3, 4, 25),
                                                                                normal(300)], rng, results)
    norm = GroupNorm(8, 32, eps=1e-6, silu=True, backend="native")
    norm.gamma.set_data(ms.Tensor(normal(32)))
    norm.beta.set_data(ms.Tensor(normal(32)))
    run("group_norm", norm, [normal(4, 32, 24, 24)], rng, results)

    params = [ms.Parameter(ms.Tensor(normal(400, 300)), name="w"), ms.Parameter(ms.Tensor(normal(300)), name="b")]
    optimizer = create_optimizer(params, [1e-2, 5e-3], weight_decay=0.05, kernels="native")
    assert optimizer.fused is not None, "the fused AdamW kernel is not in use"
    for _ in range(2):
        optimizer(tuple(ms.Tensor(normal(*p.shape)) for p in params))
    for p in params:
        results[f"adamw.{p.name}"] = p.asnumpy()
    grads = [normal(400, 300), normal(300)]
    grads[0][123, 45] = np.inf
    results["nonfinite"] = np.stack([nonfinite_kernel()(*map(ms.Tensor, g)).asnumpy().reshape(())
                                     for g in (grads, [normal(400, 300), normal(300)])])
    results["threads"] = np.array(library_threads(native_library()[0]))
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
