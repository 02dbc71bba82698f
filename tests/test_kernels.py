"""The kernel formulations (latte.kernels) against torch's GELU(tanh) and LayerNorm, forward and backward."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mindspore as ms  # noqa: E402
from mindspore import nn, ops  # noqa: E402

from latte.kernels import NoAffineLayerNorm, TanhGELU, kernel_backend, native_library  # noqa: E402
from tests.grads import Grads  # noqa: E402

CPU_BACKENDS = ["composite", "native"]


class InputGrad(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.grad = ops.GradOperation(sens_param=True)

    def construct(self, x, sens):
        return self.grad(self.net)(x, sens)


def check(cell, torch_fn, shape, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    sens = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    want = torch_fn(xt)
    want.backward(torch.from_numpy(sens))
    got = cell(ms.Tensor(x)).asnumpy()
    grad = InputGrad(cell)(ms.Tensor(x), ms.Tensor(sens)).asnumpy()
    want, want_grad = want.detach().numpy(), xt.grad.numpy()
    assert np.abs(got - want).max() <= 2e-6 * max(1.0, np.abs(want).max())
    assert np.abs(grad - want_grad).max() <= 5e-6 * np.abs(want_grad).max()
    assert np.abs(want_grad).max() > 1e-2  # the gradient comparison is not vacuous


def test_native_kernels_build_where_a_compiler_exists():
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine: the composite formulation is used")
    library, why_not = native_library()
    assert library is not None, why_not
    assert kernel_backend("CPU")[0] == "native"
    assert kernel_backend("Ascend")[0] == "builtin"


def test_native_kernels_give_the_same_bits_on_any_thread_count(tmp_path):
    """Every native kernel's outputs and gradients (and the AdamW update, and the overflow check) are the same bits
    with 1 thread (a transformer kernel's default), 3 threads and the default counts: each split over rows or
    columns keeps the order of every sum. The library reads $LATTE_KERNEL_THREADS once, so each count runs in a
    process of its own."""
    from latte.kernels.native import THREADS_VAR

    if native_library()[0] is None:
        pytest.skip("no native library on this machine")
    results = {}
    for setting in ("1", "3", None):
        env = {k: v for k, v in os.environ.items() if k != THREADS_VAR}
        if setting:
            env[THREADS_VAR] = setting
        out = tmp_path / f"threads-{setting}.npz"
        subprocess.run([sys.executable, "-m", "tests.kernel_threads_worker", str(out)], env=env, check=True,
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, timeout=300)
        results[setting] = np.load(out)
    assert tuple(results["1"]["threads"]) == (1, 1) and tuple(results["3"]["threads"]) == (3, 3)
    assert tuple(results[None]["threads"]) == (1, os.cpu_count())  # the VAE's GroupNorm: every core
    assert results["1"]["nonfinite"].tolist() == [1, 0]  # an inf is found, finite gradients pass
    for key in set(results["1"].files) - {"threads"}:
        for setting in ("3", None):
            np.testing.assert_array_equal(results[setting][key], results["1"][key], err_msg=f"{key}, {setting}")


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_kernel_thread_count_is_named(monkeypatch, value):
    from latte.kernels.native import THREADS_VAR, kernel_threads_setting

    monkeypatch.setenv(THREADS_VAR, value)
    with pytest.raises(ValueError, match=f"LATTE_KERNEL_THREADS='{value}'.*whole number"):
        kernel_threads_setting()
    monkeypatch.setenv(THREADS_VAR, " 2 ")
    assert kernel_threads_setting() == 2


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(4, 33, 96), (2, 5, 37), (7,)])
def test_tanh_gelu_matches_torch(mode, backend, shape):
    check(TanhGELU(backend), lambda x: torch.nn.functional.gelu(x, approximate="tanh"), shape)


def test_tanh_gelu_saturates_cleanly(mode):
    """Large |x| (exp under- and overflow inside the sigmoid) gives x or 0, never NaN."""
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
    for backend in CPU_BACKENDS:
        got = TanhGELU(backend)(ms.Tensor(x)).asnumpy()
        want = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(4, 33, 96), (2, 5, 37), (3, 384)])
def test_layer_norm_matches_torch(mode, backend, shape):
    d = shape[-1]
    check(NoAffineLayerNorm(d, 1e-6, backend), lambda x: torch.nn.functional.layer_norm(x, (d,), eps=1e-6), shape)


def test_layer_norm_keeps_the_input_dtype(mode):
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float16))
    for backend in CPU_BACKENDS:
        y = NoAffineLayerNorm(16, 1e-6, backend)(x)
        assert y.dtype == ms.float16
        assert np.abs(y.asnumpy().astype(np.float32).mean(-1)).max() < 1e-2


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'fast' is not one of"):
        TanhGELU("fast")


class ThreeInputGrads(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, a, b, c, sens):
        return self.grad(self.net)(a, b, c, sens)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_modulated_layer_norm_matches_torch(mode, backend):
    """LayerNorm(x) * (1 + scale) + shift with per-sample shift / scale: output and all three gradients."""
    from latte.kernels import ModulatedLayerNorm

    rng = np.random.default_rng(3)
    x, sens = (rng.standard_normal((3, 5, 37)).astype(np.float32) * 2 for _ in range(2))
    shift, scale = (rng.standard_normal((3, 37)).astype(np.float32) for _ in range(2))
    xt, sht, sct = (torch.from_numpy(a).requires_grad_(True) for a in (x, shift, scale))
    want = torch.nn.functional.layer_norm(xt, (37,), eps=1e-6) * (1 + sct[:, None]) + sht[:, None]
    want.backward(torch.from_numpy(sens))
    cell = ModulatedLayerNorm(37, 1e-6, backend)
    args = [ms.Tensor(a) for a in (x, shift, scale)]
    np.testing.assert_allclose(cell(*args).asnumpy(), want.detach().numpy(), atol=2e-5)
    for got, ref in zip(ThreeInputGrads(cell)(*args, ms.Tensor(sens)), (xt, sht, sct)):
        np.testing.assert_allclose(got.asnumpy(), ref.grad.numpy(), atol=2e-5 * np.abs(ref.grad.numpy()).max())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (5, 37)])
def test_scaled_softmax_matches_torch(mode, backend, shape):
    """softmax(scores * scale) as the official attention computes it, forward and backward."""
    from latte.kernels import ScaledSoftmax

    scale = 64 ** -0.5
    check(ScaledSoftmax(scale, backend), lambda x: torch.softmax(x * scale, dim=-1), shape, scale=20.0)


def test_native_library_is_built_once_and_reused(tmp_path, monkeypatch):
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    from latte.kernels import native

    monkeypatch.setenv(native.CACHE_VAR, str(tmp_path / "cache"))
    first, why_not = native.native_library.__wrapped__()
    assert first is not None, why_not
    stamp = (tmp_path / "cache" / first.split("/")[-1]).stat().st_mtime_ns
    again, _ = native.native_library.__wrapped__()
    assert again == first and (tmp_path / "cache" / first.split("/")[-1]).stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.split("/")[-1]]  # no temporary left


def test_no_native_library_without_a_usable_cache_or_compiler(tmp_path, monkeypatch):
    from latte.kernels import native

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(native.CACHE_VAR, str(blocker / "cache"))
    library, why_not = native.native_library.__wrapped__()
    assert library is None and "could not build" in why_not
    monkeypatch.setenv("CXX", "no-such-compiler")
    library, why_not = native.native_library.__wrapped__()
    assert library is None and "no C++ compiler" in why_not


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(3, 5, 37), (16, 2, 64), (1, 300, 100)])
def test_gated_residual_matches_torch(mode, backend, shape):
    """x + gate.unsqueeze(1) * y as the official block's residual: output and the three gradients."""
    from latte.kernels import GatedResidual

    rng = np.random.default_rng(4)
    x, y, sens = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    gate = rng.standard_normal((shape[0], shape[2])).astype(np.float32)
    xt, gt, yt = (torch.from_numpy(a).requires_grad_(True) for a in (x, gate, y))
    want = xt + gt[:, None] * yt
    want.backward(torch.from_numpy(sens))
    cell = GatedResidual(backend)
    args = [ms.Tensor(a) for a in (x, gate, y)]
    np.testing.assert_array_equal(cell(*args).asnumpy(), want.detach().numpy())  # one rounding per op, as torch
    for got, ref in zip(ThreeInputGrads(cell)(*args, ms.Tensor(sens)), (xt, gt, yt)):
        np.testing.assert_allclose(got.asnumpy(), ref.grad.numpy(), rtol=0, atol=2e-6 * np.abs(ref.grad.numpy()).max())


class AllInputGrads(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, *inputs_and_sens):
        return self.grad(self.net)(*inputs_and_sens)


def compare_grads(got_grads, torch_inputs, atol_share=1e-5):  # bias sums: thousands of terms
    for got, ref in zip(got_grads, torch_inputs, strict=True):
        want = ref.grad.numpy()
        assert np.abs(want).max() > 1e-2  # not vacuous
        np.testing.assert_allclose(got.asnumpy(), want, rtol=0, atol=atol_share * np.abs(want).max())


# (64, 40, 100): enough rows that the bias-gradient kernels split the 100 columns over threads (64 + 36)
@pytest.mark.parametrize("backend", CPU_BACKENDS + ["builtin"])
@pytest.mark.parametrize("shape", [(2, 5, 37), (64, 40, 100), (3, 16)])
def test_tanh_gelu_with_bias_matches_torch(mode, backend, shape):
    """GELU(x + bias), the MLP's fc1 bias added by the activation: output, and the gradients of x and bias."""
    rng = np.random.default_rng(6)
    x, sens = (rng.standard_normal(shape).astype(np.float32) * 2 for _ in range(2))
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    xt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, bias))
    want = torch.nn.functional.gelu(xt + bt, approximate="tanh")
    want.backward(torch.from_numpy(sens))
    cell = TanhGELU(backend)
    args = [ms.Tensor(x), ms.Tensor(bias)]
    got = cell(*args).asnumpy()
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=0, atol=2e-6 * np.abs(got).max())
    compare_grads(AllInputGrads(cell)(*args, ms.Tensor(sens)), (xt, bt))


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["builtin"])
@pytest.mark.parametrize("shape", [(3, 5, 37), (1, 300, 100), (16, 2, 64)])
def test_gated_residual_with_bias_matches_torch(mode, backend, shape):
    """x + gate * (y + bias), the output projection's bias added by the residual: output and the four gradients;
    (1, 300, 100) is a temporal block's single sample, its columns split over threads."""
    from latte.kernels import GatedResidual

    rng = np.random.default_rng(7)
    x, y, sens = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    gate = rng.standard_normal((shape[0], shape[2])).astype(np.float32)
    bias = rng.standard_normal(shape[2]).astype(np.float32)
    xt, gt, yt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, gate, y, bias))
    want = xt + gt[:, None] * (yt + bt)
    want.backward(torch.from_numpy(sens))
    cell = GatedResidual(backend)
    args = [ms.Tensor(a) for a in (x, gate, y, bias)]
    np.testing.assert_array_equal(cell(*args).asnumpy(), want.detach().numpy())  # one rounding per op, as torch
    compare_grads(AllInputGrads(cell)(*args, ms.Tensor(sens)), (xt, gt, yt, bt))


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["builtin"])
def test_linear_matches_torch(mode, backend):
    """Linear (broadcast-add bias on CPU, BiasAdd where builtin) against torch.nn.functional.linear on a 3-D
    input: output, input, weight and bias gradients."""
    from latte.kernels import Linear

    rng = np.random.default_rng(5)
    x, sens = rng.standard_normal((2, 7, 12)).astype(np.float32), rng.standard_normal((2, 7, 5)).astype(np.float32)
    cell = Linear(12, 5, backend=backend)
    w, b = (rng.standard_normal(p.shape).astype(np.float32) for p in (cell.weight, cell.bias))
    cell.weight.set_data(ms.Tensor(w))
    cell.bias.set_data(ms.Tensor(b))
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    want = torch.nn.functional.linear(xt, wt, bt)
    want.backward(torch.from_numpy(sens))
    np.testing.assert_allclose(cell(ms.Tensor(x)).asnumpy(), want.detach().numpy(), rtol=0, atol=1e-5)
    (dx,), (dw, db) = Grads(cell)(ms.Tensor(x), ms.Tensor(sens))
    for got, ref in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(got.asnumpy(), ref.grad.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape,groups,silu", [((2, 64, 5, 7), 32, True), ((1, 32, 3, 4, 4), 8, True),
                                               ((3, 16, 9), 4, False)])
