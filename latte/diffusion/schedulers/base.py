"""What the text-to-video schedulers share: reading a diffusers scheduler config, the beta schedules, the
timestep spacings, and the float32 scalar and MindSpore tensor helpers of the step arithmetic.

Coefficients are numpy float32 scalars computed with the expressions (and dtypes) of diffusers' torch code, so a
step here rounds as diffusers' does: betas and alphas_cumprod as diffusers builds them (float32; the cumulative
product accumulated in float64 as torch does on CPU), `x ** 0.5` as np.sqrt (torch computes a 0.5 power with
sqrt). The latents are MindSpore Tensors; a step multiplies them by those scalars as float32.
"""
import inspect

import numpy as np
import mindspore as ms
from mindspore import Tensor

from latte.diffusion.schedules import cosine_betas

F32 = np.float32
ONE = F32(1.0)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
# Keys of a diffusers scheduler_config.json that only describe the file (diffusers' own bookkeeping).
METADATA_PREFIX = "_"  # _class_name, _diffusers_version, _use_default_values


def diffusers_betas(beta_schedule, beta_start, beta_end, num_train_timesteps, trained_betas=None):
    """float32 betas (num_train_timesteps,) of a diffusers beta_schedule (or the given trained_betas).

    The linear ramps are evaluated in float64 and rounded once to float32; torch.linspace(dtype=float32) rounds
    its own float32 arithmetic, so single entries may differ from diffusers' by one float32 ulp.
    """
    if trained_betas is not None:
        return np.asarray(trained_betas, dtype=F32)
    if beta_schedule == "linear":
        return np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64).astype(F32)
    if beta_schedule == "scaled_linear":
        ramp = np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=np.float64).astype(F32)
        return ramp * ramp
    if beta_schedule == "squaredcos_cap_v2":
        return cosine_betas(num_train_timesteps).astype(F32)  # diffusers' betas_for_alpha_bar: the same formula
    raise ValueError(f"beta_schedule={beta_schedule!r} is not supported; use one of {BETA_SCHEDULES}")


def alphas_cumprod_of(betas):
    """float32 cumulative product of 1 - betas, accumulated in float64 as torch.cumprod does on CPU."""
    return np.cumprod((ONE - betas).astype(np.float64)).astype(F32)


def spaced_timesteps(spacing, num_train_timesteps, num_inference_steps, steps_offset):
    """Descending float64 timesteps of diffusers' DDIM/DDPM/Euler set_timesteps for a timestep_spacing.

    leading: multiples of num_train // n, plus steps_offset; trailing: round(T, T - T/n, ...) - 1; linspace:
    n evenly spaced points of [0, T - 1], NOT rounded (the integer schedulers round them, Euler keeps fractions).
    """
    n = int(num_inference_steps)
    if not 1 <= n <= num_train_timesteps:
        raise ValueError(f"num_inference_steps={num_inference_steps}: use 1..{num_train_timesteps} "
                         f"(num_train_timesteps of the scheduler config)")
    if spacing == "linspace":
        return np.linspace(0, num_train_timesteps - 1, n)[::-1].copy()
    if spacing == "leading":
        return (np.arange(0, n) * (num_train_timesteps // n)).round()[::-1] + steps_offset
    if spacing == "trailing":
        return np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / n)) - 1
    raise ValueError(f"timestep_spacing={spacing!r} is not supported; use one of {TIMESTEP_SPACINGS}")


def require(owner, key, value, allowed):
    """A one-line error unless `value` is one of `allowed` (values this port implements for `key`)."""
    if value not in allowed:
        raise ValueError(f"{owner}: {key}={value!r} is not supported; use one of {list(allowed)} "
                         f"(or remove {key} from the scheduler config)")


