"""Sampling loops of latte.diffusion on a tiny deterministic MindSpore cell.

Checks: one compiled graph for all steps (and none for a repeated loop), same seed -> identical samples, agreement
with the step-by-step eager path (whose math test_diffusion_gaussian.py checks against float64), DDPM and DDIM,
with and without classifier-free guidance, trajectories.
"""
import contextlib

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from latte.diffusion import CFGDenoiser, create_diffusion, denoise_step, duplicate_for_cfg, sample_loop

LATENT_CHANNELS = 4  # the official forward_with_cfg guides exactly the first 4 output channels
SHAPE = (2, 3, LATENT_CHANNELS, 4, 4)  # (B, F, C, H, W)
NUM_CLASSES = 5  # the null label is NUM_CLASSES
STEPS = "6"


class TinyDenoiser(nn.Cell):
    """Per-pixel linear map over channels + timestep and label embeddings; variance channels squashed to [-1, 1]."""

    def __init__(self, channels=LATENT_CHANNELS, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.channels = channels
        self.proj = nn.Dense(channels, 2 * channels)
        self.proj.weight.set_data(Tensor(rng.normal(0, 0.5, (2 * channels, channels)).astype(np.float32)))
        self.proj.bias.set_data(Tensor(rng.normal(0, 0.1, (2 * channels,)).astype(np.float32)))
        self.t_table = Tensor(rng.normal(0, 0.1, (1000, 2 * channels)).astype(np.float32))
        self.y_table = Tensor(rng.normal(0, 0.3, (NUM_CLASSES + 1, 2 * channels)).astype(np.float32))

    def construct(self, x, t, y):
        h = self.proj(x.swapaxes(2, 4)).swapaxes(2, 4)  # (B, F, C, H, W) -> (B, F, W, H, C) -> (B, F, 2C, H, W)
        emb = ops.gather(self.t_table, t, 0)  # (B, 2C)
        if y is not None:
            emb = emb + ops.gather(self.y_table, y, 0)
        h = h + emb.reshape(emb.shape[0], 1, -1, 1, 1)  # (B, 2C) -> (B, 1, 2C, 1, 1)
        eps, v = ops.split(h, self.channels, 2)
        return ops.concat((eps, ops.tanh(v)), 2)

    def construct_with_cfg(self, x, t, y, cfg_scale):
        """The official forward_with_cfg: first half duplicated, guidance on the first 4 channels only."""
        half = x[: x.shape[0] // 2]
        out = self.construct(ops.concat((half, half), 0), t, y)
        eps, rest = out[:, :, :LATENT_CHANNELS], out[:, :, LATENT_CHANNELS:]
        cond, uncond = ops.split(eps, eps.shape[0] // 2, 0)
        guided = uncond + cfg_scale * (cond - uncond)
        return ops.concat((ops.concat((guided, guided), 0), rest), 2)


@contextlib.contextmanager
def context_mode(mode):
    previous = ms.get_context("mode")
    ms.set_context(mode=mode)
    try:
        yield
    finally:
        ms.set_context(mode=previous)


@pytest.fixture
def graph_mode():
    with context_mode(ms.GRAPH_MODE):
        yield


def eager_reference(d, model, method, seed, eta=0.0, y=None, cfg_scale=None):
    """The loop step by step in PYNATIVE with the eager p_sample / ddim_sample and the same noise draws."""
    denoiser = CFGDenoiser(model, cfg_scale) if cfg_scale else model
    rng = np.random.default_rng(seed)
    with context_mode(ms.PYNATIVE_MODE):
        x = Tensor(rng.standard_normal(SHAPE, dtype=np.float32))
        trajectory = [x.asnumpy()]
        for i in reversed(range(d.num_timesteps)):
            t = Tensor(np.full((SHAPE[0],), i, dtype=np.int32))
            if method == "ddpm":
                noise = Tensor(rng.standard_normal(SHAPE, dtype=np.float32))
                x = d.p_sample(denoiser, x, t, noise, y, False)["sample"]
            else:
                noise = Tensor(rng.standard_normal(SHAPE, dtype=np.float32) if eta else np.zeros(SHAPE, np.float32))
                x = d.ddim_sample(denoiser, x, t, noise, y, False, eta)["sample"]
            trajectory.append(x.asnumpy())
    return np.stack(trajectory)


def run_loop(d, model, method, **kwargs):
    return sample_loop(d, model, SHAPE, method=method, progress=False, **kwargs)


def assert_matches(actual, expected):
    scale = max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(actual.asnumpy(), expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("method,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5)])
def test_loop_compiles_once_and_matches_eager(graph_mode, method, eta):
    d = create_diffusion(STEPS)
    model = TinyDenoiser()
    kwargs = dict(eta=eta) if method == "ddim" else {}
    final, trajectory = run_loop(d, model, method, seed=3, return_trajectory=True, **kwargs)
    step = denoise_step(d, model, method, False, eta)
    assert len(step.compile_cache) == 1  # six steps, one graph
    assert final.shape == SHAPE and final.dtype == ms.float32
    assert trajectory.shape == (d.num_timesteps + 1,) + SHAPE
    np.testing.assert_array_equal(trajectory.asnumpy()[-1], final.asnumpy())

    expected = eager_reference(d, model, method, seed=3, eta=eta)
    assert_matches(trajectory, expected)

    again = run_loop(d, model, method, seed=3, **kwargs)  # cached step: no new compile, identical samples
    assert len(step.compile_cache) == 1
    np.testing.assert_array_equal(again.asnumpy(), final.asnumpy())
    other = run_loop(d, model, method, seed=4, **kwargs)
    assert not np.array_equal(other.asnumpy(), final.asnumpy())


def test_ddpm_noise_and_progress_bar(graph_mode, capsys):
    d = create_diffusion(STEPS)
    model = TinyDenoiser()
    start = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    final, trajectory = sample_loop(d, model, SHAPE, method="ddpm", noise=start, seed=1, return_trajectory=True,
                                    progress=True)
    np.testing.assert_array_equal(trajectory.asnumpy()[0], start)  # the given noise is x_T
    assert "6/6" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"noise has shape \(1, 3, 4, 4, 4\)"):
        sample_loop(d, model, SHAPE, method="ddpm", noise=start[:1], progress=False)


def test_ddim_eta0_is_deterministic_given_noise(graph_mode):
    """DDIM with eta = 0 draws no per-step noise: the seed only picks x_T."""
    d = create_diffusion(STEPS)
    model = TinyDenoiser()
    start = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    a = sample_loop(d, model, SHAPE, method="ddim", noise=start, seed=1, progress=False)
    b = sample_loop(d, model, SHAPE, method="ddim", noise=start, seed=2, progress=False)
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_classifier_free_guidance(graph_mode, method):
    d = create_diffusion(STEPS)
    model = TinyDenoiser()
    z = np.random.default_rng(5).standard_normal((SHAPE[0] // 2,) + SHAPE[1:]).astype(np.float32)
    z2, y2 = duplicate_for_cfg(z, np.array([2], dtype=np.int32), NUM_CLASSES)
    np.testing.assert_array_equal(y2.asnumpy(), [2, NUM_CLASSES])
    assert y2.dtype == ms.int32

    final = run_loop(d, model, method, noise=z2, y=y2, cfg_scale=4.0, seed=7)
    step = denoise_step(d, model, method, False, 0.0, 4.0)
    assert isinstance(step.denoiser, CFGDenoiser) and len(step.compile_cache) == 1

    rng = np.random.default_rng(7)  # the loop's generator: x_T is given, so only step noise is drawn
    with context_mode(ms.PYNATIVE_MODE):
        x = z2
        for i in reversed(range(d.num_timesteps)):
            t = Tensor(np.full((SHAPE[0],), i, dtype=np.int32))
            cfg = CFGDenoiser(model, 4.0)
            if method == "ddpm":
                x = d.p_sample(cfg, x, t, Tensor(rng.standard_normal(SHAPE, dtype=np.float32)), y2, False)["sample"]
            else:
                x = d.ddim_sample(cfg, x, t, ops.zeros(SHAPE, ms.float32), y2, False, 0.0)["sample"]
    assert_matches(final, x.asnumpy())

    plain = run_loop(d, model, method, noise=z2, y=y2, seed=7)  # cfg_scale 1: the model alone
    assert not np.allclose(plain.asnumpy(), final.asnumpy())
    if method == "ddim":  # deterministic: both halves follow the same guided eps
        np.testing.assert_allclose(final.asnumpy()[0], final.asnumpy()[1], rtol=1e-6, atol=1e-6)


def test_guidance_errors(graph_mode):
    d = create_diffusion(STEPS)
    with pytest.raises(ValueError, match="needs labels y"):
        sample_loop(d, TinyDenoiser(), SHAPE, method="ddim", cfg_scale=4.0, progress=False)

    class NoCFG(nn.Cell):
        def construct(self, x, t, y):
            return x

    with pytest.raises(TypeError, match="construct_with_cfg"):
        sample_loop(d, NoCFG(), SHAPE, method="ddim", y=Tensor(np.array([1, 5], np.int32)), cfg_scale=4.0,
                    progress=False)


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE])
def test_guidance_under_fp16_keeps_the_models_cfg_forward(mode):
    """apply_amp's network keeps construct_with_cfg (MindSpore's own float32-output wrapper dropped it), in float32."""
    from latte.models.precision import apply_amp

    model, reference = TinyDenoiser(seed=3), TinyDenoiser(seed=3)
    d = create_diffusion(STEPS)
    z2, y2 = duplicate_for_cfg(np.random.default_rng(1).standard_normal(SHAPE[:1] + SHAPE[1:]).astype(np.float32)[:1],
                               np.array([2], dtype=np.int32), NUM_CLASSES)
    t = Tensor([3, 3], ms.int32)
    with context_mode(mode):
        amp_model = apply_amp(model, ms.float16)
        got = sample_loop(d, amp_model, z2.shape, method="ddim", noise=z2, y=y2, cfg_scale=4.0, progress=False)
        guided = amp_model.construct_with_cfg(z2, t, y2, 4.0)
    assert got.dtype == ms.float32 and np.isfinite(got.asnumpy()).all()
    want = reference.construct_with_cfg(z2, t, y2, 4.0).asnumpy()
    assert guided.dtype == ms.float32
    np.testing.assert_allclose(guided.asnumpy(), want, rtol=2e-2, atol=2e-2)  # fp16 compute
    assert not np.allclose(guided.asnumpy(), reference(z2, t, y2).asnumpy(), atol=0.1)  # guided, not plain


def test_wrong_model_output_is_loud_in_graph(graph_mode):
    class EpsOnly(nn.Cell):  # no variance channels, but the default diffusion learns sigma
        def construct(self, x, t, y):
            return x

    with pytest.raises(ValueError, match=r"expected \(2, 3, 8, 4, 4\)"):
        sample_loop(create_diffusion(STEPS), EpsOnly(), SHAPE, method="ddim", progress=False)


def test_pynative_loop_matches_graph():
    """Under PYNATIVE the step still runs as one ms.jit graph, with the same result."""
    model = TinyDenoiser()
    with context_mode(ms.GRAPH_MODE):
        graph = sample_loop(create_diffusion(STEPS), model, SHAPE, method="ddim", seed=2, eta=0.3, progress=False)
    with context_mode(ms.PYNATIVE_MODE):
        eager = sample_loop(create_diffusion(STEPS), model, SHAPE, method="ddim", seed=2, eta=0.3, progress=False)
    np.testing.assert_allclose(eager.asnumpy(), graph.asnumpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method,eta", [("ddpm", 0.0), ("ddim", 0.5)])
def test_resampling_rounds_match_eager(graph_mode, method, eta):
    """resample_rounds 3: after each step but the last, twice x_{t-1} -> x_t (forward step, numpy float64
    coefficients here) -> x_{t-1} (the same step again), each round drawing back-noise then step noise."""
    d = create_diffusion(STEPS)
    model = TinyDenoiser()
    kwargs = dict(eta=eta) if method == "ddim" else {}
    final = run_loop(d, model, method, seed=3, resample_rounds=3, **kwargs)
    assert len(denoise_step(d, model, method, False, eta).compile_cache) == 1

    rng = np.random.default_rng(3)
    with context_mode(ms.PYNATIVE_MODE):
        x = Tensor(rng.standard_normal(SHAPE, dtype=np.float32))
        for i in reversed(range(d.num_timesteps)):
            t = Tensor(np.full((SHAPE[0],), i, dtype=np.int32))
            for round_ in range(3 if i > 0 else 1):
                if round_:
                    back = rng.standard_normal(SHAPE, dtype=np.float32)
                    x = Tensor((np.sqrt(1.0 - d.betas[i]) * x.asnumpy() + np.sqrt(d.betas[i]) * back)
                               .astype(np.float32))
                noise = Tensor(rng.standard_normal(SHAPE, dtype=np.float32))
                if method == "ddpm":
                    x = d.p_sample(model, x, t, noise, None, False)["sample"]
                else:
                    x = d.ddim_sample(model, x, t, noise, None, False, eta)["sample"]
    assert_matches(final, x.asnumpy())
    once = run_loop(d, model, method, seed=3, **kwargs)
    assert not np.allclose(once.asnumpy(), final.asnumpy(), atol=1e-3)
    with pytest.raises(ValueError, match="resample_rounds=0"):
        run_loop(d, model, method, seed=3, resample_rounds=0)


def test_q_step_is_one_step_of_the_respaced_forward_process():
    """x_{i-1} ~ q(x_{i-1} | x_0) stepped by q_step at i is distributed as q(x_i | x_0): mean sqrt(abar_i) x_0,
    variance 1 - abar_i, for the respaced process's own steps (a neighbour's beta misses by far more)."""
    d = create_diffusion(STEPS)
    rng = np.random.default_rng(0)
    shape = (3, 1, 1, 256, 256)  # 3 respaced steps at once, 65536 draws each
    t = np.array([1, 2, 3], np.int32)
    x_start = np.full(shape, 0.7, np.float32)
    with context_mode(ms.PYNATIVE_MODE):
        x_prev = d.q_sample(Tensor(x_start), Tensor(t - 1), Tensor(rng.standard_normal(shape, dtype=np.float32)))
        x_t = d.q_step(x_prev, Tensor(t), Tensor(rng.standard_normal(shape, dtype=np.float32))).asnumpy()
    abar = d.alphas_cumprod[t]
    got_mean, got_std = x_t.reshape(3, -1).mean(1), x_t.reshape(3, -1).std(1)
    np.testing.assert_allclose(got_mean, np.sqrt(abar) * 0.7, atol=0.01)
    np.testing.assert_allclose(got_std, np.sqrt(1.0 - abar), rtol=0.01)
    assert np.all(np.abs(np.sqrt(1.0 - d.alphas_cumprod[t - 1]) - np.sqrt(1.0 - abar)) > 0.05)


def test_official_sample_py_respacing_for_ddim(graph_mode):
    """sample.py builds create_diffusion(str(steps)) for DDIM too: "50" -> the float-stride map, not ddim50."""
    d = create_diffusion("50")
    assert list(d.timestep_map[:5]) == [0, 20, 41, 61, 82]
    final = sample_loop(d, TinyDenoiser(), SHAPE, method="ddim", seed=0, progress=False)
    assert np.isfinite(final.asnumpy()).all()
