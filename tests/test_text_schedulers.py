"""Text-to-video schedulers (latte.diffusion.schedulers) against diffusers' scheduler classes.

Timestep tables (50 and 6 steps, every spacing) equal diffusers'; whole sampling loops with a fixed model function
(the same numpy function on both sides) end within 1e-5 relative L2 of diffusers' loops, with the same injected
noise for the stochastic schedulers; config reading accepts what diffusers' from_config does with Latte-1's DDIM
config and refuses what this port does not implement.
"""
import numpy as np
import pytest
from mindspore import Tensor

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from diffusers.schedulers import (scheduling_ddim, scheduling_ddpm, scheduling_dpmsolver_multistep,  # noqa: E402
                                  scheduling_euler_ancestral_discrete, scheduling_euler_discrete)

from latte.diffusion.scheduler_loop import (draw_step_noise, scheduler_sample_loop,  # noqa: E402
                                            step_noise_generator)
from latte.diffusion.schedulers import (OFFICIAL_SAMPLE_METHODS, TEXT_SCHEDULERS,  # noqa: E402
                                        create_text_scheduler)

# Latte-1's scheduler/scheduler_config.json (a diffusers DDIM config), with its file metadata.
LATTE1_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.28.0", "beta_end": 0.02, "beta_schedule": "linear",
    "beta_start": 0.0001, "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None,
}
# The keyword arguments the official sample_t2x.py adds (configs/t2x/t2v_sample.yaml).
OFFICIAL_KWARGS = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "variance_type": "learned_range"}

DIFFUSERS = {
    "ddim": scheduling_ddim.DDIMScheduler,
    "ddpm": scheduling_ddpm.DDPMScheduler,
    "euler": scheduling_euler_discrete.EulerDiscreteScheduler,
    "euler_ancestral": scheduling_euler_ancestral_discrete.EulerAncestralDiscreteScheduler,
    "dpmsolver++": scheduling_dpmsolver_multistep.DPMSolverMultistepScheduler,
}
DIFFUSERS_MODULES = {
    "ddim": scheduling_ddim, "ddpm": scheduling_ddpm, "euler": scheduling_euler_discrete,
    "euler_ancestral": scheduling_euler_ancestral_discrete, "dpmsolver++": scheduling_dpmsolver_multistep,
}
SHAPE = (2, 3, 4, 4, 4)  # (B, F, C, H, W); diffusers' pipelines hold (B, C, F, H, W)
CHANNELS = SHAPE[2]
LOOP_STEPS = 7
PARITY = 1e-5  # relative L2 of the final latents


def to_diffusers_layout(x):
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))  # (B, F, C, H, W) <-> (B, C, F, H, W)


class ModelFunction:
    """A fixed smooth 'denoiser' in numpy on (B, F, C, H, W): per-pixel channel mixing, a timestep term, tanh.

    out_channels 2C appends variance values in [-1, 1] (a learned-sigma model's output).
    """

    def __init__(self, out_channels=CHANNELS, seed=0):
        rng = np.random.default_rng(seed)
        self.weight = rng.normal(0, 0.6, (CHANNELS, out_channels)).astype(np.float32)
        self.bias = rng.normal(0, 0.3, (out_channels,)).astype(np.float32)
        self.t_gain = rng.normal(0, 1.0, (out_channels,)).astype(np.float32)

    def __call__(self, x, t):
        t = np.float32(np.asarray(t).reshape(-1)[0]) / np.float32(1000)
        h = np.einsum("bfchw,co->bfohw", x, self.weight)  # (B, F, C, H, W) -> (B, F, O, H, W)
        h = h + (self.bias + self.t_gain * t).reshape(1, 1, -1, 1, 1)
        return np.tanh(h).astype(np.float32)


def ours_denoiser(model):
    return lambda x, t: Tensor(model(x.asnumpy(), t.asnumpy()))


def diffusers_loop(name, config, steps, model, latents, seed, monkeypatch, **overrides):
    """diffusers' pipeline loop (set_timesteps, init_noise_sigma, scale_model_input, step) with the noise our
    loop draws for `seed` fed through randn_tensor."""
    rng = step_noise_generator(seed)

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        ours = draw_step_noise(rng, (shape[0], shape[2], shape[1], *shape[3:]))  # diffusers' shape -> ours
        return torch.from_numpy(to_diffusers_layout(ours)).to(dtype)

    monkeypatch.setattr(DIFFUSERS_MODULES[name], "randn_tensor", randn_tensor)
    eta = overrides.pop("eta", 0.0)
    scheduler = DIFFUSERS[name].from_config(config, **overrides)
    scheduler.set_timesteps(steps)
    x = torch.from_numpy(to_diffusers_layout(latents)) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t).numpy()
        out = model(to_diffusers_layout(model_input), t.numpy())
        kwargs = {"eta": eta} if name == "ddim" else {}
        x = scheduler.step(torch.from_numpy(to_diffusers_layout(out)), t, x, **kwargs).prev_sample
    return to_diffusers_layout(x.numpy())


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


