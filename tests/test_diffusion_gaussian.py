"""Per-step math of latte.diffusion (PYNATIVE and GRAPH_MODE) against float64 numpy references.

The references use only d.betas / d.alphas_cumprod (checked in test_diffusion_schedules.py) and the formulas.
Timesteps always include t = 0 (no noise, decoder NLL) and the last step.
"""
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn, ops

from latte.diffusion import DiffusionLoss, create_diffusion
from latte.diffusion.losses import approx_standard_normal_cdf, discretized_gaussian_log_likelihood, normal_kl

SHAPE = (4, 3, 2, 4, 4)  # (B, F, C, H, W)
T_INDICES = np.array([0, 1, 25, 49], dtype=np.int32)  # into the 50-step respaced process
RTOL = 1e-5
EPS_ERROR = 0.3
XSTART_ERROR = 0.003




@pytest.fixture
def pynative():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)


def assert_close(actual, expected, rtol=RTOL):
    """fp32 vs float64: within rtol of the value, or of the array's scale for entries near 0."""
    actual = actual.asnumpy() if isinstance(actual, Tensor) else np.asarray(actual)
    expected = np.broadcast_to(expected, actual.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(1.0, np.abs(expected).max()))


def data(seed=0, channels=SHAPE[2], learn_sigma=True):
    """x_start in [-1, 1] with exact edge values, noise, and a model output (eps | v in [-1, 1]).

    eps is the noise plus an error of std EPS_ERROR (a half-trained model): at t = 0 the decoder NLL then
    sees means within a few std of the data, where fp32 is meaningful (far tails saturate the fp32 CDF).
    """
    rng = np.random.default_rng(seed)
    shape = SHAPE[:2] + (channels,) + SHAPE[3:]
    x_start = rng.uniform(-1, 1, shape)
    x_start.flat[::7] = 1.0
    x_start.flat[3::7] = -1.0
    noise = rng.standard_normal(shape)
    eps = noise + EPS_ERROR * rng.standard_normal(shape)
    out = np.concatenate([eps, rng.uniform(-1, 1, shape)], axis=2) if learn_sigma else eps
    return x_start.astype(np.float32), noise.astype(np.float32), out.astype(np.float32)


def col(values, t):
    return np.asarray(values)[t].reshape(-1, 1, 1, 1, 1)


# ---------------------------------------------------------------- float64 references
def ref_tables(d, t):
    betas = col(d.betas, t)
    ac = col(d.alphas_cumprod, t)
    ac_prev = col(np.concatenate([[1.0], d.alphas_cumprod[:-1]]), t)
    post_var_all = d.betas * (1 - np.concatenate([[1.0], d.alphas_cumprod[:-1]])) / (1 - d.alphas_cumprod)
    return dict(betas=betas, ac=ac, ac_prev=ac_prev, post_var=col(post_var_all, t),
                min_log=col(np.log(np.concatenate([[post_var_all[1]], post_var_all[1:]])), t),
                fixed_large=col(np.concatenate([[post_var_all[1]], d.betas[1:]]), t))


def ref_q_posterior(d, x_start, x_t, t):
    r = ref_tables(d, t)
    mean = (r["betas"] * np.sqrt(r["ac_prev"]) / (1 - r["ac"]) * x_start
            + (1 - r["ac_prev"]) * np.sqrt(1 - r["betas"]) / (1 - r["ac"]) * x_t)
    return mean, r["post_var"], r["min_log"]


def ref_p_mean_variance(d, out, x, t, clip, var="learned", xstart=False):
    r = ref_tables(d, t)
    c = x.shape[2]
    pred = out[:, :, :c]
    if var == "learned":
        frac = (out[:, :, c:] + 1) / 2
        log_var = frac * np.log(r["betas"]) + (1 - frac) * r["min_log"]
    elif var == "large":
        log_var = np.log(r["fixed_large"]) + 0 * x
    else:
        log_var = r["min_log"] + 0 * x
    x0 = pred if xstart else np.sqrt(1 / r["ac"]) * x - np.sqrt(1 / r["ac"] - 1) * pred
    if clip:
        x0 = np.clip(x0, -1, 1)
    mean, _, _ = ref_q_posterior(d, x0, x, t)
    return mean, log_var, x0


def ref_normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def ref_decoder_log_prob(x, mean, log_scale):
    def cdf(v):
        return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
    inv = np.exp(-log_scale)
    plus, minus = cdf(inv * (x - mean + 1 / 255)), cdf(inv * (x - mean - 1 / 255))
    log = np.log(np.maximum(plus - minus, 1e-12))
    log = np.where(x > 0.999, np.log(np.maximum(1 - minus, 1e-12)), log)
    return np.where(x < -0.999, np.log(np.maximum(plus, 1e-12)), log)