def test_group_norm_matches_torch(mode, backend, shape, groups, silu):
    """GroupNorm (affine), then SiLU when fused, against torch's group_norm and silu: output and the input, gamma
    and beta gradients, on 4-D (the VAE), 5-D (the temporal VAE's (B, C, F, H, W)) and 3-D inputs."""
    from latte.kernels import GroupNorm

    rng = np.random.default_rng(6)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    sens = rng.standard_normal(shape).astype(np.float32)
    cell = GroupNorm(groups, shape[1], eps=1e-6, silu=silu, backend=backend)
    gamma, beta = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    cell.gamma.set_data(ms.Tensor(gamma))
    cell.beta.set_data(ms.Tensor(beta))
    xt, gt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, gamma, beta))
    want = torch.nn.functional.group_norm(xt, groups, gt, bt, eps=1e-6)
    want = torch.nn.functional.silu(want) if silu else want
    want.backward(torch.from_numpy(sens))
    np.testing.assert_allclose(cell(ms.Tensor(x)).asnumpy(), want.detach().numpy(), rtol=0,
                               atol=2e-6 * np.abs(want.detach().numpy()).max())
    (dx,), (dgamma, dbeta) = Grads(cell)(ms.Tensor(x), ms.Tensor(sens))
    for got, ref in ((dx, xt), (dgamma, gt), (dbeta, bt)):
        np.testing.assert_allclose(got.asnumpy(), ref.grad.numpy(), rtol=0, atol=5e-6 * np.abs(ref.grad.numpy()).max())