LOOP_CASES = {
    # Latte-1's DDIM config (leading spacing, steps_offset 1, set_alpha_to_one False)
    "ddim latte-1": ("ddim", {}),
    "ddim eta=0.5 trailing": ("ddim", {"eta": 0.5, "timestep_spacing": "trailing"}),
    # the official variance_type for DDPM, with the model's variance channels
    "ddpm learned_range": ("ddpm", {"variance_type": "learned_range"}),
    "ddpm fixed_small linspace": ("ddpm", {"timestep_spacing": "linspace"}),
    "euler latte-1 (leading)": ("euler", {}),
    "euler linspace (fractional t)": ("euler", {"timestep_spacing": "linspace"}),
    "euler_ancestral latte-1": ("euler_ancestral", {}),
    "dpmsolver++ order 2 latte-1": ("dpmsolver++", {}),
    "dpmsolver++ heun linspace": ("dpmsolver++", {"solver_type": "heun", "timestep_spacing": "linspace"}),
}


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_sampling_loop_matches_diffusers(case, monkeypatch):
    name, overrides = LOOP_CASES[case]
    learned = overrides.get("variance_type") == "learned_range"
    model = ModelFunction(out_channels=2 * CHANNELS if learned else CHANNELS)
    latents = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    seed = 3

    scheduler = create_text_scheduler(name, LATTE1_SCHEDULER_CONFIG, **overrides)
    ours = scheduler_sample_loop(ours_denoiser(model), Tensor(latents), scheduler, LOOP_STEPS, seed=seed,
                                 progress=False).asnumpy()
    reference = diffusers_loop(name, LATTE1_SCHEDULER_CONFIG, LOOP_STEPS, model, latents, seed, monkeypatch,
                               **dict(overrides))
    error = rel_l2(ours, reference)
    print(f"{case}: relative L2 {error:.2e}, max abs {np.abs(ours - reference).max():.2e}")
    assert np.isfinite(ours).all()
    assert error <= PARITY, f"{case}: relative L2 {error:.2e} > {PARITY}"


@pytest.mark.parametrize("name", sorted(TEXT_SCHEDULERS))
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_and_sigmas_match_diffusers(name, spacing):
    for steps in (50, 6):
        config = dict(LATTE1_SCHEDULER_CONFIG, timestep_spacing=spacing)
        ours = create_text_scheduler(name, config)
        ours.set_timesteps(steps)
        reference = DIFFUSERS[name].from_config(config)
        reference.set_timesteps(steps)
        expected = reference.timesteps.numpy()
        assert ours.timesteps.dtype == expected.dtype, (name, spacing, steps)
        np.testing.assert_array_equal(ours.timesteps, expected, err_msg=f"{name} {spacing} {steps}")
        np.testing.assert_allclose(ours.init_noise_sigma, float(reference.init_noise_sigma), rtol=1e-6)
        if hasattr(reference, "sigmas"):
            np.testing.assert_allclose(ours.sigmas, reference.sigmas.numpy(), rtol=2e-6, atol=0)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_training_tables_match_diffusers(schedule):
    config = dict(LATTE1_SCHEDULER_CONFIG, beta_schedule=schedule, beta_start=0.00085, beta_end=0.012)
    ours = create_text_scheduler("ddim", config)
    reference = DIFFUSERS["ddim"].from_config(config)
    assert ours.betas.dtype == np.float32 and ours.alphas_cumprod.dtype == np.float32
    # float64 ramps rounded once vs torch's float32 linspace arithmetic: one float32 ulp apart (three squared)
    ulps = np.abs(ours.betas.view(np.int32) - reference.betas.numpy().view(np.int32))
    assert ulps.max() <= (3 if schedule == "scaled_linear" else 1), schedule
    np.testing.assert_allclose(ours.alphas_cumprod, reference.alphas_cumprod.numpy(), rtol=2e-6)
    # with the same betas, alphas_cumprod is bit-identical (float64 accumulation, as torch's CPU cumprod)
    same = create_text_scheduler("ddim", dict(config, trained_betas=reference.betas.numpy().tolist()))
    np.testing.assert_array_equal(same.alphas_cumprod, reference.alphas_cumprod.numpy())


