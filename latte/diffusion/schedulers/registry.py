"""The table of text-to-video schedulers, by name, and the official sample_t2x.py's names for them."""
import functools

from latte.diffusion.schedulers.ddim import DDIMScheduler
from latte.diffusion.schedulers.ddpm import DDPMScheduler
from latte.diffusion.schedulers.dpm_solver import DPMSolverMultistepScheduler
from latte.diffusion.schedulers.euler import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

TEXT_SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
}
# The official sample/sample_t2x.py's `sample_method` values (configs/t2x/*.yaml) for the same schedulers.
OFFICIAL_SAMPLE_METHODS = {
    "DDIM": "ddim",
    "DDPM": "ddpm",
    "EulerDiscrete": "euler",
    "EulerAncestralDiscrete": "euler_ancestral",
    "DPMSolverMultistep": "dpmsolver++",
}
# maxin-cn/Latte-1 scheduler/scheduler_config.json without its file metadata: the DDIM config every scheduler is
# built from when no other config is given (as sample_t2x.py builds them all from it).
LATTE1_SCHEDULER_CONFIG = {
    "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": False,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False, "steps_offset": 1,
    "timestep_spacing": "leading", "trained_betas": None,
}
SCHEDULER_NAMES = tuple(TEXT_SCHEDULERS) + tuple(OFFICIAL_SAMPLE_METHODS)  # every name scheduler_class takes
# Config keys that diffusers' other schedulers write (a pipeline folder's scheduler_config.json may come from
# any of them); besides the keys of the schedulers above, PNDM's, which Stable-Diffusion-style folders carry.
OTHER_DIFFUSERS_SCHEDULER_KEYS = frozenset({"skip_prk_steps"})


def scheduler_class(name):
    """The scheduler class of a table name or an official sample_method name."""
    key = OFFICIAL_SAMPLE_METHODS.get(name, name)
    if key not in TEXT_SCHEDULERS:
        raise ValueError(f"scheduler {name!r} is not known; use one of {sorted(TEXT_SCHEDULERS)} "
                         f"(or the official names {sorted(OFFICIAL_SAMPLE_METHODS)})")
    return TEXT_SCHEDULERS[key]


def create_text_scheduler(name, config=None, **overrides):
    """Scheduler `name` from a diffusers scheduler config dict (e.g. Latte-1's scheduler/scheduler_config.json,
    a DDIM config, also for the other schedulers, as sample_t2x.py's from_pretrained does), with overrides."""
    cls = scheduler_class(name)
    others = sibling_config_keys() - set(cls.config_keys()) - set(cls.RUN_OPTIONS)  # e.g. DDIM's keys for Euler
    config = {key: value for key, value in (config or {}).items() if key not in others}
    overrides = {key: value for key, value in overrides.items() if key not in others}
    return cls.from_config(config, **overrides)


@functools.lru_cache(maxsize=None)
def sibling_config_keys():
    """Every config key of any scheduler in the table (a key one scheduler ignores when another owns it)."""
    keys = set(OTHER_DIFFUSERS_SCHEDULER_KEYS)
    for cls in TEXT_SCHEDULERS.values():
        keys.update(cls.config_keys())
    return frozenset(keys)