def ref_training_losses(d, out, x_start, noise, t, var="learned", loss="mse", xstart=False):
    """Per-sample (loss, mse, vb) in float64, vb in bits."""
    r = ref_tables(d, t)
    x_t = np.sqrt(r["ac"]) * x_start + np.sqrt(1 - r["ac"]) * noise
    true_mean, _, true_log_var = ref_q_posterior(d, x_start, x_t, t)
    mean, log_var, _ = ref_p_mean_variance(d, out, x_t, t, False, var, xstart)
    per = tuple(range(1, x_start.ndim))
    kl = ref_normal_kl(true_mean, true_log_var, mean, log_var).mean(axis=per) / math.log(2)
    nll = -ref_decoder_log_prob(x_start, mean, 0.5 * log_var).mean(axis=per) / math.log(2)
    vb = np.where(t == 0, nll, kl) if var == "learned" or loss == "kl" else np.zeros(len(t))
    if loss == "kl":
        return vb, np.zeros(len(t)), vb
    target = x_start if xstart else noise
    mse = ((target - out[:, :, :x_start.shape[2]]) ** 2).mean(axis=per)
    return mse + vb, mse, vb


# ---------------------------------------------------------------- cells
class FixedOutput(nn.Cell):
    """A 'model' returning a trainable fixed output: gradients wrt it are gradients wrt the model output."""

    def __init__(self, out):
        super().__init__()
        self.out = Parameter(Tensor(out), name="out")

    def construct(self, x, t, y):
        return self.out + 0.0 * x.sum()


class Recorder(nn.Cell):
    """PYNATIVE only: records the timesteps the model is called with."""

    def __init__(self, out):
        super().__init__()
        self.out = Tensor(out)
        self.seen = []

    def construct(self, x, t, y):
        self.seen.append(t.asnumpy().copy())
        return self.out


class TermsCell(nn.Cell):
    """training_losses inside a compiled graph."""

    def __init__(self, model, diffusion):
        super().__init__()
        self.model = model
        self.diffusion = diffusion

    def construct(self, x_start, t, noise):
        terms = self.diffusion.training_losses(self.model, x_start, t, None, noise)
        return terms["loss"], terms["mse"], terms["vb"]


# ---------------------------------------------------------------- tests
def test_q_sample_and_posterior(mode):
    d = create_diffusion("50")
    x_start, noise, _ = data()
    t = Tensor(T_INDICES)
    r = ref_tables(d, T_INDICES)
    x_t_ref = np.sqrt(r["ac"]) * x_start + np.sqrt(1 - r["ac"]) * noise
    x_t = d.q_sample(Tensor(x_start), t, Tensor(noise))
    assert x_t.dtype == ms.float32
    assert_close(x_t, x_t_ref)
    mean, var, log_var = d.q_posterior_mean_variance(Tensor(x_start), Tensor(x_t_ref.astype(np.float32)), t)
    ref = ref_q_posterior(d, x_start, x_t_ref.astype(np.float32), T_INDICES)
    for got, exp in zip((mean, var, log_var), ref):
        assert_close(got, exp)


@pytest.mark.parametrize("clip", [False, True])
def test_p_mean_variance_learned_range(pynative, clip):
    d = create_diffusion("50")
    _, x, out = data(1)
    rec = Recorder(out)
    got = d.p_mean_variance(rec, Tensor(x), Tensor(T_INDICES), None, clip)
    np.testing.assert_array_equal(rec.seen[0], d.timestep_map[T_INDICES])  # model sees original timesteps
    assert rec.seen[0].dtype == np.int32
    mean, log_var, x0 = ref_p_mean_variance(d, out.astype(np.float64), x.astype(np.float64), T_INDICES, clip)
    assert_close(got["mean"], mean)
    assert_close(got["log_variance"], log_var)
    assert_close(got["variance"], np.exp(log_var))
    assert_close(got["pred_xstart"], x0)


@pytest.mark.parametrize("sigma_small", [False, True])
@pytest.mark.parametrize("predict_xstart", [False, True])
def test_p_mean_variance_fixed_variance(pynative, sigma_small, predict_xstart):
    d = create_diffusion("50", learn_sigma=False, sigma_small=sigma_small, predict_xstart=predict_xstart)
    _, x, out = data(2, learn_sigma=False)
    got = d.p_mean_variance_from_output(Tensor(out), Tensor(x), Tensor(T_INDICES), False)
    mean, log_var, x0 = ref_p_mean_variance(d, out.astype(np.float64), x.astype(np.float64), T_INDICES, False,
                                            "small" if sigma_small else "large", predict_xstart)
    assert_close(got["mean"], mean)
    assert_close(ops.broadcast_to(got["log_variance"], x.shape), log_var)
    assert_close(got["pred_xstart"], x0)


