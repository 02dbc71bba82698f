"""Text-to-video (Latte-1) schedulers with diffusers' semantics, stepping MindSpore Tensors (no torch).

    from latte.diffusion.schedulers import create_text_scheduler
    scheduler = create_text_scheduler("dpmsolver++", json.load(open("Latte-1/scheduler/scheduler_config.json")))
    scheduler.set_timesteps(50)
    x = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x, noise=None)   # noise: standard normal latents when scheduler.needs_noise

latte.diffusion.scheduler_loop.scheduler_sample_loop runs this loop with seeded noise and a progress bar.
"""
from latte.diffusion.schedulers.base import TextScheduler
from latte.diffusion.schedulers.ddim import DDIMScheduler
from latte.diffusion.schedulers.ddpm import DDPMScheduler
from latte.diffusion.schedulers.dpm_solver import DPMSolverMultistepScheduler
from latte.diffusion.schedulers.euler import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from latte.diffusion.schedulers.registry import (LATTE1_SCHEDULER_CONFIG, OFFICIAL_SAMPLE_METHODS, SCHEDULER_NAMES,
                                                 TEXT_SCHEDULERS, create_text_scheduler, scheduler_class)

__all__ = [
    "DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler", "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler", "LATTE1_SCHEDULER_CONFIG", "OFFICIAL_SAMPLE_METHODS", "SCHEDULER_NAMES",
    "TEXT_SCHEDULERS", "TextScheduler", "create_text_scheduler", "scheduler_class",
]
