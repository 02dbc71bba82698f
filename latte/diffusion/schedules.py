"""Noise schedules (betas) and the float64 coefficient tables derived from them.

Everything here is numpy float64, computed once when a diffusion is built; the per-step code looks the values
up and casts them to the latents' dtype (float32), as the official Latte / DiT / improved-DDPM code does.
"""
import dataclasses
import math

import numpy as np

DEFAULT_DIFFUSION_STEPS = 1000
# Ho et al. (2020) linear schedule, defined at 1000 steps and scaled by 1000 / num_steps for other lengths.
LINEAR_BETA_START = 1e-4
LINEAR_BETA_END = 0.02
LINEAR_REFERENCE_STEPS = 1000
# Nichol & Dhariwal (2021) cosine schedule: alpha_bar(s) = cos((s + offset) / (1 + offset) * pi / 2) ** 2.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999  # betas are capped below 1 to avoid a singularity at the end of the cosine schedule
MIN_STEPS = 2  # the clipped posterior log variance borrows step 1's value for step 0


def linear_betas(num_steps):
    """Linear betas from LINEAR_BETA_START to LINEAR_BETA_END (both scaled by 1000 / num_steps), float64."""
    scale = LINEAR_REFERENCE_STEPS / num_steps
    return np.linspace(scale * LINEAR_BETA_START, scale * LINEAR_BETA_END, num_steps, dtype=np.float64)


def _cosine_alpha_bar(s):
    return math.cos((s + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def cosine_betas(num_steps, max_beta=MAX_BETA):
    """Betas discretizing the cosine alpha_bar: beta_i = 1 - alpha_bar((i+1)/n) / alpha_bar(i/n), capped."""
    betas = [
        min(1 - _cosine_alpha_bar((i + 1) / num_steps) / _cosine_alpha_bar(i / num_steps), max_beta)
        for i in range(num_steps)
    ]
    return np.array(betas, dtype=np.float64)


NOISE_SCHEDULES = {"linear": linear_betas, "squaredcos_cap_v2": cosine_betas}


def named_beta_schedule(name, num_steps):
    """Betas of a named schedule ("linear" or "squaredcos_cap_v2"), float64 of shape (num_steps,)."""
    if name not in NOISE_SCHEDULES:
        raise NotImplementedError(
            f"noise_schedule={name!r} is not implemented; use one of {sorted(NOISE_SCHEDULES)}")
    if int(num_steps) < MIN_STEPS:
        raise ValueError(f"diffusion_steps={num_steps}: need at least {MIN_STEPS} steps")
    return NOISE_SCHEDULES[name](int(num_steps))


@dataclasses.dataclass(frozen=True)
class ScheduleTables:
    """All per-timestep coefficients of a Gaussian diffusion with the given betas (float64, shape (T,)).

    The first block carries the official attribute names; the second holds values the official code derives at
    step time, precomputed here in float64.
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    alphas_cumprod_next: np.ndarray
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    log_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray

    log_betas: np.ndarray  # max log variance of the learned range
    fixed_large_variance: np.ndarray  # betas, with step 0 taking posterior_variance[1]
    fixed_large_log_variance: np.ndarray
    sqrt_alphas_cumprod_prev: np.ndarray
    one_minus_alphas_cumprod_prev: np.ndarray
    ddim_sigma_per_eta: np.ndarray  # DDIM sigma_t / eta

    @classmethod
    def from_betas(cls, betas):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.shape[0] < MIN_STEPS:
            raise ValueError(f"betas must be 1-D with at least {MIN_STEPS} entries, got shape {betas.shape}")
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError(f"betas must lie in (0, 1], got min {betas.min()} max {betas.max()}")
        alphas = 1.0 - betas
        ac = np.cumprod(alphas, axis=0)
        ac_prev = np.append(1.0, ac[:-1])
        posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
        # posterior_variance[0] is 0: its log is clipped by borrowing step 1's value.
        posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
        fixed_large_variance = np.append(posterior_variance[1], betas[1:])
        return cls(
            betas=betas,
            alphas_cumprod=ac,
            alphas_cumprod_prev=ac_prev,
            alphas_cumprod_next=np.append(ac[1:], 0.0),
            sqrt_alphas_cumprod=np.sqrt(ac),
            sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
            log_one_minus_alphas_cumprod=np.log(1.0 - ac),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ac),
            sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ac - 1),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=posterior_log_variance_clipped,
            posterior_mean_coef1=betas * np.sqrt(ac_prev) / (1.0 - ac),
            posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            log_betas=np.log(betas),
            fixed_large_variance=fixed_large_variance,
            fixed_large_log_variance=np.log(fixed_large_variance),
            sqrt_alphas_cumprod_prev=np.sqrt(ac_prev),
            one_minus_alphas_cumprod_prev=1.0 - ac_prev,
            ddim_sigma_per_eta=np.sqrt((1 - ac_prev) / (1 - ac)) * np.sqrt(1 - ac / ac_prev),
        )

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
