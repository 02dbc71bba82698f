"""The metrics by name, with the numbers the official Latte evaluation uses (Vchitect/Latte tools/metrics, a copy
of StyleGAN-V's metric code with Latte's own changes, which are followed here and marked "Latte").

FVD clips: `num_frames` frames, every `subsample`-th one. Real clips start at a random frame (any start that
fits; videos too short for a clip are discarded), generated clips at frame 0. Real videos are a random sample of
`max_real` of the dataset (Latte: random.sample instead of StyleGAN-V's first items). Each video gives one clip.
"""
from dataclasses import dataclass
from typing import Optional

from latte.config import ConfigError


@dataclass(frozen=True)
class FVDRecipe:
    num_frames: int
    max_real: Optional[int]
    num_gen: int
    real_subsample: int
    gen_subsample: int
    detector: str = "i3d"


# fvd2048_16f: Latte raised both counts to 20480 and subsamples real videos by 3 (its compute_fvd default);
# StyleGAN-V uses 2048 / 2048, subsample 1. fvd2048_128f keeps 2048 / 2048 with Latte's real subsample 3.
# fvd2048_128f_subsample8f fails in the Latte copy (compute_fvd lost its subsample_factor argument); StyleGAN-V's
# meaning is kept: 16 frames, every 8th, on both sides.
FVD_METRICS = {
    "fvd2048_16f": FVDRecipe(num_frames=16, max_real=20480, num_gen=20480, real_subsample=3, gen_subsample=1),
    "fvd2048_128f": FVDRecipe(num_frames=128, max_real=2048, num_gen=2048, real_subsample=3, gen_subsample=1),
    "fvd2048_128f_subsample8f": FVDRecipe(num_frames=16, max_real=2048, num_gen=2048, real_subsample=8,
                                          gen_subsample=8),
}

# official metric names whose detectors latte-ms does not have yet (the 2015 Inception, C3D)
NOT_YET = {"fid50k_full": "the 2015 Inception (inception-2015-12-05)", "fid50k": "the 2015 Inception",
           "kid50k_full": "the 2015 Inception", "kid50k": "the 2015 Inception", "is50k": "the 2015 Inception",
           "isv2048_ucf": "C3D (c3d_ucf101.pt)"}


def check_metric_names(names):
    """Raises ConfigError for a name that is not an official metric or whose detector is not ported yet."""
    for name in names:
        if name in NOT_YET:
            raise ConfigError(f"--metrics {name}: needs {NOT_YET[name]}, which latte-ms has not ported yet; "
                             f"available: {', '.join(FVD_METRICS)}")
        if name not in FVD_METRICS:
            raise ConfigError(f"--metrics {name}: unknown metric; available: {', '.join(FVD_METRICS)}")


def compute_fvd(recipe, real_folder, fake_folder, detector_for, detector_path, batch_size, seed, cache_dir=None,
                max_items=None):
    """FVD of `fake_folder` against `real_folder` under `recipe`; max_items caps both sides (tests, quick looks).
    Real features are cached in cache_dir (None: not cached); generated ones are not, as in StyleGAN-V."""
    from latte.metrics.clips import list_videos, plan_clips
    from latte.metrics.features import cache_tag, gather_features
    from latte.metrics.stats import frechet_distance

    cap = (lambda n: n if max_items is None else min(n, max_items) if n is not None else max_items)
    real_clips = plan_clips(list_videos(real_folder), recipe.num_frames, recipe.real_subsample, cap(recipe.max_real),
                            random_offset=True, seed=seed, where=f"--real_data_path {real_folder}")
    fake_clips = plan_clips(list_videos(fake_folder), recipe.num_frames, recipe.gen_subsample, cap(recipe.num_gen),
                            random_offset=False, seed=seed, where=f"--fake_data_path {fake_folder}")
    tag = cache_tag(real_clips, detector_path, "real") if cache_dir else None
    real = gather_features(real_clips, detector_for, batch_size, "real clips", cache_dir, tag)
    fake = gather_features(fake_clips, detector_for, batch_size, "generated clips")
    mu_real, sigma_real = real.get_mean_cov()
    mu_gen, sigma_gen = fake.get_mean_cov()
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real), real.num_items, fake.num_items