def test_wrong_output_channels_are_loud(pynative):
    d = create_diffusion("50")
    _, x, out = data(2, learn_sigma=False)
    with pytest.raises(ValueError, match="expected .* 4 channels on axis 2"):
        d.p_mean_variance_from_output(Tensor(out), Tensor(x), Tensor(T_INDICES))


def test_p_sample_no_noise_at_t0(mode):
    d = create_diffusion("50")
    _, x, out = data(3)
    noise = np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
    got = d.p_sample(FixedOutput(out), Tensor(x), Tensor(T_INDICES), Tensor(noise), None, False)
    mean, log_var, x0 = ref_p_mean_variance(d, out.astype(np.float64), x.astype(np.float64), T_INDICES, False)
    mask = (T_INDICES != 0).reshape(-1, 1, 1, 1, 1)
    assert_close(got["sample"], mean + mask * np.exp(0.5 * log_var) * noise)
    assert_close(got["pred_xstart"], x0)
    assert_close(got["sample"][0], mean[0])  # t == 0: the mean, no noise


@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_step(mode, eta, clip):
    d = create_diffusion("ddim50")
    _, x, out = data(4)
    noise = np.random.default_rng(10).standard_normal(x.shape).astype(np.float32)
    got = d.ddim_sample(FixedOutput(out), Tensor(x), Tensor(T_INDICES), Tensor(noise), None, clip, eta)
    x64 = x.astype(np.float64)
    _, _, x0 = ref_p_mean_variance(d, out.astype(np.float64), x64, T_INDICES, clip)
    r = ref_tables(d, T_INDICES)
    eps = (np.sqrt(1 / r["ac"]) * x64 - x0) / np.sqrt(1 / r["ac"] - 1)  # re-derived from x_0, as official
    sigma = eta * np.sqrt((1 - r["ac_prev"]) / (1 - r["ac"])) * np.sqrt(1 - r["ac"] / r["ac_prev"])
    mean = x0 * np.sqrt(r["ac_prev"]) + np.sqrt(1 - r["ac_prev"] - sigma ** 2) * eps
    mask = (T_INDICES != 0).reshape(-1, 1, 1, 1, 1)
    assert_close(got["sample"], mean + mask * sigma * noise)
    assert_close(got["pred_xstart"], x0)