def test_vae_norms_use_the_native_kernel_on_cpu():
    """Every GroupNorm of the VAE is the kernel cell, fused with SiLU wherever diffusers follows the norm with it
    (all but the mid-block attention's), native on CPU where the library builds."""
    if native_library()[0] is None:
        pytest.skip("no native library on this machine")
    from latte.kernels import GroupNorm
    from latte.models.vae import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4)
    norms = {name: cell for name, cell in vae.cells_and_names() if isinstance(cell, nn.GroupNorm)}
    assert norms and all(isinstance(cell, GroupNorm) and cell.backend == "native" for cell in norms.values())
    assert {name for name, cell in norms.items() if not cell.silu} == {
        "encoder.mid_block.attentions.0.group_norm", "decoder.mid_block.attentions.0.group_norm"}


PERMUTES = [((3, 1, 5, 2, 4), (2, 0, 3, 1, 4)),  # the attention's qkv head split (B, N, 3, H, Dh)
            ((2, 3, 4, 5), (0, 2, 1, 3)),  # its head merge
            ((1, 2, 3, 3, 2, 4), (3, 0, 2, 4, 1, 5)),  # the temporal qkv split (B, F, T, 3, H, Dh)
            ((2, 3, 4, 2, 4, 2), (0, 2, 4, 1, 3, 5)),  # patches (N, C, h, p, w, p)
            ((2, 3, 4, 2, 2, 5), (0, 5, 1, 3, 2, 4)),  # unpatchify: the last axis moves (a strided gather)
            ((37, 41), (1, 0)), ((1, 6, 1), (2, 1, 0)), ((1, 1), (1, 0)), ((9,), (0,))]


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["builtin"])
@pytest.mark.parametrize("shape,perm", PERMUTES)
def test_permute_matches_numpy(mode, backend, shape, perm):
    """Permute: the elements of numpy's transpose exactly, for float32, float16 and int32, and the input gradient
    is the incoming gradient transposed back."""
    from latte.kernels import Permute

    rng = np.random.default_rng(7)
    cell = Permute(perm, backend)
    for dtype in (np.float32, np.float16, np.int32):
        x = (rng.standard_normal(shape) * 100).astype(dtype)
        got = cell(ms.Tensor(x)).asnumpy()
        assert got.dtype == dtype and got.shape == np.transpose(x, perm).shape
        np.testing.assert_array_equal(got, np.transpose(x, perm))
    x = rng.standard_normal(shape).astype(np.float32)
    sens = rng.standard_normal(np.transpose(x, perm).shape).astype(np.float32)
    grad = InputGrad(cell)(ms.Tensor(x), ms.Tensor(sens)).asnumpy()
    np.testing.assert_array_equal(grad, np.transpose(sens, np.argsort(perm)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_permutes_of_same_shaped_inputs_keep_their_own_shapes(mode, backend):
    """The patch embedding's and unpatchify's permutations meet inputs of one shape in the same train step; PyNative
    caches inferred output shapes by op name, attributes and input shapes, so each op must carry its permutation."""
    from latte.kernels import Permute

    x = np.arange(2 * 3 * 4 * 2 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2, 4, 2)
    for perm in ((0, 2, 4, 1, 3, 5), (0, 2, 4, 3, 5, 1), (0, 1, 2, 3, 5, 4)):
        cell = Permute(perm, backend)
        np.testing.assert_array_equal(cell(ms.Tensor(x)).asnumpy(), np.transpose(x, perm))
        sens = np.ones(np.transpose(x, perm).shape, np.float32)
        assert InputGrad(cell)(ms.Tensor(x), ms.Tensor(sens)).asnumpy().shape == x.shape


SPLIT_PERMUTES = [((3, 5, 3, 2, 4), (2, 0, 3, 1, 4)),  # the attention's qkv (B, N, 3, H, Dh) -> 3 x (B, H, N, Dh)
                  ((2, 3, 4, 3, 2, 4), (3, 0, 2, 4, 1, 5)),  # temporal (B, F, T, 3, H, Dh) -> 3 x (B, T, H, F, Dh)
                  ((1, 2, 3, 2, 3), (3, 0, 4, 1, 2)),  # a size-1 axis dropped, strided runs
                  ((4, 6), (1, 0))]  # six blocks of a plain transpose


class _SplitSum(nn.Cell):
    """sum_i <SplitPermute(x, bias)[i], sens_i>: one scalar whose gradients are the split's against `sens`."""

    def __init__(self, cell, with_bias):
        super().__init__()
        self.cell, self.with_bias = cell, with_bias

    def construct(self, x, bias, sens):
        parts = self.cell(x, bias) if self.with_bias else self.cell(x)
        total = (parts[0] * sens[0]).sum()
        for i in range(1, len(parts)):
            total = total + (parts[i] * sens[i]).sum()
        return total


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["builtin"])
@pytest.mark.parametrize("shape,perm", SPLIT_PERMUTES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_split_permute_gives_numpys_blocks_and_gradients(mode, backend, shape, perm, with_bias):
    """SplitPermute: the blocks of numpy's (x + bias).transpose along the first axis, bit for bit (float32 and
    float16; int32 without a bias); the input gradient is the blocks' gradients stacked and transposed back, and the
    bias gradient their sum over the rows, both exactly as AddBias and Permute get them."""
    from latte.kernels import SplitPermute

    rng = np.random.default_rng(11)
    parts = shape[perm[0]]
    cell = SplitPermute(perm, parts, backend)
    bias_len = int(np.prod(shape[-3:])) if len(shape) >= 5 else shape[-1]  # qkv's bias: over (3, H, Dh)
    x = (rng.standard_normal(shape) * 100).astype(np.float32)
    bias = rng.standard_normal(bias_len).astype(np.float32)
    added = (x.reshape(-1, bias_len) + bias).reshape(shape) if with_bias else x
    want = np.transpose(added, perm)
    got = cell(ms.Tensor(x), ms.Tensor(bias)) if with_bias else cell(ms.Tensor(x))
    assert len(got) == parts
    for i in range(parts):
        np.testing.assert_array_equal(got[i].asnumpy(), want[i])
    for dtype in (np.float16,) if with_bias else (np.float16, np.int32):  # the kernel adds float32 biases only
        xd, bd = x.astype(dtype), bias.astype(dtype)
        got = cell(ms.Tensor(xd), ms.Tensor(bd)) if with_bias else cell(ms.Tensor(xd))
        wanted = np.transpose((xd.reshape(-1, bias_len) + bd).reshape(shape) if with_bias else xd, perm)
        for i in range(parts):
            assert got[i].asnumpy().dtype == dtype
            np.testing.assert_array_equal(got[i].asnumpy(), wanted[i])
    sens = rng.standard_normal(want.shape).astype(np.float32)
    grads = ops.GradOperation(get_all=True)(_SplitSum(cell, with_bias))(
        ms.Tensor(x), ms.Tensor(bias), tuple(ms.Tensor(s) for s in sens))
    dx = np.transpose(sens, np.argsort(perm))
    np.testing.assert_array_equal(grads[0].asnumpy(), dx)
    if with_bias:
        np.testing.assert_allclose(grads[1].asnumpy(), dx.reshape(-1, bias_len).sum(0), rtol=1e-5, atol=1e-5)


def test_split_permute_bias_gradient_is_add_bias_bits():
    """Natively the bias gradient is AddBias's own ReduceSum over the same rows: the same bits as the composite
    formulation (BiasAdd, transpose, split), so moving qkv's bias into the split changes no training result."""
    from latte.kernels import SplitPermute

    rng = np.random.default_rng(5)
    shape, perm = (2, 33, 3, 2, 8), (2, 0, 3, 1, 4)
    x = rng.standard_normal(shape).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    sens = tuple(ms.Tensor(rng.standard_normal((2, 2, 33, 8)).astype(np.float32)) for _ in range(3))
    grads = [ops.GradOperation(get_all=True)(_SplitSum(SplitPermute(perm, 3, backend), True))(
        ms.Tensor(x), ms.Tensor(bias), sens) for backend in CPU_BACKENDS]
    for native, composite in zip(grads[1], grads[0]):
        np.testing.assert_array_equal(native.asnumpy(), composite.asnumpy())


def test_split_permute_refuses_one_block():
    from latte.kernels import SplitPermute

    with pytest.raises(ValueError, match="parts=1: SplitPermute cuts into at least 2 blocks; use Permute"):
        SplitPermute((1, 0), 1)


def test_permute_refuses_a_non_permutation():
    from latte.kernels import Permute

    with pytest.raises(ValueError, match=r"\(0, 2, 2\) is not a permutation"):
        Permute((0, 2, 2))


def test_models_transpose_with_the_native_kernel_on_cpu():
    """The Latte models' transposes (heads, patches, unpatchify) are Permute cells, native on CPU: MindSpore's CPU
    Transpose keeps a table of 2x each transposed tensor's bytes for the graph's lifetime."""
    if native_library()[0] is None:
        pytest.skip("no native library on this machine")
    from latte.kernels import Permute
    from latte.models.factory import create_latte
    from latte.models.latte_t2v import LatteT2V
    from tests.test_latte_t2v import TINY

    for model in (create_latte("Latte-T/2", input_size=8, num_frames=2), LatteT2V(**TINY)):
        permutes = [cell for _, cell in model.cells_and_names() if isinstance(cell, Permute)]
        assert all(cell.backend == "native" for cell in permutes)
        perms = {cell.perm for cell in permutes}
        assert {(0, 2, 4, 1, 3, 5), (0, 5, 1, 3, 2, 4), (0, 3, 1, 2, 4)} <= perms, perms  # patches, unpatchify, frames
