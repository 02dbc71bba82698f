"""Gaussian diffusion for Latte (DiT / improved DDPM semantics) in MindSpore.

    from latte.diffusion import create_diffusion
    diffusion = create_diffusion(timestep_respacing="250")
    samples = sample_loop(diffusion, model, (1, 16, 4, 32, 32), method="ddpm", seed=0)
"""
from latte.diffusion.factory import create_diffusion
from latte.diffusion.gaussian import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from latte.diffusion.guidance import CFGDenoiser, duplicate_for_cfg, guidance_enabled
from latte.diffusion.respacing import respace_betas, space_timesteps
from latte.diffusion.sampler import DenoiseStep, denoise_step, sample_loop
from latte.diffusion.schedules import ScheduleTables, named_beta_schedule
from latte.diffusion.training_loss import DiffusionLoss

__all__ = [
    "CFGDenoiser", "DenoiseStep", "DiffusionLoss", "GaussianDiffusion", "LossType", "ModelMeanType",
    "ModelVarType", "ScheduleTables", "create_diffusion", "denoise_step", "duplicate_for_cfg",
    "guidance_enabled", "named_beta_schedule", "respace_betas", "sample_loop", "space_timesteps",
]
