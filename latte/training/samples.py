"""Sample GIFs written with the newest weights at each training checkpoint (a quick look at progress)."""
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


class CheckpointSamples:
    """Holds one inference Latte (compiled once) and reloads it with each checkpoint's weights."""

    def __init__(self, cfg, ctx):
        # the synthetic shape videos have a measure of coherence (latte/data/coherence.py): log it per checkpoint
        self.measure_coherence = cfg.data_config.train_data_type == "synthetic"
        self.cfg = sample_config_from(cfg, "unused.ckpt", sampling_steps=cfg.sample_steps,
                                      ddim_sampling=cfg.sample_ddim, num_samples=cfg.sample_num_videos,
                                      batch_size=cfg.sample_num_videos, display_scale=cfg.sample_display_scale)
        with no_init_parameters():
            self.net = create_latte(cfg.model_name, **self.cfg.latte_kwargs())
        self.net.set_train(False)
        self.sampler = VideoSampler(self.cfg, apply_amp(self.net, resolve_dtype(cfg.dtype, ctx.device_target)))
        self.decode = FrameDecoder(self.cfg, ctx.device_target)
        self.labels = choose_labels(self.cfg, self.cfg.num_samples, np.random.default_rng(cfg.seed))

    def write(self, step, weights, folder):
        load_checkpoint_into(self.net, weights, "checkpoint sample model")
        latents, _ = self.sampler.sample(self.labels, self.cfg.num_samples, seed=self.cfg.seed)
        sampled = video_to_uint8(self.decode(latents).asnumpy())  # (N, F, H, W, 3)
        videos = enlarge(sampled, self.cfg.display_scale)
        target = os.path.join(folder, f"step-{step:07d}")
        os.makedirs(target, exist_ok=True)
        for i, video in enumerate(videos):
            save_video(video, os.path.join(target, video_name(i, None if self.labels is None else self.labels[i])
                                           + ".gif"), fps=self.cfg.fps)  # named as sample.py names them
        logger.info("wrote %d sample GIF(s) to %s", len(videos), target)
        if self.measure_coherence and sampled.shape[-1] == 3:  # RGB shapes (not a grayscale VAE's frames)
            from latte.data.coherence import score_coherence

            report = score_coherence(sampled)
            logger.info("step %d: %d of %d checkpoint samples coherent (%.0f%%; tools/coherence.py %s)", step,
                        sum(v["coherent"] for v in report["videos"]), report["count"], report["coherent"], target)
