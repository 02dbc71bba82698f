"""DDPM ancestral sampling (Ho et al. 2020) with the semantics of diffusers' DDPMScheduler."""
import numpy as np
from mindspore import ops

from latte.diffusion.gaussian import CHANNEL_AXIS
from latte.diffusion.schedulers.base import ONE, F32, TextScheduler, as_latents, require, scalar

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range")
LEARNED_VARIANCE_TYPES = ("learned", "learned_range")
MIN_VARIANCE = F32(1e-20)  # diffusers clamps the posterior variance from below before any log


class DDPMScheduler(TextScheduler):
    """diffusers' DDPMScheduler: the posterior mean of x_{t'} given x_t and the predicted x0, plus noise.

    t' is the next entry of `timesteps` (-1 after the last, with alphas_cumprod 1). Noise is added when t > 0:
    every step reads `noise` except a last step at t = 0.
    variance_type: fixed_small (posterior variance), fixed_small_log (the same through exp(log)), fixed_large
    (beta_t' of the respaced step), learned (the model's variance channels are the variance) or learned_range
    (they interpolate the log variance between the two, v in [-1, 1], as Latte's model was trained; the
    official sample_t2x.py passes learned_range). The learned types need the model's full output: channels
    [:C] the prediction, [C:] the variance values on the channel axis (axis 2 of (B, F, 2C, H, W) latents).
    """

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 trained_betas=None, variance_type="fixed_small", clip_sample=True, prediction_type="epsilon",
                 thresholding=False, dynamic_thresholding_ratio=0.995, clip_sample_range=1.0,
                 sample_max_value=1.0, timestep_spacing="leading", steps_offset=0, rescale_betas_zero_snr=False):
        super().__init__()
        cfg = dict(locals())
        self._set_config(cfg)
        require("DDPMScheduler", "thresholding", thresholding, (False,))
        # diffusers' fixed_large_log would take the square root of log(beta) < 0 in step(): not a sampler.
        require("DDPMScheduler", "variance_type", variance_type, VARIANCE_TYPES)
        self._train_tables(cfg)
        self.variance_type = variance_type

    @property
    def needs_noise(self):
        return True

    def previous_timestep(self, timestep):
        index = np.flatnonzero(self.timesteps == timestep)
        if len(index) == 0:
            raise ValueError(f"DDPMScheduler: timestep {timestep} is not in timesteps {self.timesteps.tolist()}")
        index = int(index[0])
        return int(self.timesteps[index + 1]) if index + 1 < len(self.timesteps) else -1

    def step(self, model_output, timestep, sample, noise=None):
        self._check_ready()
        cfg = self._config
        t = int(timestep)
        prev_t = self.previous_timestep(t)
        sample, model_output = as_latents(sample), as_latents(model_output)
        channels = sample.shape[CHANNEL_AXIS]
        predicted_variance = None
        if self.variance_type in LEARNED_VARIANCE_TYPES:
            if model_output.shape[CHANNEL_AXIS] != 2 * channels:
                raise ValueError(
                    f"DDPMScheduler: variance_type={self.variance_type!r} needs the model's variance channels "
                    f"(model_output with {2 * channels} channels on axis {CHANNEL_AXIS}, got "
                    f"{model_output.shape[CHANNEL_AXIS]}); pass the full output or use variance_type='fixed_small'")
            model_output, predicted_variance = ops.split(model_output, channels, CHANNEL_AXIS)
        elif model_output.shape[CHANNEL_AXIS] != channels:
            raise ValueError(
                f"DDPMScheduler: model_output has {model_output.shape[CHANNEL_AXIS]} channels on axis {CHANNEL_AXIS} "
                f"but the sample {channels}; pass the prediction channels only, or use variance_type='learned_range'")

        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else ONE
        beta_prod_t = ONE - alpha_prod_t
        beta_prod_t_prev = ONE - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = ONE - current_alpha_t

        kind = cfg["prediction_type"]
        if kind == "epsilon":
            pred_x0 = (sample - scalar(np.sqrt(beta_prod_t)) * model_output) / scalar(np.sqrt(alpha_prod_t))
        elif kind == "sample":
            pred_x0 = model_output
        else:  # v_prediction
            pred_x0 = scalar(np.sqrt(alpha_prod_t)) * sample - scalar(np.sqrt(beta_prod_t)) * model_output
        if cfg["clip_sample"]:
            pred_x0 = ops.clamp(pred_x0, -cfg["clip_sample_range"], cfg["clip_sample_range"])

        x0_coeff = (np.sqrt(alpha_prod_t_prev) * current_beta_t) / beta_prod_t
        sample_coeff = np.sqrt(current_alpha_t) * beta_prod_t_prev / beta_prod_t
        prev_sample = scalar(x0_coeff) * pred_x0 + scalar(sample_coeff) * sample
        if t > 0:
            prev_sample = prev_sample + self._noise_term(
                beta_prod_t_prev / beta_prod_t * current_beta_t, current_beta_t, predicted_variance,
                self._noise(noise, sample))
        return prev_sample

    def _noise_term(self, variance, current_beta_t, predicted_variance, noise):
        """diffusers' _get_variance and the scaling of the noise by it (per variance_type)."""
        variance = max(variance, MIN_VARIANCE)
        kind = self.variance_type
        if kind == "fixed_small":
            return scalar(np.sqrt(variance)) * noise
        if kind == "fixed_small_log":
            return scalar(np.exp(F32(0.5) * np.log(variance))) * noise
        if kind == "fixed_large":
            return scalar(np.sqrt(current_beta_t)) * noise
        if kind == "learned":
            return ops.sqrt(predicted_variance) * noise
        min_log, max_log = np.log(variance), np.log(current_beta_t)  # learned_range
        frac = (predicted_variance + 1) / 2
        log_variance = frac * scalar(max_log) + (1 - frac) * scalar(min_log)
        return ops.exp(0.5 * log_variance) * noise