def test_official_names_and_arguments():
    """sample_t2x.py's sample_method names select the same classes; its extra from_pretrained keyword arguments
    are accepted where diffusers accepts them (variance_type is a DDPM key: DDIM and Euler ignore it)."""
    for official, name in OFFICIAL_SAMPLE_METHODS.items():
        assert type(create_text_scheduler(official, LATTE1_SCHEDULER_CONFIG)) is TEXT_SCHEDULERS[name]
    ddim = create_text_scheduler("DDIM", LATTE1_SCHEDULER_CONFIG, clip_sample=False, **OFFICIAL_KWARGS)
    assert ddim.config["steps_offset"] == 1 and ddim.config["set_alpha_to_one"] is False
    euler = create_text_scheduler("EulerDiscrete", LATTE1_SCHEDULER_CONFIG, **OFFICIAL_KWARGS)
    assert euler.config["timestep_spacing"] == "leading"
    ddpm = create_text_scheduler("DDPM", LATTE1_SCHEDULER_CONFIG, clip_sample=False, **OFFICIAL_KWARGS)
    assert ddpm.variance_type == "learned_range"


def test_config_errors():
    with pytest.raises(ValueError, match="unknown scheduler config key 'beta_strat'"):
        create_text_scheduler("ddim", dict(LATTE1_SCHEDULER_CONFIG, beta_strat=0.001))
    with pytest.raises(ValueError, match="unknown scheduler config key 'eta'"):  # a sampling option, not config
        create_text_scheduler("ddim", dict(LATTE1_SCHEDULER_CONFIG, eta=0.5))
    with pytest.raises(ValueError, match="thresholding=True is not supported"):
        create_text_scheduler("ddim", dict(LATTE1_SCHEDULER_CONFIG, thresholding=True))
    with pytest.raises(ValueError, match="use_karras_sigmas=True is not supported"):
        create_text_scheduler("euler", LATTE1_SCHEDULER_CONFIG, use_karras_sigmas=True)
    with pytest.raises(ValueError, match="algorithm_type='sde-dpmsolver\\+\\+' is not supported"):
        create_text_scheduler("dpmsolver++", LATTE1_SCHEDULER_CONFIG, algorithm_type="sde-dpmsolver++")
    # diffusers keeps model_output[:, :3] for a learned variance here (and fails on 4 latent channels)
    with pytest.raises(ValueError, match="variance_type='learned_range' is not supported"):
        create_text_scheduler("DPMSolverMultistep", LATTE1_SCHEDULER_CONFIG, **OFFICIAL_KWARGS)
    with pytest.raises(ValueError, match="scheduler 'heun' is not known"):
        create_text_scheduler("heun", LATTE1_SCHEDULER_CONFIG)

    ddpm = create_text_scheduler("ddpm", LATTE1_SCHEDULER_CONFIG, variance_type="learned_range")
    ddpm.set_timesteps(4)
    x = Tensor(np.zeros(SHAPE, np.float32))
    with pytest.raises(ValueError, match="needs the model's variance channels"):
        ddpm.step(x, ddpm.timesteps[0], x, noise=np.zeros(SHAPE, np.float32))
    ancestral = create_text_scheduler("euler_ancestral", LATTE1_SCHEDULER_CONFIG)
    ancestral.set_timesteps(4)
    with pytest.raises(ValueError, match="needs noise="):
        ancestral.step(x, ancestral.timesteps[0], x)


def test_loop_noise_is_seeded():
    """The stochastic schedulers' samples depend on the seed only; the deterministic ones ignore it."""
    model = ModelFunction()
    latents = Tensor(np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32))

    def run(name, seed, **overrides):
        scheduler = create_text_scheduler(name, LATTE1_SCHEDULER_CONFIG, **overrides)
        return scheduler_sample_loop(ours_denoiser(model), latents, scheduler, 4, seed=seed,
                                     progress=False).asnumpy()

    np.testing.assert_array_equal(run("euler_ancestral", 5), run("euler_ancestral", 5))
    assert not np.allclose(run("euler_ancestral", 5), run("euler_ancestral", 6))
    assert not np.allclose(run("ddim", 5, eta=1.0), run("ddim", 6, eta=1.0))
    np.testing.assert_array_equal(run("dpmsolver++", 5), run("dpmsolver++", 6))
