"""Timestep respacing: sample with a subset of the training timesteps (improved DDPM, section 4).

The respaced process keeps alphas_cumprod at the kept steps and recomputes betas from them; the model is always
called with the ORIGINAL timestep index (timestep_map[t]).
"""
import numpy as np

DDIM_PREFIX = "ddim"  # "ddimN": N steps with the integer stride of the DDIM paper


def _parse_section_counts(section_counts, num_timesteps):
    """Section counts as a list of ints, from "250", "10,15,20", 250 or [10, 15, 20]; None/"" keeps every step."""
    if section_counts is None or section_counts == "":
        return [num_timesteps]
    if isinstance(section_counts, str):
        try:
            return [int(c) for c in section_counts.split(",")]
        except ValueError:
            raise ValueError(
                f"timestep_respacing={section_counts!r} is not understood: use a step count like '250', "
                f"comma-separated counts like '10,15,20', or '{DDIM_PREFIX}N'") from None
    if isinstance(section_counts, (int, np.integer)):
        return [int(section_counts)]
    return [int(c) for c in section_counts]


def _ddim_timesteps(num_timesteps, spec):
    try:
        desired = int(spec[len(DDIM_PREFIX):])
    except ValueError:
        raise ValueError(f"timestep_respacing={spec!r}: expected '{DDIM_PREFIX}N' with an integer N") from None
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == desired:
            return set(range(0, num_timesteps, stride))
    raise ValueError(
        f"timestep_respacing={spec!r}: no integer stride gives exactly {desired} of {num_timesteps} steps; "
        f"pick a count N with len(range(0, {num_timesteps}, stride)) == N, e.g. {DDIM_PREFIX}50")


def space_timesteps(num_timesteps, section_counts):
    """The set of original timesteps kept when respacing `num_timesteps` steps.

    The steps are split into len(section_counts) near-equal sections (the first num_timesteps % n get one extra);
    a section of `size` steps keeping `count` of them takes round(k * (size - 1) / (count - 1)) for k < count, the
    fractional index accumulated by repeated addition and rounded with Python's round (half to even), as the
    official code does. "ddimN" instead takes range(0, num_timesteps, stride) for the smallest integer stride
    giving N steps.
    """
    if isinstance(section_counts, str) and section_counts.startswith(DDIM_PREFIX):
        return _ddim_timesteps(num_timesteps, section_counts)
    counts = _parse_section_counts(section_counts, num_timesteps)
    if any(c < 0 for c in counts):
        raise ValueError(f"timestep_respacing={section_counts!r} has a negative step count")
    size_per, extra = divmod(num_timesteps, len(counts))
    kept = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(
                f"timestep_respacing={section_counts!r}: cannot take {count} steps from a section of {size} "
                f"(of {num_timesteps} diffusion steps); use fewer sampling steps")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return set(kept)


def respace_betas(alphas_cumprod, use_timesteps):
    """Betas of the process keeping `use_timesteps`, and the sorted original indices (the timestep map).

    Returns (betas float64 (S,), timestep_map int64 (S,)) with beta_k = 1 - abar[map[k]] / abar[map[k-1]].
    """
    timestep_map = np.array(sorted(int(i) for i in use_timesteps), dtype=np.int64)
    if timestep_map.size == 0 or timestep_map[0] < 0 or timestep_map[-1] >= len(alphas_cumprod):
        raise ValueError(
            f"use_timesteps must be a non-empty subset of range({len(alphas_cumprod)}), got {timestep_map}")
    kept = np.asarray(alphas_cumprod, dtype=np.float64)[timestep_map]
    previous = np.append(1.0, kept[:-1])
    return 1.0 - kept / previous, timestep_map
