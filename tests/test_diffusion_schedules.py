"""Schedules, respacing and the float64 tables of latte.diffusion against independent float64 references.

Golden timestep maps below were produced by the official Latte diffusion/respace.py (space_timesteps).
"""
import math

import numpy as np
import pytest

from latte.diffusion import create_diffusion, named_beta_schedule, space_timesteps

# official space_timesteps(1000, "50")
OFFICIAL_50 = [0, 20, 41, 61, 82, 102, 122, 143, 163, 183, 204, 224, 245, 265, 285, 306, 326, 347, 367, 387, 408,
               428, 449, 469, 489, 510, 530, 550, 571, 591, 612, 632, 652, 673, 693, 714, 734, 754, 775, 795, 816,
               836, 856, 877, 897, 917, 938, 958, 979, 999]
# official space_timesteps(300, "10,15,20") (the docstring's example)
OFFICIAL_300_10_15_20 = [0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107, 114, 121, 128, 135, 142, 149, 157, 164,
                         171, 178, 185, 192, 199, 200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252, 257, 263,
                         268, 273, 278, 283, 289, 294, 299]
# official space_timesteps(1000, "25")
OFFICIAL_25 = [0, 42, 83, 125, 166, 208, 250, 291, 333, 375, 416, 458, 500, 541, 583, 624, 666, 708, 749, 791, 832,
               874, 916, 957, 999]


def official_250():
    """Official "250": stride 4 except three strides of 5 (164->169, 497->502, 830->835)."""
    strides = np.full(249, 4)
    strides[[41, 124, 207]] = 5
    return [0] + np.cumsum(strides).tolist()


# ---------------------------------------------------------------- references (float64, from the formulas)
def ref_linear_betas(n):
    scale = 1000.0 / n
    return np.linspace(scale * 1e-4, scale * 0.02, n, dtype=np.float64)


def ref_cosine_betas(n):
    def alpha_bar(s):
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)])


def ref_space(num_timesteps, counts):
    """Official rule: near-equal sections, accumulated float stride, Python round."""
    steps = []
    start = 0
    for i, count in enumerate(counts):
        size = num_timesteps // len(counts) + (1 if i < num_timesteps % len(counts) else 0)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        pos = 0.0
        for _ in range(count):
            steps.append(start + round(pos))
            pos += stride
        start += size
    return sorted(set(steps))


def ref_tables(betas):
    ac = np.cumprod(1 - betas)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    post_var = betas * (1 - ac_prev) / (1 - ac)
    return {
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "alphas_cumprod_next": np.concatenate([ac[1:], [0.0]]),
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - ac),
        "log_one_minus_alphas_cumprod": np.log(1 - ac),
        "sqrt_recip_alphas_cumprod": 1 / np.sqrt(ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / ac - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.concatenate([[post_var[1]], post_var[1:]])),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1 - ac),
        "posterior_mean_coef2": (1 - ac_prev) * np.sqrt(1 - betas) / (1 - ac),
        "log_betas": np.log(betas),
        "fixed_large_variance": np.concatenate([[post_var[1]], betas[1:]]),
        "ddim_sigma_per_eta": np.sqrt((1 - ac_prev) / (1 - ac) * (1 - ac / ac_prev)),
    }


