"""The metrics by name, with the numbers the official Latte evaluation uses (Vchitect/Latte tools/metrics, a copy
of StyleGAN-V's metric code with Latte's own changes, which are followed here and marked "Latte").

FVD clips: `num_frames` frames, every `subsample`-th one. Real clips start at a random frame (any start that
fits; videos too short for a clip are discarded), generated clips at frame 0. Real videos are a random sample of
`max_real` of the dataset (Latte: random.sample instead of StyleGAN-V's first items). Each video gives one clip.

FID and IS read single frames (StyleGAN-V's image dataset over the frame folders: every frame of every video is
one image): a random sample of `max_real` / `num_gen` frames (all of them when None or fewer), the 2015
Inception's pool3 features (FID) or its class probabilities without the output bias (IS, 10 splits of the rows in
the sampled order). The video IS reads 16-frame clips from frame 0 of `num_gen` random generated videos and
takes C3D's UCF101 probabilities, shuffled with seed 42 before the 10 splits.
"""
from dataclasses import dataclass
from typing import Optional

from latte.config import ConfigError

# I3D needs clips of at least 9 frames (at 224 x 224, its (2, 7, 7) average pool after a time reduction of 8);
# named here, in plain Python, so that configs can check it without importing MindSpore
I3D_MIN_FRAMES = 9


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



@dataclass(frozen=True)
class FIDRecipe:
    max_real: Optional[int]  # real frames (None: every frame)
    num_gen: int  # generated frames
    mirror: bool  # --mirror doubles the real frames with mirrored copies (only the legacy fid50k keeps it)
    detector: str = "inception"


@dataclass(frozen=True)
class ISRecipe:
    num_gen: int  # generated frames (num_frames None) or 16-frame clips
    num_splits: int
    detector: str
    num_frames: Optional[int] = None  # None: single frames (image IS)
    shuffle_seed: Optional[int] = None  # the video IS shuffles the probabilities before splitting


FID_METRICS = {
    "fid50k_full": FIDRecipe(max_real=None, num_gen=50000, mirror=False),
    "fid50k": FIDRecipe(max_real=50000, num_gen=50000, mirror=True),
}
IS_METRICS = {
    "is50k": ISRecipe(num_gen=50000, num_splits=10, detector="inception"),
    "isv2048_ucf": ISRecipe(num_gen=2048, num_splits=10, detector="c3d", num_frames=16, shuffle_seed=42),
}
METRICS = {**FVD_METRICS, **FID_METRICS, **IS_METRICS}

# official metric names that latte-ms does not compute yet, with what is missing
NOT_YET = {"kid50k_full": "the KID formula", "kid50k": "the KID formula"}


def check_metric_names(names):
    """Raises ConfigError for a name that is not an official metric or that latte-ms does not compute yet."""
    for name in names:
        if name in NOT_YET:
            raise ConfigError(f"--metrics {name}: needs {NOT_YET[name]}, which latte-ms has not ported yet; "
                              f"available: {', '.join(METRICS)}")
        if name not in METRICS:
            raise ConfigError(f"--metrics {name}: unknown metric; available: {', '.join(METRICS)}")


def metric_detector(name):
    """The detector a metric needs and the call flags it is built with."""
    recipe = METRICS[name]
    if name in FID_METRICS:
        return recipe.detector, {"return_features": True}
    if name in IS_METRICS and recipe.detector == "inception":
        return recipe.detector, {"return_features": False, "no_output_bias": True}
    return recipe.detector, {}


def reads_single_frames(name):
    """Whether a metric's detector sees single frames (FID, image IS) rather than clips."""
    return name in FID_METRICS or (name in IS_METRICS and IS_METRICS[name].num_frames is None)


def _cap(n, max_items):
    """The official count n (None: all) capped by --max_items."""
    return n if max_items is None else min(n, max_items) if n is not None else max_items


def compute_fid(recipe, real_folder, fake_folder, detector_for, detector_path, batch_size, seed, cache_dir=None,
                max_items=None, mirror=False):
    """(FID, real frames, generated frames) of `fake_folder` against `real_folder` under `recipe`. Frames are
    read video by video; the statistics do not depend on the order."""
    from latte.metrics.clips import list_videos, plan_frames
    from latte.metrics.features import cache_tag, gather_features

    by_video = (lambda clips: sorted(clips, key=lambda c: (c.path, c.indices, c.flip)))
    real_frames = by_video(plan_frames(list_videos(real_folder), _cap(recipe.max_real, max_items), seed,
                                       mirror=mirror and recipe.mirror))
    fake_frames = by_video(plan_frames(list_videos(fake_folder), _cap(recipe.num_gen, max_items), seed))
    tag = cache_tag(real_frames, detector_path, "real-frames") if cache_dir else None
    real = gather_features(real_frames, detector_for, batch_size, "real frames", cache_dir, tag)
    fake = gather_features(fake_frames, detector_for, batch_size, "generated frames")
    return frechet_of(fake, real), real.num_items, fake.num_items


