"""DPM-Solver++ multistep (Lu et al. 2022) with the semantics of diffusers' DPMSolverMultistepScheduler
(algorithm_type "dpmsolver++", orders 1 and 2, midpoint or heun second-order update)."""
import numpy as np

from latte.diffusion.schedulers.base import (F32, ONE, SigmaIndexMixin, TextScheduler, TIMESTEP_SPACINGS,
                                             as_latents, float32_sample, require, scalar)

SOLVER_ORDERS = (1, 2)
SOLVER_TYPES = ("midpoint", "heun")
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")
LOWER_ORDER_FINAL_BELOW = 15  # lower_order_final acts only with fewer than 15 steps (diffusers)


def _alpha_sigma(sigma):
    """(alpha_t, sigma_t) of a sigma = sigma_t / alpha_t: alpha_t = 1 / sqrt(sigma^2 + 1), float32."""
    alpha_t = ONE / np.sqrt(sigma * sigma + ONE)
    return alpha_t, sigma * alpha_t


def _lambda(alpha_t, sigma_t):
    """log(alpha_t / sigma_t) as diffusers computes it (+inf at the final sigma 0)."""
    with np.errstate(divide="ignore"):
        return np.log(alpha_t) - np.log(sigma_t)


class DPMSolverMultistepScheduler(SigmaIndexMixin, TextScheduler):
    """diffusers' DPMSolverMultistepScheduler with algorithm_type 'dpmsolver++' (data prediction).

    Each step converts the model output to x0, keeps the last `solver_order` of them, and takes a first-order
    step (the first step, and the last one with final_sigmas_type 'zero' or with lower_order_final below 15 steps)
    or a second-order multistep update. The step state is reset by set_timesteps.
    """

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 trained_betas=None, solver_order=2, prediction_type="epsilon", thresholding=False,
                 dynamic_thresholding_ratio=0.995, sample_max_value=1.0, algorithm_type="dpmsolver++",
                 solver_type="midpoint", lower_order_final=True, euler_at_final=False, use_karras_sigmas=False,
                 use_exponential_sigmas=False, use_beta_sigmas=False, use_lu_lambdas=False, use_flow_sigmas=False,
                 flow_shift=1.0, final_sigmas_type="zero", lambda_min_clipped=-float("inf"), variance_type=None,
                 timestep_spacing="linspace", steps_offset=0, rescale_betas_zero_snr=False,
                 use_dynamic_shifting=False, time_shift_type="exponential"):
        super().__init__()
        cfg = dict(locals())
        self._set_config(cfg)
        name = "DPMSolverMultistepScheduler"
        require(name, "algorithm_type", algorithm_type, ("dpmsolver++",))
        require(name, "solver_order", solver_order, SOLVER_ORDERS)
        require(name, "solver_type", solver_type, SOLVER_TYPES)
        require(name, "thresholding", thresholding, (False,))
        require(name, "final_sigmas_type", final_sigmas_type, FINAL_SIGMAS_TYPES)
        for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas",
                    "use_flow_sigmas", "use_dynamic_shifting"):
            require(name, key, bool(cfg[key]), (False,))  # flow_shift / time_shift_type only act with these
        if variance_type is not None:
            # diffusers keeps model_output[:, :3] (3 pixel channels) here: wrong for 4-channel latents.
            raise ValueError(f"{name}: variance_type={variance_type!r} is not supported; remove it and pass the "
                             f"model's prediction channels (the first C of a learned-sigma output)")
        self._train_tables(cfg)
        alpha_t = np.sqrt(self.alphas_cumprod)
        sigma_t = np.sqrt(ONE - self.alphas_cumprod)
        self.lambda_t = np.log(alpha_t) - np.log(sigma_t)  # float32 (T,)
        self._reset_step_index()
        self.model_outputs = [None] * solver_order
        self.lower_order_nums = 0

    def set_timesteps(self, num_inference_steps):
        cfg = self._config
        n = int(num_inference_steps)
        num_train = cfg["num_train_timesteps"]
        if not 1 <= n <= num_train:
            raise ValueError(f"num_inference_steps={num_inference_steps}: use 1..{num_train}")
        clipped_idx = int(np.searchsorted(self.lambda_t[::-1], F32(cfg["lambda_min_clipped"])))
        last_timestep = num_train - clipped_idx
        spacing = cfg["timestep_spacing"]
        if spacing == "linspace":
            timesteps = np.linspace(0, last_timestep - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif spacing == "leading":
            step_ratio = last_timestep // (n + 1)
            timesteps = (np.arange(0, n + 1) * step_ratio).round()[::-1][:-1].astype(np.int64)
            timesteps += cfg["steps_offset"]
        elif spacing == "trailing":
            timesteps = np.arange(last_timestep, 0, -num_train / n).round().astype(np.int64) - 1
        else:
            raise ValueError(f"timestep_spacing={spacing!r} is not supported; use one of {TIMESTEP_SPACINGS}")
        train_sigmas = np.sqrt((ONE - self.alphas_cumprod) / self.alphas_cumprod)
        sigmas = np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)
        if cfg["final_sigmas_type"] == "sigma_min":
            sigma_last = np.sqrt((ONE - self.alphas_cumprod[0]) / self.alphas_cumprod[0])
        else:
            sigma_last = 0
        self.sigmas = np.concatenate([sigmas, [sigma_last]]).astype(F32)  # (n + 1,)
        self.timesteps = timesteps
        self.num_inference_steps = len(timesteps)
        self.model_outputs = [None] * cfg["solver_order"]
        self.lower_order_nums = 0
        self._reset_step_index()

    def _missing_timestep_index(self, timestep):
        return len(self.timesteps) - 1  # diffusers: an unknown timestep is taken as the last step

    def _to_x0(self, model_output, sample, sigma):
        alpha_t, sigma_t = _alpha_sigma(sigma)
        kind = self._config["prediction_type"]
        if kind == "epsilon":
            return (sample - scalar(sigma_t) * model_output) / scalar(alpha_t)
        if kind == "sample":
            return model_output
        return scalar(alpha_t) * sample - scalar(sigma_t) * model_output  # v_prediction

    def step(self, model_output, timestep, sample, noise=None):
        self._check_ready()
        cfg = self._config
        index = self._current_index(timestep)
        steps = len(self.timesteps)
        few_steps = cfg["lower_order_final"] and steps < LOWER_ORDER_FINAL_BELOW
        lower_order_final = index == steps - 1 and (
            cfg["euler_at_final"] or few_steps or cfg["final_sigmas_type"] == "zero")

        model_output = as_latents(model_output)
        x0 = self._to_x0(model_output, as_latents(sample), self.sigmas[index])
        self.model_outputs = self.model_outputs[1:] + [x0]
        sample = float32_sample(sample)
        if cfg["solver_order"] == 1 or self.lower_order_nums < 1 or lower_order_final:
            prev_sample = self._first_order(x0, sample, index)
        else:  # order 2 (diffusers' lower_order_second only changes order 3)
            prev_sample = self._second_order(self.model_outputs, sample, index)
        if self.lower_order_nums < cfg["solver_order"]:
            self.lower_order_nums += 1
        self._step_index += 1
        return prev_sample.astype(model_output.dtype)

    def _first_order(self, x0, sample, index):
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index + 1])
        alpha_s, sigma_s = _alpha_sigma(self.sigmas[index])
        h = _lambda(alpha_t, sigma_t) - _lambda(alpha_s, sigma_s)
        return scalar(sigma_t / sigma_s) * sample - scalar(alpha_t * (np.exp(-h) - ONE)) * x0

    def _second_order(self, model_outputs, sample, index):
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index + 1])
        alpha_s0, sigma_s0 = _alpha_sigma(self.sigmas[index])
        alpha_s1, sigma_s1 = _alpha_sigma(self.sigmas[index - 1])
        lambda_t, lambda_s0 = _lambda(alpha_t, sigma_t), _lambda(alpha_s0, sigma_s0)
        lambda_s1 = _lambda(alpha_s1, sigma_s1)
        m0, m1 = model_outputs[-1], model_outputs[-2]
        h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        d0, d1 = m0, scalar(ONE / r0) * (m0 - m1)
        exp_term = alpha_t * (np.exp(-h) - ONE)
        x_t = scalar(sigma_t / sigma_s0) * sample - scalar(exp_term) * d0
        if self._config["solver_type"] == "midpoint":
            return x_t - scalar(F32(0.5) * exp_term) * d1
        return x_t + scalar(alpha_t * ((np.exp(-h) - ONE) / h + ONE)) * d1  # heun
