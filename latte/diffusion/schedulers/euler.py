"""Euler and Euler ancestral (Karras et al. 2022, k-diffusion) with the semantics of diffusers'
EulerDiscreteScheduler and EulerAncestralDiscreteScheduler.

Both work in sigma space (sigma = sqrt((1 - abar) / abar)): the model input is scaled by 1 / sqrt(sigma^2 + 1),
the loop starts from noise * init_noise_sigma, and the timesteps are float32 (fractional with linspace spacing:
the model is called with the float timestep, as diffusers does).
"""
import numpy as np
import mindspore as ms

from latte.diffusion.schedulers.base import (F32, ONE, SigmaIndexMixin, TextScheduler, as_latents, float32_sample,
                                             require, scalar, spaced_timesteps)

FINAL_SIGMAS_TYPES = ("zero", "sigma_min")
EULER_PREDICTION_TYPES = ("epsilon", "sample", "original_sample", "v_prediction")


class _SigmaScheduler(SigmaIndexMixin, TextScheduler):
    """The sigma tables, timesteps, init_noise_sigma and input scaling shared by both Euler schedulers."""

    PREDICTION_TYPES = EULER_PREDICTION_TYPES

    def _train_sigmas(self):
        return np.sqrt((ONE - self.alphas_cumprod) / self.alphas_cumprod)  # float32 (T,)

    def _final_sigma(self):
        return F32(0.0)

    def set_timesteps(self, num_inference_steps):
        cfg = self._config
        timesteps = spaced_timesteps(cfg["timestep_spacing"], cfg["num_train_timesteps"], num_inference_steps,
                                     cfg["steps_offset"]).astype(F32)
        train_sigmas = self._train_sigmas()
        sigmas = np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)  # float64 (n,)
        self.sigmas = np.concatenate([sigmas, [self._final_sigma()]]).astype(F32)  # (n + 1,)
        self.timesteps = timesteps
        self.num_inference_steps = int(num_inference_steps)
        self._reset_step_index()

    @property
    def init_noise_sigma(self):
        sigmas = self.sigmas if self.timesteps is not None else self._train_sigmas()
        max_sigma = sigmas.max()
        if self._config["timestep_spacing"] in ("linspace", "trailing"):
            return float(max_sigma)
        return float(np.sqrt(max_sigma * max_sigma + ONE))

    def scale_model_input(self, sample, timestep):
        self._check_ready()
        sigma = self.sigmas[self._current_index(timestep)]
        return as_latents(sample) / scalar(np.sqrt(sigma * sigma + ONE))

    def _step_inputs(self, model_output, timestep, sample):
        """(index of timestep, model output, float32 sample, its sigma) at the start of a step."""
        self._check_ready()
        index = self._current_index(timestep)
        return index, as_latents(model_output), float32_sample(sample), self.sigmas[index]

    def _pred_original(self, model_output, sample, sigma, sigma_hat):
        kind = self._config["prediction_type"]
        if kind in ("sample", "original_sample"):
            return model_output
        if kind == "epsilon":
            return sample - scalar(sigma_hat) * model_output
        # v_prediction
        return model_output * scalar(-sigma / np.sqrt(sigma * sigma + ONE)) + sample / scalar(sigma * sigma + ONE)


class EulerDiscreteScheduler(_SigmaScheduler):
    """diffusers' EulerDiscreteScheduler (s_churn = 0: deterministic): x' = x + (x - x0) / sigma * (sigma' - sigma)."""

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 trained_betas=None, prediction_type="epsilon", interpolation_type="linear",
                 use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False, sigma_min=None,
                 sigma_max=None, timestep_spacing="linspace", timestep_type="discrete", steps_offset=0,
                 rescale_betas_zero_snr=False, final_sigmas_type="zero"):
        super().__init__()
        cfg = dict(locals())
        self._set_config(cfg)
        name = "EulerDiscreteScheduler"
        require(name, "interpolation_type", interpolation_type, ("linear",))
        for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
            require(name, key, bool(cfg[key]), (False,))  # sigma_min / sigma_max only act with these
        require(name, "final_sigmas_type", final_sigmas_type, FINAL_SIGMAS_TYPES)
        require(name, "timestep_type", timestep_type, ("discrete", "continuous"))
        if timestep_type == "continuous" and prediction_type == "v_prediction":
            raise ValueError(f"{name}: timestep_type='continuous' with v_prediction is not supported; "
                             f"use timestep_type='discrete'")
        self._train_tables(cfg)
        self._reset_step_index()

    def _final_sigma(self):
        if self._config["final_sigmas_type"] == "sigma_min":
            return np.sqrt((ONE - self.alphas_cumprod[0]) / self.alphas_cumprod[0])
        return F32(0.0)

    def step(self, model_output, timestep, sample, noise=None):
        index, model_output, sample, sigma = self._step_inputs(model_output, timestep, sample)
        sigma_hat = sigma * F32(0.0 + 1)  # gamma = 0: no churn
        pred_x0 = self._pred_original(model_output, sample, sigma, sigma_hat)
        derivative = (sample - pred_x0) / scalar(sigma_hat)
        dt = self.sigmas[index + 1] - sigma_hat
        prev_sample = sample + derivative * scalar(dt)
        self._step_index += 1
        return prev_sample.astype(model_output.dtype)


class EulerAncestralDiscreteScheduler(_SigmaScheduler):
    """diffusers' EulerAncestralDiscreteScheduler: an Euler step to sigma_down, then noise * sigma_up, where
    sigma_up^2 = sigma'^2 (sigma^2 - sigma'^2) / sigma^2 and sigma_down^2 = sigma'^2 - sigma_up^2. Every step
    (the last too, where sigma_up = 0) reads `noise`."""

    PREDICTION_TYPES = ("epsilon", "v_prediction")  # diffusers raises for "sample"

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 trained_betas=None, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0,
                 rescale_betas_zero_snr=False):
        super().__init__()
        cfg = dict(locals())
        self._set_config(cfg)
        self._train_tables(cfg)
        self._reset_step_index()

    @property
    def needs_noise(self):
        return True

    def step(self, model_output, timestep, sample, noise=None):
        index, model_output, sample, sigma = self._step_inputs(model_output, timestep, sample)
        pred_x0 = self._pred_original(model_output, sample, sigma, sigma)
        sigma_from, sigma_to = self.sigmas[index], self.sigmas[index + 1]
        sigma_up = np.sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
                           / (sigma_from * sigma_from))
        sigma_down = np.sqrt(sigma_to * sigma_to - sigma_up * sigma_up)
        derivative = (sample - pred_x0) / scalar(sigma)
        dt = sigma_down - sigma
        prev_sample = sample + derivative * scalar(dt)
        prev_sample = prev_sample + self._noise(noise, sample).astype(ms.float32) * scalar(sigma_up)
        self._step_index += 1
        return prev_sample.astype(model_output.dtype)