def as_latents(x):
    """A MindSpore float Tensor of x (a Tensor or an array)."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=F32))


def scalar(value):
    """A float32 coefficient as the Python float MindSpore multiplies float32 tensors by (exact)."""
    return float(F32(value))


class TextScheduler:
    """Base of the schedulers: config keys are the keyword arguments of the subclass __init__.

    Subclasses set `timesteps` (numpy, descending) and `num_inference_steps` in set_timesteps, and implement
    step(model_output, timestep, sample, noise=None) -> the previous sample (MindSpore Tensor).
    `needs_noise` says whether step() reads `noise` (a standard normal array/Tensor shaped like the sample).
    """

    order = 1
    PREDICTION_TYPES = PREDICTION_TYPES
    # Constructor arguments that are sampling options, never read from a scheduler config file.
    RUN_OPTIONS = ()

    def __init__(self):
        self.timesteps = None
        self.num_inference_steps = None

    # --- configuration ---
    @classmethod
    def config_keys(cls):
        params = inspect.signature(cls.__init__).parameters
        return tuple(name for name in params if name != "self" and name not in cls.RUN_OPTIONS)

    @classmethod
    def from_config(cls, config, **overrides):
        """The scheduler of a diffusers scheduler config (a dict, e.g. a parsed scheduler_config.json).

        `overrides` (config keys, or sampling options such as DDIM's eta) win over the file, as keyword
        arguments of diffusers' from_pretrained do. Keys starting with "_" are file metadata; any other key this
        class does not take is an error (create_text_scheduler first drops the keys of the other schedulers, as
        diffusers ignores them).
        """
        own = set(cls.config_keys())
        kwargs = {}
        for key, value in dict(config).items():
            if key.startswith(METADATA_PREFIX):
                continue
            if key not in own:
                raise ValueError(f"{cls.__name__}: unknown scheduler config key {key!r}; valid keys are "
                                 f"{sorted(own)} (remove it from the config)")
            kwargs[key] = value
        for key, value in overrides.items():
            if key not in own and key not in cls.RUN_OPTIONS:
                raise ValueError(f"{cls.__name__}: unknown scheduler argument {key!r}; valid ones are "
                                 f"{sorted(own | set(cls.RUN_OPTIONS))}")
            kwargs[key] = value
        return cls(**kwargs)

    @property
    def config(self):
        """The resolved config (every key of the class, defaults filled in), as diffusers' scheduler.config."""
        return dict(self._config)

    def _set_config(self, values):
        self._config = {key: values[key] for key in self.config_keys()}

    # --- shared schedule pieces ---
    def _train_tables(self, cfg):
        require(type(self).__name__, "beta_schedule", cfg["beta_schedule"], BETA_SCHEDULES)
        require(type(self).__name__, "prediction_type", cfg["prediction_type"], self.PREDICTION_TYPES)
        require(type(self).__name__, "timestep_spacing", cfg["timestep_spacing"], TIMESTEP_SPACINGS)
        require(type(self).__name__, "rescale_betas_zero_snr", cfg["rescale_betas_zero_snr"], (False,))
        self.betas = diffusers_betas(cfg["beta_schedule"], cfg["beta_start"], cfg["beta_end"],
                                     cfg["num_train_timesteps"], cfg["trained_betas"])
        self.alphas_cumprod = alphas_cumprod_of(self.betas)

    def set_timesteps(self, num_inference_steps):
        """Integer timesteps of the config's spacing (DDIM, DDPM; the sigma schedulers override this)."""
        cfg = self._config
        t = spaced_timesteps(cfg["timestep_spacing"], cfg["num_train_timesteps"], num_inference_steps,
                             cfg["steps_offset"])
        self.timesteps = np.round(t).astype(np.int64)
        self.num_inference_steps = int(num_inference_steps)

    @property
    def needs_noise(self):
        return False

    @property
    def init_noise_sigma(self):
        return 1.0

    def scale_model_input(self, sample, timestep):
        return sample

    def _check_ready(self):
        if self.timesteps is None:
            raise ValueError(f"{type(self).__name__}: call set_timesteps(num_inference_steps) before step()")

    def _noise(self, noise, like):
        if noise is None:
            raise ValueError(f"{type(self).__name__}.step needs noise=<standard normal latents>: this scheduler "
                             f"draws fresh noise every step (the sampling loop passes it from a seeded generator)")
        noise = as_latents(noise)
        if tuple(noise.shape) != tuple(like.shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)} but the sample has {tuple(like.shape)}")
        return noise.astype(like.dtype)


class SigmaIndexMixin:
    """diffusers' step_index bookkeeping of the sigma schedulers (Euler, DPM-Solver): the index of the first
    step is looked up from its timestep (the second match when a timestep repeats), then counts up."""

    def _reset_step_index(self):
        self._step_index = None

    def _lookup_step_index(self, timestep):
        matches = np.flatnonzero(self.timesteps == timestep)
        if len(matches) == 0:
            return self._missing_timestep_index(timestep)
        return int(matches[1] if len(matches) > 1 else matches[0])

    def _missing_timestep_index(self, timestep):
        raise ValueError(f"{type(self).__name__}: timestep {timestep!r} is not in this scheduler's timesteps "
                         f"{self.timesteps.tolist()}")

    @property
    def step_index(self):
        return self._step_index

    def _current_index(self, timestep):
        if self._step_index is None:
            self._step_index = self._lookup_step_index(timestep)
        return self._step_index


def float32_sample(sample):
    """The sample as float32 (diffusers' Euler / DPM-Solver steps compute in float32)."""
    return as_latents(sample).astype(ms.float32)
