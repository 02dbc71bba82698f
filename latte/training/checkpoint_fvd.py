"""A small FVD at each training checkpoint (fvd_at_checkpoint): fvd_num_videos videos generated with the
checkpoint's EMA weights against one clip of each held-out real video, the recipe of tools/eval_metrics.py's FVD
(latte.metrics.recipes) at the model's num_frames.

Held-out clips: num_frames frames, every fvd_subsample-th, at a seeded random start of each video long enough
(shorter ones are left out); their I3D features are computed once and cached under <output>/fvd (the resumable
cache of latte.metrics.features), so a resumed run reads them back. Generated clips: all num_frames frames of
each video, written as frame folders <output>/fvd/step-<step>/<sample>/ (PNG, lossless) and read back as
tools/eval_metrics.py reads a --fake_data_path, so that tool gives the same number on these folders.
"""
import logging
import os
import shutil

from latte.config import ConfigError
from latte.io import save_frames
from latte.metrics.detectors import detector_by_size
from latte.metrics.features import gather_features
from latte.metrics.recipes import FVDRecipe, frechet_of, generated_clips, real_clip_features, real_clips
from latte.sampling import video_name

logger = logging.getLogger(__name__)

FVD_FOLDER = "fvd"  # <output>/fvd: the held-out features' cache and each checkpoint's generated videos
MIN_CLIPS = 2  # a covariance needs two clips


def checkpoint_recipe(cfg):
    """The FVDRecipe of the checkpoint FVD: every held-out video that is long enough, fvd_num_videos generated."""
    return FVDRecipe(num_frames=cfg.num_frames, max_real=None, num_gen=cfg.fvd_num_videos,
                     real_subsample=cfg.fvd_subsample, gen_subsample=1)


class CheckpointFVD:
    """The held-out statistics (computed or read from the cache at construction) and the FVD of a checkpoint."""

    def __init__(self, cfg, output_path):
        self.cfg = cfg
        self.recipe = checkpoint_recipe(cfg)
        self.folder = os.path.join(output_path, FVD_FOLDER)
        clips = real_clips(self.recipe, cfg.fvd_real_data_path, cfg.seed, where="fvd_real_data_path")
        if len(clips) < MIN_CLIPS:
            r = self.recipe
            raise ConfigError(f"fvd_real_data_path {cfg.fvd_real_data_path}: {len(clips)} video(s) long enough for a "
                              f"clip of {r.num_frames} frames, every {r.real_subsample}-th "
                              f"({r.num_frames * r.real_subsample} frames); the FVD needs at least {MIN_CLIPS}: add "
                              "held-out videos (or lower fvd_real_subsample)")
        self.detector_for = detector_by_size(cfg.fvd_i3d_checkpoint, "i3d")  # rescale, resize, features
        self.real = real_clip_features(clips, self.detector_for, cfg.fvd_i3d_checkpoint, cfg.fvd_batch_size,
                                       cache_dir=self.folder)
        logger.info("checkpoint FVD: %d generated videos of %d frames against %d held-out clips (every %d-th "
                    "frame) of %s, I3D %s", cfg.fvd_num_videos, cfg.num_frames, self.real.num_items,
                    self.recipe.real_subsample, cfg.fvd_real_data_path, cfg.fvd_i3d_checkpoint)

    def measure(self, step, sampler):
        """The FVD of the videos `sampler` (a CheckpointSampler, loaded with the checkpoint) generates; they are
        written under <output>/fvd/step-<step>/ (replacing what an earlier run left there)."""
        videos, labels = sampler.videos(self.cfg.fvd_num_videos, self.cfg.fvd_batch_size)
        target = os.path.join(self.folder, f"step-{step:07d}")
        if os.path.isdir(target):
            shutil.rmtree(target)
        for i, video in enumerate(videos):  # (F, H, W, 3) uint8
            save_frames(video, os.path.join(target, video_name(i, None if labels is None else labels[i])))
        clips = generated_clips(self.recipe, target, self.cfg.seed, where="checkpoint videos")
        generated = gather_features(clips, self.detector_for, self.cfg.fvd_batch_size, "generated clips")
        value = frechet_of(generated, self.real)
        logger.info("step %d: FVD %.4f (%d videos generated with %s, against %d held-out clips)", step, value,
                    generated.num_items, os.path.basename(sampler.weights), self.real.num_items)
        return value
