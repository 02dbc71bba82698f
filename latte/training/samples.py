"""Videos generated with each training checkpoint's weights: sample GIFs (a quick look at progress) and the
videos of the checkpoint FVD (latte.training.checkpoint_fvd)."""
import dataclasses
import logging
import os

import numpy as np

from mindspore.nn.utils import no_init_parameters

from latte.checkpoint_io import load_checkpoint_into
from latte.env import resolve_dtype
from latte.io import save_video, video_to_uint8
from latte.models.factory import create_latte
from latte.models.precision import apply_amp
from latte.options import ModelOptions, SampleConfig
from latte.sampling import FrameDecoder, VideoSampler, choose_labels, enlarge, video_name

logger = logging.getLogger(__name__)


def sample_config_from(cfg, checkpoint, **overrides):
    """A SampleConfig for the model of training config `cfg` (shared model keys copied)."""
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(ModelOptions)}
    shared.update(device_target=cfg.device_target, mode=cfg.mode, jit_level=cfg.jit_level, seed=cfg.seed)
    return SampleConfig(**dict(shared, checkpoint=checkpoint, **overrides))


class CheckpointSampler:
    """One inference Latte (compiled once per batch size) reloaded with each checkpoint's weights; it denoises
    with sample_steps (DDIM when sample_ddim) and makes the videos sample.py makes with these settings."""

    def __init__(self, cfg, ctx):
        self.cfg = sample_config_from(cfg, "unused.ckpt", sampling_steps=cfg.sample_steps,
                                      ddim_sampling=cfg.sample_ddim, resample_rounds=cfg.sample_resample_rounds)
        with no_init_parameters():
            self.net = create_latte(cfg.model_name, **self.cfg.latte_kwargs())
        self.net.set_train(False)
        self.sampler = VideoSampler(self.cfg, apply_amp(self.net, resolve_dtype(cfg.dtype, ctx.device_target)))
        self.decode = FrameDecoder(self.cfg, ctx.device_target)

        self.weights = None

    def load(self, weights):
        # after the first load the compiled sampling step has run: later weights are copied into its memory
        load_checkpoint_into(self.net, weights, "checkpoint sample model", in_place=self.weights is not None)
        self.weights = weights

    def videos(self, count, batch_size):
        """(count, F, H, W, 3) uint8 videos and their labels (None for unconditional models), as sample.py with
        num_samples count and batch_size: labels drawn with the seed, batch `first` denoised with seed + first."""
        seed = self.cfg.seed
        labels = choose_labels(self.cfg, count, np.random.default_rng(seed))
        videos = []
        for first in range(0, count, batch_size):
            n = min(batch_size, count - first)
            latents, _ = self.sampler.sample(None if labels is None else labels[first:first + n], n, seed=seed + first)
            videos.append(video_to_uint8(self.decode(latents).asnumpy()))  # (n, F, H, W, 3)
        return np.concatenate(videos), labels


class CheckpointSamples:
    """sample_num_videos GIFs under <folder>/step-<step>, named as sample.py names them."""

    def __init__(self, cfg):
        self.count, self.scale = cfg.sample_num_videos, cfg.sample_display_scale
        # the synthetic shape videos have measures of coherence and of their squares (latte/data/coherence.py,
        # squareness.py): log them per checkpoint
        self.measure_coherence = cfg.data_config.train_data_type == "synthetic"

    def write(self, step, sampler, folder):
        sampled, labels = sampler.videos(self.count, self.count)  # (N, F, H, W, 3)
        videos = enlarge(sampled, self.scale)
        target = os.path.join(folder, f"step-{step:07d}")
        os.makedirs(target, exist_ok=True)
        for i, video in enumerate(videos):
            save_video(video, os.path.join(target, video_name(i, None if labels is None else labels[i]) + ".gif"),
                       fps=sampler.cfg.fps)
        logger.info("wrote %d sample GIF(s) to %s", len(videos), target)
        if self.measure_coherence and sampled.shape[-1] == 3:  # RGB shapes (not a grayscale VAE's frames)
            from latte.data.coherence import score_coherence
            from latte.data.squareness import is_square, video_squareness

            report = score_coherence(sampled)
            squares = sum(is_square(video_squareness(video)) for video in sampled)
            logger.info("step %d: %d of %d checkpoint samples coherent (%.0f%%), %d show squares (tools/coherence.py "
                        "%s)", step, sum(v["coherent"] for v in report["videos"]), report["count"], report["coherent"],
                        squares, target)
