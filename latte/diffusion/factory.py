"""create_diffusion: the official entry point (same arguments and defaults as Latte's diffusion/__init__.py)."""
from latte.diffusion.gaussian import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from latte.diffusion.respacing import respace_betas, space_timesteps
from latte.diffusion.schedules import DEFAULT_DIFFUSION_STEPS, ScheduleTables, named_beta_schedule


def create_diffusion(timestep_respacing, noise_schedule="linear", use_kl=False, sigma_small=False,
                     predict_xstart=False, learn_sigma=True, rescale_learned_sigmas=False,
                     diffusion_steps=DEFAULT_DIFFUSION_STEPS):
    """A GaussianDiffusion over `diffusion_steps` training steps, respaced for sampling.

    timestep_respacing: None or "" keeps every step (training); "250" / "10,15,20" / [10, 15, 20] take evenly
    spaced steps per section; "ddim50" takes an integer stride. The official sample.py passes str(steps) for
    both DDPM and DDIM sampling.
    Defaults (Latte): linear betas, eps prediction, learned-range variance, loss = mse + vb.
    """
    betas = named_beta_schedule(noise_schedule, diffusion_steps)
    if use_kl:
        loss_type = LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if sigma_small else ModelVarType.FIXED_LARGE
    base = ScheduleTables.from_betas(betas)
    kept = space_timesteps(len(betas), timestep_respacing)
    respaced_betas, timestep_map = respace_betas(base.alphas_cumprod, kept)
    return GaussianDiffusion(
        respaced_betas,
        model_mean_type=ModelMeanType.START_X if predict_xstart else ModelMeanType.EPSILON,
        model_var_type=var_type,
        loss_type=loss_type,
        timestep_map=timestep_map,
        original_num_steps=len(betas),
    )