def test_normal_cdf_approximation_is_accurate(pynative):
    """The official tanh CDF, to fp32 accuracy (MindSpore's CPU tanh kernel alone is off by up to 1e-4)."""
    x = np.linspace(-8, 8, 4001)
    ref = 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    got = approx_standard_normal_cdf(Tensor(x.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
    # edge bins far in the tail keep their relative accuracy (no 1 - cdf cancellation)
    x_edge = np.array([1.0, -1.0], dtype=np.float32)
    means = np.array([0.97, -0.97], dtype=np.float32)
    log_scales = np.full(2, np.log(0.01), dtype=np.float32)
    got = discretized_gaussian_log_likelihood(Tensor(x_edge), Tensor(means), Tensor(log_scales)).asnumpy()
    np.testing.assert_allclose(got, ref_decoder_log_prob(x_edge.astype(np.float64), means.astype(np.float64),
                                                         log_scales.astype(np.float64)), rtol=1e-5)


def test_losses_helpers(pynative):
    rng = np.random.default_rng(5)
    m1, lv1, m2, lv2 = (rng.standard_normal(SHAPE) for _ in range(4))
    f32 = [Tensor(v.astype(np.float32)) for v in (m1, lv1, m2, lv2)]
    assert_close(normal_kl(*f32), ref_normal_kl(*[v.astype(np.float32).astype(np.float64) for v in (m1, lv1, m2, lv2)]))
    # means within ~2 std of the data: beyond that the fp32 CDF saturates at 1 and the bin mass is clamped to
    # 1e-12, in the official fp32 code as here, so a float64 reference says nothing about fp32 there
    x, _, _ = data(5)
    mean = (x + 0.003 * rng.standard_normal(SHAPE)).astype(np.float32)
    log_scale = rng.uniform(-5, -3.5, SHAPE).astype(np.float32)
    got = discretized_gaussian_log_likelihood(Tensor(x), Tensor(mean), Tensor(log_scale))
    assert_close(got, ref_decoder_log_prob(x.astype(np.float64), mean.astype(np.float64), log_scale.astype(np.float64)))


@pytest.mark.parametrize("spec", ["", "50"])
def test_training_losses_mse_plus_vb(mode, spec):
    d = create_diffusion(spec)
    t = T_INDICES if spec else np.array([0, 1, 500, 999], dtype=np.int32)
    x_start, noise, out = data(6)
    got = TermsCell(FixedOutput(out), d)(Tensor(x_start), Tensor(t), Tensor(noise))
    ref = ref_training_losses(d, out.astype(np.float64), x_start.astype(np.float64), noise.astype(np.float64), t)
    for g, r in zip(got, ref):
        assert g.shape == (SHAPE[0],)
        assert_close(g, r)
    assert ref[2][0] > 0 and not np.isclose(ref[2][0], ref[2][1])  # t == 0 row is the decoder NLL


@pytest.mark.parametrize("option,kwargs", [
    ("kl", dict(use_kl=True)),
    ("rescaled_mse", dict(rescale_learned_sigmas=True)),
    ("fixed", dict(learn_sigma=False)),
    ("xstart", dict(predict_xstart=True)),
])
def test_training_losses_options(pynative, option, kwargs):
    d = create_diffusion("50", **kwargs)
    learn = kwargs.get("learn_sigma", True)
    x_start, noise, out = data(7, learn_sigma=learn)
    if option == "xstart":  # a prediction near x_0 (see data())
        out[:, :, :SHAPE[2]] = x_start + XSTART_ERROR * noise
    terms = d.training_losses(FixedOutput(out), Tensor(x_start), Tensor(T_INDICES), None, Tensor(noise))
    loss, mse, vb = ref_training_losses(
        d, out.astype(np.float64), x_start.astype(np.float64), noise.astype(np.float64), T_INDICES,
        var="learned" if learn else "large", loss="kl" if option == "kl" else "mse",
        xstart=option == "xstart")
    scale = {"kl": 50.0, "rescaled_mse": 50 / 1000}.get(option, 1.0)  # RESCALED_KL: x T; RESCALED_MSE: x T/1000
    vb = vb * scale
    loss = vb if option == "kl" else mse + vb
    assert_close(terms["loss"], loss)
    assert_close(terms["mse"], mse)
    assert_close(terms["vb"], vb)


def test_gradient_split(pynative):
    """d loss / d eps comes from mse only, d loss / d v from vb only (eps is stop_gradient'ed in vb)."""
    d = create_diffusion("")
    t = Tensor(np.array([0, 3, 400, 999], dtype=np.int32))
    x_start, noise, out = data(8)
    c = SHAPE[2]

    def grads(diffusion, term):
        model = FixedOutput(out)

        def f():
            return diffusion.training_losses(model, Tensor(x_start), t, None, Tensor(noise))[term].sum()
        return ms.grad(f, grad_position=None, weights=[model.out])()[0].asnumpy()

    g_loss, g_mse, g_vb = (grads(d, k) for k in ("loss", "mse", "vb"))
    np.testing.assert_array_equal(g_mse[:, :, c:], 0)
    np.testing.assert_array_equal(g_vb[:, :, :c], 0)
    np.testing.assert_allclose(g_loss[:, :, :c], g_mse[:, :, :c], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(g_loss[:, :, c:], g_vb[:, :, c:], rtol=1e-6, atol=1e-9)
    n = np.prod(SHAPE[1:])
    np.testing.assert_allclose(g_mse[:, :, :c], -2 * (noise - out[:, :, :c]) / n, rtol=1e-5, atol=1e-9)
    assert np.abs(g_vb[:, :, c:]).max() > 0
    # without the stop_gradient (the KL loss) eps does receive vb gradients
    assert np.abs(grads(create_diffusion("", use_kl=True), "vb")[:, :, :c]).max() > 0


def test_diffusion_loss_cell(mode):
    d = create_diffusion("")
    x_start, noise, out = data(9)
    t = np.array([0, 7, 500, 999], dtype=np.int32)
    model = FixedOutput(out)
    cell = DiffusionLoss(model, d)
    loss, mse, vb = cell(Tensor(x_start), None, Tensor(t), Tensor(noise))
    ref = ref_training_losses(d, out.astype(np.float64), x_start.astype(np.float64), noise.astype(np.float64), t)
    for g, r in zip((loss, mse, vb), ref):
        assert_close(g, r.mean())

    # trainable through value_and_grad with has_aux: the loss is differentiated, mse and vb come along
    step = ms.value_and_grad(cell, None, cell.trainable_params(), has_aux=True)
    (value, aux_mse, aux_vb), (grad,) = step(Tensor(x_start), None, Tensor(t), Tensor(noise))
    assert np.isfinite(value.asnumpy()) and grad.shape == out.shape and np.abs(grad.asnumpy()).max() > 0
    np.testing.assert_allclose(value.asnumpy(), aux_mse.asnumpy() + aux_vb.asnumpy(), rtol=1e-6)
