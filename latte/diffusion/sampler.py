"""Sampling loops whose per-step work (model call, guidance, update) is ONE compiled graph reused every step.

The step Cell takes (x, t, noise, y) as Tensor inputs; the schedule coefficients are graph constants gathered at
t inside the graph, so a loop of any length compiles once (per shape and y-is-None). Step cells are cached on the
diffusion, keyed by model and settings, so later loops with the same model do not compile again.
Per-step noise comes from a seeded numpy generator: the same seed gives the same samples.
"""
import gc
import time

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.diffusion.guidance import CFGDenoiser, guidance_enabled
from latte.env import progress as progress_bar

SAMPLE_METHODS = ("ddpm", "ddim")


class DenoiseStep(nn.Cell):
    """One reverse step of `diffusion` with `denoiser` (a Cell: construct(x, t, y)), compiled as one graph.

    construct(x, t, noise, y) -> (x_prev, pred_xstart); t: (B,) int32 respaced indices, noise like x.
    """

    def __init__(self, diffusion, denoiser, method, clip_denoised, eta):
        super().__init__()
        if method not in SAMPLE_METHODS:
            raise ValueError(f"method={method!r}: use one of {SAMPLE_METHODS}")
        if method == "ddpm" and eta != 0.0:
            raise ValueError(f"eta={eta} only applies to method='ddim'")
        self.diffusion = diffusion
        self.denoiser = denoiser
        self.use_ddim = method == "ddim"
        self.clip_denoised = bool(clip_denoised)
        self.eta = float(eta)

    @ms.jit
    def construct(self, x, t, noise, y=None):
        if self.use_ddim:
            out = self.diffusion.ddim_sample(self.denoiser, x, t, noise, y, self.clip_denoised, self.eta)
        else:
            out = self.diffusion.p_sample(self.denoiser, x, t, noise, y, self.clip_denoised)
        return out["sample"], out["pred_xstart"]


def denoise_step(diffusion, model, method, clip_denoised=False, eta=0.0, cfg_scale=1.0):
    """The cached DenoiseStep of (diffusion, model, settings); guidance wraps model in CFGDenoiser."""
    cfg = float(cfg_scale) if guidance_enabled(cfg_scale) else None
    key = (id(model), method, bool(clip_denoised), float(eta), cfg)
    if key not in diffusion._step_cells:  # the cached cell holds the model, so its id stays unique
        denoiser = CFGDenoiser(model, cfg) if cfg is not None else model
        diffusion._step_cells[key] = DenoiseStep(diffusion, denoiser, method, clip_denoised, eta)
    return diffusion._step_cells[key]


def _float_tensor(value, shape, name):
    value = value if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=np.float32))
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(value.shape)} but shape={tuple(shape)}")
    return value.astype(ms.float32)


def sample_loop(diffusion, model, shape, method="ddpm", noise=None, y=None, cfg_scale=1.0, clip_denoised=False,
                eta=0.0, progress=True, return_trajectory=False, seed=None, step_times=None, resample_rounds=1):
    """Run all steps of `diffusion` backwards from noise, with a tqdm bar over steps.

    Args:
        model: Cell with construct(x, t, y) -> (B, F, 2C, H, W) (or (B, F, C, H, W) for a fixed variance).
        shape: (B, F, C, H, W) of the latents (with guidance: the doubled batch, see guidance.duplicate_for_cfg).
        noise: starting x_T (Tensor or array of `shape`); drawn from the seeded generator if None.
        y: labels (B,) int32 (Tensor or array), or None for an unconditional model.
        cfg_scale: > 1 samples with classifier-free guidance through model.construct_with_cfg.
        clip_denoised: clamp x_0 predictions to [-1, 1] (the official sample.py uses False).
        eta: DDIM stochasticity (method "ddim" only).
        seed: numpy seed of the starting noise (when not given) and of the per-step noise.
        step_times: a list that receives each step's wall time in seconds (the first includes the compile);
            timing waits for every step to finish, which costs a little overlap.
        resample_rounds: times each step t -> t-1 is taken (RePaint's resampling, Lugmayr et al. 2022, with jump
            length 1): after a step, every further round noises x_{t-1} back to x_t (diffusion.q_step) and takes
            the step again, so the frames can agree before the noise shrinks. The last step is taken once. 1 is
            the official sampler; with n rounds the model runs about n times as often. Each round draws its
            back-noise, then its step noise, from the seeded generator after the step's own draws.
    Returns:
        x_0 as a float32 Tensor of `shape`, and with return_trajectory also a Tensor (T + 1, *shape) holding
        x_T, x_{T-1}, ..., x_0 (T = number of steps).
    """
    shape = tuple(int(s) for s in shape)
    if resample_rounds < 1:
        raise ValueError(f"resample_rounds={resample_rounds}: use 1 (each step once) or more")
    if y is not None and not isinstance(y, Tensor):
        y = Tensor(np.asarray(y, dtype=np.int32))  # a Python/numpy y would be a graph constant: one compile per y
    if guidance_enabled(cfg_scale) and (y is None or shape[0] % 2):
        raise ValueError(f"cfg_scale={cfg_scale} needs labels y and an even batch [cond | uncond], got "
                         f"batch {shape[0]}, y={'None' if y is None else tuple(y.shape)}")
    step = denoise_step(diffusion, model, method, clip_denoised, eta, cfg_scale)
    # MindSpore 2.10 re-keys a live Cell's compiled graph when another compiled Cell of the same class is freed:
    # if stale step cells of earlier diffusions were collected mid-loop, this step would compile a second time.
    gc.collect()
    rng = np.random.default_rng(seed)
    x = _float_tensor(rng.standard_normal(shape, dtype=np.float32) if noise is None else noise, shape, "noise")
    draws_noise = method == "ddpm" or eta != 0.0
    zeros = ops.zeros(shape, ms.float32)
    trajectory = [x] if return_trajectory else None
    for i in progress_bar(range(diffusion.num_timesteps - 1, -1, -1), total=diffusion.num_timesteps,
                  disable=not progress, desc=f"{method} sampling"):
        t = Tensor(np.full((shape[0],), i, dtype=np.int32))
        started = time.perf_counter()
        for round_ in range(resample_rounds if i > 0 else 1):
            if round_:  # x_{t-1} back to x_t, then the same step again
                x = diffusion.q_step(x, t, Tensor(rng.standard_normal(shape, dtype=np.float32)))
            step_noise = Tensor(rng.standard_normal(shape, dtype=np.float32)) if draws_noise else zeros
            x, _ = step(x, t, step_noise, y)
        if step_times is not None:
            x.asnumpy()  # wait for the step before reading the clock
            step_times.append(time.perf_counter() - started)
        if return_trajectory:
            trajectory.append(x)
    if return_trajectory:
        return x, ops.stack(trajectory)  # T + 1 of (B, F, C, H, W) -> (T + 1, B, F, C, H, W)
    return x
