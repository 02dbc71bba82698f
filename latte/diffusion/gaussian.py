"""Gaussian diffusion (DDPM / improved DDPM / DDIM) in MindSpore, with the semantics of Latte's diffusion/.

Tensors are latents of shape (B, F, C, H, W): the channel axis is 2. With a learned variance the model returns
(B, F, 2C, H, W): channels [:C] are the prediction (eps or x_0), channels [C:] the variance values v in [-1, 1].
`t` is always an index into THIS (possibly respaced) process, int32 of shape (B,); the model is called with
the original training timestep timestep_map[t].

Every method is made of MindSpore ops only, so it runs eagerly (PYNATIVE) and inside compiled graphs (a Cell in
GRAPH_MODE or under ms.jit). The float64 tables are numpy attributes with the official names (d.betas ...);
their float32 copies are graph constants under d.tables.
"""
import enum
import math

import numpy as np
from mindspore import Tensor, nn, ops

from latte.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from latte.diffusion.schedules import ScheduleTables

CHANNEL_AXIS = 2  # latents are (B, F, C, H, W)
CLIP_RANGE = 1.0  # clip_denoised clamps x_0 predictions to [-1, 1]
NATS_PER_BIT = math.log(2.0)
VB_RESCALE_REFERENCE_STEPS = 1000.0  # RESCALED_MSE scales vb by num_timesteps / 1000


class ModelMeanType(enum.Enum):
    """What the model's (first C) output channels predict."""

    PREVIOUS_X = enum.auto()  # x_{t-1} (not implemented)
    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise


class ModelVarType(enum.Enum):
    """Where the reverse-step variance comes from."""

    LEARNED = enum.auto()  # model outputs log variance directly (not implemented)
    FIXED_SMALL = enum.auto()  # posterior variance
    FIXED_LARGE = enum.auto()  # betas
    LEARNED_RANGE = enum.auto()  # model interpolates log variance between the two


class LossType(enum.Enum):
    MSE = enum.auto()  # MSE of the prediction (+ vb when the variance is learned)
    RESCALED_MSE = enum.auto()  # as MSE, vb scaled by num_timesteps / 1000
    KL = enum.auto()  # the variational bound term only
    RESCALED_KL = enum.auto()  # vb scaled by num_timesteps (estimate of the full bound)


class ScheduleTensors(nn.Cell):
    """float32 Tensor copies of the schedule tables (same names) plus the int32 timestep map.

    Plain Tensor attributes, not Parameters: graph constants that never appear in checkpoints or optimizers.
    """

    def __init__(self, tables, timestep_map):
        super().__init__()
        for name, values in tables.as_dict().items():
            setattr(self, name, Tensor(values.astype(np.float32)))
        self.timestep_map = Tensor(timestep_map.astype(np.int32))


