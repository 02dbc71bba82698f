"""The denoising loop of a text-to-video scheduler (latte.diffusion.schedulers), generic over the denoiser.

The loop of diffusers' pipelines: set_timesteps, scale the starting noise by init_noise_sigma, then per timestep
scale_model_input -> denoiser -> step. The noise the stochastic schedulers add each step comes from a numpy
generator seeded from `seed` (stream SCHEDULER_NOISE), so the same seed gives the same samples.
"""
import time

import numpy as np
import mindspore as ms
from mindspore import Tensor

from latte.diffusion.schedulers.base import as_latents
from latte.env import progress as progress_bar
from latte.random_streams import Stream


def step_noise_generator(seed, position=()):
    """The numpy generator of the loop's per-step noise for `seed` (and what the loop samples: `position`, e.g.
    sample.py's (prompt, sample) indices, so each video gets its own noise)."""
    return np.random.default_rng([int(seed), Stream.SCHEDULER_NOISE, *map(int, position)])


def draw_step_noise(rng, shape):
    """One step's standard normal noise (float32 numpy array of `shape`) from the loop's generator."""
    return rng.standard_normal(tuple(shape), dtype=np.float32)


def timestep_batch(timestep, batch):
    """The model's timestep input: (batch,) int32 for integer timesteps, float32 for Euler's fractional ones."""
    dtype = np.int32 if np.issubdtype(np.asarray(timestep).dtype, np.integer) else np.float32
    return Tensor(np.full((batch,), timestep, dtype=dtype))


def scheduler_sample_loop(denoiser, latents, scheduler, num_inference_steps, seed=0, progress=True,
                          step_times=None, desc=None, noise_position=()):
    """Denoise `latents` with `scheduler` in num_inference_steps steps; returns the final latents (Tensor).

    Args:
        denoiser: callable (x, t) -> model output for scheduler.step (the noise prediction; for DDPM with a
            learned variance type, the full 2C-channel output). x: the scaled model input, shaped like latents;
            t: (B,) Tensor (see timestep_batch). Guidance, if any, lives inside the denoiser.
        latents: unit-variance starting noise (Tensor or array), e.g. (B, F, C, H, W); it is multiplied by
            scheduler.init_noise_sigma, as diffusers' prepare_latents does.
        seed: seed of the per-step noise (read only by schedulers whose needs_noise is True); noise_position:
            ints that tell this loop's noise apart from other loops of the same seed (step_noise_generator).
        step_times: a list that receives each step's wall time in seconds (waits for each step to finish).
    """
    scheduler.set_timesteps(num_inference_steps)
    rng = step_noise_generator(seed, noise_position)
    x = as_latents(latents).astype(ms.float32) * float(scheduler.init_noise_sigma)
    name = desc or f"{type(scheduler).__name__} sampling"
    for t in progress_bar(scheduler.timesteps, total=len(scheduler.timesteps), disable=not progress, desc=name):
        started = time.perf_counter()
        model_input = scheduler.scale_model_input(x, t)
        model_output = denoiser(model_input, timestep_batch(t, x.shape[0]))
        noise = draw_step_noise(rng, x.shape) if scheduler.needs_noise else None
        x = scheduler.step(model_output, t, x, noise=noise)
        if step_times is not None:
            x.asnumpy()  # wait for the step before reading the clock
            step_times.append(time.perf_counter() - started)
    return x