# ---------------------------------------------------------------- betas
def test_linear_betas_match_formula():
    betas = named_beta_schedule("linear", 1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert betas[0] == 1e-4 and betas[-1] == 0.02
    np.testing.assert_array_equal(betas, ref_linear_betas(1000))
    np.testing.assert_allclose(named_beta_schedule("linear", 250), ref_linear_betas(250), rtol=0, atol=1e-16)


def test_cosine_betas_match_formula():
    betas = named_beta_schedule("squaredcos_cap_v2", 1000)
    np.testing.assert_allclose(betas, ref_cosine_betas(1000), rtol=1e-13, atol=0)
    assert betas.max() == 0.999  # the cap is hit at the very end


def test_unknown_schedule_is_loud():
    with pytest.raises(NotImplementedError, match="noise_schedule='cosine'"):
        named_beta_schedule("cosine", 1000)


# ---------------------------------------------------------------- respacing
@pytest.mark.parametrize("spec,expected", [
    ("50", OFFICIAL_50), ("25", OFFICIAL_25), ("250", official_250()),
    ("ddim50", list(range(0, 1000, 20))), ("ddim25", list(range(0, 1000, 40))),
    ("", list(range(1000))), (None, list(range(1000))), ("1000", list(range(1000))),
])
def test_space_timesteps_official_maps(spec, expected):
    assert sorted(space_timesteps(1000, spec)) == expected


def test_space_timesteps_sections():
    assert sorted(space_timesteps(300, "10,15,20")) == OFFICIAL_300_10_15_20
    assert sorted(space_timesteps(300, [10, 15, 20])) == OFFICIAL_300_10_15_20
    assert sorted(space_timesteps(1000, 50)) == OFFICIAL_50


@pytest.mark.parametrize("counts", [[250], [50], [100], [7], [999], [2], [3, 4], [10, 15, 20], [1, 5, 1], [333, 17]])
def test_space_timesteps_matches_reference_rule(counts):
    got = sorted(space_timesteps(1000, ",".join(str(c) for c in counts)))
    assert got == ref_space(1000, counts)
    assert len(got) == sum(counts)


def test_space_timesteps_errors():
    with pytest.raises(ValueError, match="ddim400"):
        space_timesteps(1000, "ddim400")  # stride 2 gives 500 steps, stride 3 gives 334
    with pytest.raises(ValueError, match="cannot take 400"):
        space_timesteps(1000, "400,400,400")
    with pytest.raises(ValueError, match="not understood"):
        space_timesteps(1000, "fifty")


# ---------------------------------------------------------------- tables
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("spec", ["", "250", "50", "ddim50"])
def test_respaced_tables_match_reference(schedule, spec):
    base = ref_linear_betas(1000) if schedule == "linear" else ref_cosine_betas(1000)
    d = create_diffusion(spec, noise_schedule=schedule)
    kept = np.array(sorted(space_timesteps(1000, spec)))
    np.testing.assert_array_equal(d.timestep_map, kept)
    assert d.num_timesteps == len(kept) and d.original_num_steps == 1000

    base_ac = np.cumprod(1 - base)
    betas = 1 - base_ac[kept] / np.concatenate([[1.0], base_ac[kept][:-1]])
    np.testing.assert_allclose(d.betas, betas, rtol=1e-12, atol=0)
    for name, expected in ref_tables(betas).items():
        got = getattr(d, name)
        assert got.dtype == np.float64, name
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0, err_msg=name)
    # respacing keeps alphas_cumprod at the kept steps
    np.testing.assert_allclose(d.alphas_cumprod, base_ac[kept], rtol=1e-10, atol=1e-16)


def test_tensor_tables_are_float32_copies():
    d = create_diffusion("50")
    np.testing.assert_array_equal(d.tables.log_betas.asnumpy(), np.log(d.betas).astype(np.float32))
    np.testing.assert_array_equal(d.tables.timestep_map.asnumpy(), d.timestep_map.astype(np.int32))
    assert len(list(d.get_parameters())) == 0  # constants, never in a checkpoint


def test_create_diffusion_options():
    d = create_diffusion("")
    assert d.num_timesteps == 1000 and d.learns_sigma and not d.predicts_xstart and d.vb_scale == 1.0
    assert create_diffusion("50", rescale_learned_sigmas=True).vb_scale == pytest.approx(50 / 1000)
    assert create_diffusion("50", use_kl=True).loss_is_vb
    assert create_diffusion("50", predict_xstart=True).predicts_xstart
    fixed = create_diffusion("50", learn_sigma=False)
    assert not fixed.learns_sigma and fixed.fixed_large
    assert not create_diffusion("50", learn_sigma=False, sigma_small=True).fixed_large
    with pytest.raises(ValueError, match="at least 2"):
        create_diffusion("1")