class GaussianDiffusion(nn.Cell):
    """A Gaussian diffusion process of len(betas) steps, optionally respaced from a longer training process.

    Args:
        betas: float64 betas of this process, shape (T,).
        model_mean_type / model_var_type / loss_type: as in the official GaussianDiffusion.
        timestep_map: original timestep of each of the T steps (the model input); identity if None.
        original_num_steps: length of the training process the steps were taken from; T if None.
    """

    def __init__(self, betas, model_mean_type=ModelMeanType.EPSILON, model_var_type=ModelVarType.LEARNED_RANGE,
                 loss_type=LossType.MSE, timestep_map=None, original_num_steps=None):
        super().__init__()
        if model_mean_type not in (ModelMeanType.EPSILON, ModelMeanType.START_X):
            raise NotImplementedError(f"model_mean_type={model_mean_type}: use EPSILON or START_X")
        if model_var_type not in (ModelVarType.LEARNED_RANGE, ModelVarType.FIXED_LARGE, ModelVarType.FIXED_SMALL):
            raise NotImplementedError(
                f"model_var_type={model_var_type}: use LEARNED_RANGE, FIXED_LARGE or FIXED_SMALL")
        if not isinstance(loss_type, LossType):
            raise NotImplementedError(f"loss_type={loss_type!r}: use a LossType")
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type

        tables = ScheduleTables.from_betas(betas)
        # float64 numpy tables under the official names: d.betas, d.alphas_cumprod, d.posterior_variance, ...
        for name, values in tables.as_dict().items():
            setattr(self, name, values)
        self.num_timesteps = int(tables.betas.shape[0])
        if timestep_map is None:
            timestep_map = np.arange(self.num_timesteps)
        self.timestep_map = np.asarray(timestep_map, dtype=np.int64)
        if self.timestep_map.shape != (self.num_timesteps,):
            raise ValueError(f"timestep_map has shape {self.timestep_map.shape}, expected ({self.num_timesteps},)")
        self.original_num_steps = self.num_timesteps if original_num_steps is None else int(original_num_steps)
        if self.timestep_map[0] < 0 or self.timestep_map[-1] >= self.original_num_steps:
            raise ValueError(f"timestep_map {self.timestep_map} must index range({self.original_num_steps})")
        self.tables = ScheduleTensors(tables, self.timestep_map)

        # Static switches read by the (compiled) step code.
        self.predicts_xstart = model_mean_type == ModelMeanType.START_X
        self.learns_sigma = model_var_type == ModelVarType.LEARNED_RANGE
        self.fixed_large = model_var_type == ModelVarType.FIXED_LARGE
        self.loss_is_vb = loss_type in (LossType.KL, LossType.RESCALED_KL)
        self.vb_scale = {
            LossType.MSE: 1.0,
            LossType.RESCALED_MSE: self.num_timesteps / VB_RESCALE_REFERENCE_STEPS,
            LossType.KL: 1.0,
            LossType.RESCALED_KL: float(self.num_timesteps),
        }[loss_type]
        self._step_cells = {}  # compiled sampler steps, see sampler.denoise_step

    # ---------------------------------------------------------------- lookups
    def _extract(self, table, t, x):
        """table[t] as x.dtype, shaped (B, 1, ..., 1) to broadcast against x."""
        values = ops.gather(table, t, 0).astype(x.dtype)  # (B,)
        return values.reshape((t.shape[0],) + (1,) * (x.ndim - 1))  # (B,) -> (B, 1, 1, 1, 1)

    def model_timesteps(self, t):
        """Original training timesteps (what the model sees) of respaced indices t, int32 (B,)."""
        return ops.gather(self.tables.timestep_map, t, 0)

    # ---------------------------------------------------------------- forward process
    def q_sample(self, x_start, t, noise):
        """Sample x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with the given noise."""
        return (self._extract(self.tables.sqrt_alphas_cumprod, t, x_start) * x_start
                + self._extract(self.tables.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)

    def q_step(self, x_prev, t, noise):
        """Sample x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I): one forward step with the given
        noise (of this process: a respaced step's beta_t spans the training steps between its neighbours)."""
        beta = self._extract(self.tables.betas, t, x_prev)
        return ops.sqrt(1.0 - beta) * x_prev + ops.sqrt(beta) * noise

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0), each broadcastable to x_t."""
        mean = (self._extract(self.tables.posterior_mean_coef1, t, x_t) * x_start
                + self._extract(self.tables.posterior_mean_coef2, t, x_t) * x_t)
        variance = self._extract(self.tables.posterior_variance, t, x_t)
        log_variance = self._extract(self.tables.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (self._extract(self.tables.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - self._extract(self.tables.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return ((self._extract(self.tables.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart)
                / self._extract(self.tables.sqrt_recipm1_alphas_cumprod, t, x_t))

    # ---------------------------------------------------------------- reverse process
    def _split_output(self, model_output, x):
        """(prediction, variance values) of a model output for x, both like x; variance values are None when
        the variance is fixed. The output is cast to x.dtype."""
        channels = x.shape[CHANNEL_AXIS]
        out_channels = 2 * channels if self.learns_sigma else channels
        expected = x.shape[:CHANNEL_AXIS] + (out_channels,) + x.shape[CHANNEL_AXIS + 1:]
        if model_output.shape != expected:
            raise ValueError(f"model output has shape {model_output.shape}, expected {expected}: "
                             f"{out_channels} channels on axis {CHANNEL_AXIS} (learn_sigma={self.learns_sigma})")
        model_output = model_output.astype(x.dtype)
        if self.learns_sigma:
            prediction, var_values = ops.split(model_output, channels, CHANNEL_AXIS)
            return prediction, var_values
        return model_output, None

    def p_mean_variance_from_output(self, model_output, x, t, clip_denoised=True):
        """p(x_{t-1} | x_t) from a model output already computed for (x, t).

        Returns a dict: mean (like x), variance and log_variance (like x when learned, else (B, 1, ..., 1)),
        pred_xstart (like x).
        """
        prediction, var_values = self._split_output(model_output, x)
        if self.learns_sigma:
            min_log = self._extract(self.tables.posterior_log_variance_clipped, t, x)
            max_log = self._extract(self.tables.log_betas, t, x)
            frac = (var_values + 1.0) / 2.0  # v in [-1, 1] -> [0, 1] from min_log to max_log
            log_variance = frac * max_log + (1.0 - frac) * min_log
            variance = ops.exp(log_variance)
        else:
            if self.fixed_large:
                variance = self._extract(self.tables.fixed_large_variance, t, x)
                log_variance = self._extract(self.tables.fixed_large_log_variance, t, x)
            else:
                variance = self._extract(self.tables.posterior_variance, t, x)
                log_variance = self._extract(self.tables.posterior_log_variance_clipped, t, x)

        if self.predicts_xstart:
            pred_xstart = prediction
        else:
            pred_xstart = self._predict_xstart_from_eps(x, t, prediction)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-CLIP_RANGE, CLIP_RANGE)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance, "pred_xstart": pred_xstart}

    def p_mean_variance(self, model, x, t, y=None, clip_denoised=True):
        """Call model(x, timestep_map[t], y) and return p_mean_variance_from_output's dict."""
        model_output = model(x, self.model_timesteps(t), y)
        return self.p_mean_variance_from_output(model_output, x, t, clip_denoised)

    def _nonzero_mask(self, t, x):
        """1 where t != 0, else 0 (no noise is added on the last step), shaped (B, 1, ..., 1)."""
        return (t != 0).astype(x.dtype).reshape((t.shape[0],) + (1,) * (x.ndim - 1))

    def p_sample(self, model, x, t, noise, y=None, clip_denoised=True):
        """One ancestral (DDPM) step: x_{t-1} = mean + [t != 0] * exp(log_variance / 2) * noise.

        Returns a dict with "sample" and "pred_xstart".
        """
        out = self.p_mean_variance(model, x, t, y, clip_denoised)
        sample = out["mean"] + self._nonzero_mask(t, x) * ops.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model, x, t, noise, y=None, clip_denoised=True, eta=0.0):
        """One DDIM step (Song et al. 2021, eq. 12) with stochasticity eta (0: deterministic).

        eps is re-derived from the (possibly clipped) x_0 prediction, as in the official code.
        Returns a dict with "sample" and "pred_xstart".
        """
        out = self.p_mean_variance(model, x, t, y, clip_denoised)
        pred_xstart = out["pred_xstart"]
        eps = self._predict_eps_from_xstart(x, t, pred_xstart)
        sigma = eta * self._extract(self.tables.ddim_sigma_per_eta, t, x)
        eps_coef = ops.sqrt(self._extract(self.tables.one_minus_alphas_cumprod_prev, t, x) - sigma * sigma)
        mean = pred_xstart * self._extract(self.tables.sqrt_alphas_cumprod_prev, t, x) + eps_coef * eps
        sample = mean + self._nonzero_mask(t, x) * sigma * noise
        return {"sample": sample, "pred_xstart": pred_xstart}

    # ---------------------------------------------------------------- training
    def vb_terms_bpd(self, model_output, x_start, x_t, t, clip_denoised=False):
        """Variational-bound term per sample in bits, (B,): KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0,
        the discretized Gaussian decoder NLL of x_0 for t == 0."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance_from_output(model_output, x_t, t, clip_denoised)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / NATS_PER_BIT
        log_scales = ops.broadcast_to(0.5 * out["log_variance"], x_start.shape)
        decoder_nll = -mean_flat(
            discretized_gaussian_log_likelihood(x_start, out["mean"], log_scales)) / NATS_PER_BIT
        return ops.where(t == 0, decoder_nll, kl)

    def training_losses(self, model, x_start, t, y=None, noise=None, force_drop_ids=None):
        """Per-sample training losses for timesteps t: a dict of (B,) Tensors "loss", "mse", "vb".

        MSE / RESCALED_MSE: loss = mse + vb, mse of the prediction against its target (noise or x_0), vb (bits)
        with the prediction channels behind stop_gradient, so they are trained by mse only and the variance
        channels by vb only; vb is zero when the variance is fixed. KL / RESCALED_KL: loss = vb of the full
        output, mse is zero. noise=None draws fresh unseeded noise. force_drop_ids (label dropout, 1: the null
        label) is passed to the model as a keyword when given.
        """
        if noise is None:
            noise = ops.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        if force_drop_ids is None:
            model_output = model(x_t, self.model_timesteps(t), y)
        else:
            model_output = model(x_t, self.model_timesteps(t), y, force_drop_ids=force_drop_ids)
        zeros = ops.zeros((x_start.shape[0],), x_start.dtype)
        if self.loss_is_vb:
            vb = self.vb_terms_bpd(model_output, x_start, x_t, t) * self.vb_scale
            return {"loss": vb, "mse": zeros, "vb": vb}

        prediction, var_values = self._split_output(model_output, x_t)
        vb = zeros
        if self.learns_sigma:
            frozen = ops.concat((ops.stop_gradient(prediction), var_values), CHANNEL_AXIS)
            vb = self.vb_terms_bpd(frozen, x_start, x_t, t) * self.vb_scale
        target = x_start if self.predicts_xstart else noise
        mse = mean_flat(ops.square(target - prediction))
        return {"loss": mse + vb, "mse": mse, "vb": vb}