def compute_is(recipe, fake_folder, detector_for, batch_size, seed, max_items=None):
    """((mean, std), items) of the Inception Score of `fake_folder` under `recipe`: single frames (read video by
    video, the probabilities put back in the sampled order) or clips from frame 0."""
    import numpy as np

    from latte.metrics.clips import list_videos, plan_clips, plan_frames
    from latte.metrics.features import gather_features
    from latte.metrics.stats import inception_score

    entries = list_videos(fake_folder)
    if recipe.num_frames is None:
        items = plan_frames(entries, _cap(recipe.num_gen, max_items), seed)
    else:
        items = plan_clips(entries, recipe.num_frames, 1, _cap(recipe.num_gen, max_items), random_offset=False,
                           seed=seed, where=f"--fake_data_path {fake_folder}")
    if len(items) < recipe.num_splits:
        raise ConfigError(f"{fake_folder}: {len(items)} generated items, fewer than the IS's {recipe.num_splits} "
                          f"splits; give more videos (or a --max_items of at least {recipe.num_splits})")
    order = sorted(range(len(items)), key=lambda i: (items[i].path, items[i].indices))  # read order
    probs = gather_features([items[i] for i in order], detector_for, batch_size, "generated items",
                            capture_all=True, capture_mean_cov=False).get_all()
    sampled = np.empty_like(probs)
    sampled[order] = probs  # row k of the read order is item order[k]
    return inception_score(sampled, recipe.num_splits, recipe.shuffle_seed), len(items)


def real_clips(recipe, folder, seed, max_items=None, where="--real_data_path"):
    """The real clips of an FVD `recipe`: a seeded random sample of the videos long enough for a clip (too short
    ones discarded), each at a random start; `where` names the setting in errors."""
    from latte.metrics.clips import list_videos, plan_clips

    return plan_clips(list_videos(folder), recipe.num_frames, recipe.real_subsample, _cap(recipe.max_real, max_items),
                      random_offset=True, seed=seed, where=f"{where} {folder}")


def generated_clips(recipe, folder, seed, max_items=None, where="--fake_data_path"):
    """The generated clips of an FVD `recipe`: from frame 0 of a seeded random sample of the videos (a video too
    short for a clip is an error)."""
    from latte.metrics.clips import list_videos, plan_clips

    return plan_clips(list_videos(folder), recipe.num_frames, recipe.gen_subsample, _cap(recipe.num_gen, max_items),
                      random_offset=False, seed=seed, where=f"{where} {folder}")


def real_clip_features(clips, detector_for, detector_path, batch_size, cache_dir=None):
    """FeatureStats of the real clips, cached in cache_dir (None: not cached) under a tag of the clips and the
    detector file, resumed when a partial cache is there."""
    from latte.metrics.features import cache_tag, gather_features

    tag = cache_tag(clips, detector_path, "real") if cache_dir else None
    return gather_features(clips, detector_for, batch_size, "real clips", cache_dir, tag)


def frechet_of(generated, real):
    """The Frechet distance (FVD, FID) of two FeatureStats, generated first as StyleGAN-V's."""
    from latte.metrics.stats import frechet_distance

    mu_gen, sigma_gen = generated.get_mean_cov()
    mu_real, sigma_real = real.get_mean_cov()
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)


def compute_fvd(recipe, real_folder, fake_folder, detector_for, detector_path, batch_size, seed, cache_dir=None,
                max_items=None):
    """(FVD, real clips, generated clips) of `fake_folder` against `real_folder` under `recipe`; max_items caps
    both sides (tests, quick looks). Real features are cached in cache_dir (None: not cached); generated ones are
    not, as in StyleGAN-V."""
    from latte.metrics.features import gather_features

    real = real_clip_features(real_clips(recipe, real_folder, seed, max_items), detector_for, detector_path,
                              batch_size, cache_dir)
    fake = gather_features(generated_clips(recipe, fake_folder, seed, max_items), detector_for, batch_size,
                           "generated clips")
    return frechet_of(fake, real), real.num_items, fake.num_items
