"""DDIM (Song et al. 2021) with the semantics of diffusers' DDIMScheduler: the scheduler of Latte-1's folder."""
import numpy as np
from mindspore import ops

from latte.diffusion.schedulers.base import F32, ONE, TextScheduler, as_latents, require, scalar


class DDIMScheduler(TextScheduler):
    """diffusers' DDIMScheduler: x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z.

    The previous timestep is t - num_train_timesteps // n (whatever the spacing), and below 0 takes
    alphas_cumprod[0] (set_alpha_to_one False, Latte-1) or 1. eta (a sampling option: diffusers' step(eta=...),
    0 in LattePipeline) scales sigma = eta * sqrt((1 - abar_t') / (1 - abar_t) * (1 - abar_t / abar_t')); with
    eta > 0 every step reads `noise`.
    """

    RUN_OPTIONS = ("eta",)

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 trained_betas=None, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
                 prediction_type="epsilon", thresholding=False, dynamic_thresholding_ratio=0.995,
                 clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
                 rescale_betas_zero_snr=False, eta=0.0):
        super().__init__()
        cfg = dict(locals())
        self._set_config(cfg)
        require("DDIMScheduler", "thresholding", thresholding, (False,))
        self._train_tables(cfg)
        self.final_alpha_cumprod = ONE if set_alpha_to_one else self.alphas_cumprod[0]
        if float(eta) < 0:
            raise ValueError(f"eta={eta}: use eta >= 0 (0 is deterministic DDIM, 1 DDPM-like)")
        self.eta = float(eta)

    @property
    def needs_noise(self):
        return self.eta > 0

    def _alpha_prod(self, timestep):
        return self.alphas_cumprod[timestep] if timestep >= 0 else self.final_alpha_cumprod

    def step(self, model_output, timestep, sample, noise=None):
        self._check_ready()
        cfg = self._config
        timestep = int(timestep)
        prev_timestep = timestep - cfg["num_train_timesteps"] // self.num_inference_steps
        alpha_prod_t = self._alpha_prod(timestep)
        alpha_prod_t_prev = self._alpha_prod(prev_timestep)
        beta_prod_t = ONE - alpha_prod_t
        sample, model_output = as_latents(sample), as_latents(model_output)

        kind = cfg["prediction_type"]
        if kind == "epsilon":
            pred_x0 = (sample - scalar(np.sqrt(beta_prod_t)) * model_output) / scalar(np.sqrt(alpha_prod_t))
            pred_eps = model_output
        elif kind == "sample":
            pred_x0 = model_output
            pred_eps = (sample - scalar(np.sqrt(alpha_prod_t)) * pred_x0) / scalar(np.sqrt(beta_prod_t))
        else:  # v_prediction
            pred_x0 = scalar(np.sqrt(alpha_prod_t)) * sample - scalar(np.sqrt(beta_prod_t)) * model_output
            pred_eps = scalar(np.sqrt(alpha_prod_t)) * model_output + scalar(np.sqrt(beta_prod_t)) * sample
        if cfg["clip_sample"]:
            pred_x0 = ops.clamp(pred_x0, -cfg["clip_sample_range"], cfg["clip_sample_range"])

        beta_prod_t_prev = ONE - alpha_prod_t_prev
        variance = (beta_prod_t_prev / beta_prod_t) * (ONE - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = F32(self.eta) * np.sqrt(variance)
        direction = scalar(np.sqrt(ONE - alpha_prod_t_prev - std_dev_t * std_dev_t)) * pred_eps
        prev_sample = scalar(np.sqrt(alpha_prod_t_prev)) * pred_x0 + direction
        if self.eta > 0:
            prev_sample = prev_sample + scalar(std_dev_t) * self._noise(noise, sample)
        return prev_sample
