"""sample.py's text-to-video run, piece by piece: prompt embeddings (T5 or a text embeddings file), the models
a TextToVideoSampleConfig names, the starting noise of each video, decoding and writing.

The pipeline itself (LattePipeline's prompt handling, guidance and loop) is latte.text_to_video; this module
only feeds it from a config. As the official sample/sample_t2x.py, each prompt is sampled on its own (batch 1:
mask_feature cuts its T5 states to its tokens), num_samples_per_prompt times from different noise.
"""
import functools
import gc
import logging
import os
import re

import numpy as np

from latte.env import resolve_dtype
from latte.io import save_image_grid, video_to_uint8
from latte.random_streams import Stream
from latte.sampling import enlarge, write_video
from latte.text_to_video import (TextGuidedDenoiser, encode_texts, keeps_variance, prompt_embeddings_from,
                                 sample_text_to_video)

logger = logging.getLogger(__name__)

NAME_CHARS = 60  # characters of the prompt kept in file names


def prompt_embeddings(cfg, device_target):
    """[(prompt_embeds (1, L, D), negative_embeds (1, L, D) or None)] for cfg.prompts(), from the text embeddings
    file, else from T5 (loaded, used, then released before the transformer loads)."""
    prompts = cfg.prompts()
    guided = cfg.guidance_scale > 1
    if cfg.text_embeddings:
        from latte.text.embeddings import TextEmbeddings

        source = TextEmbeddings(cfg.text_embeddings)
        logger.info("prompt embeddings from %s (T5 not loaded)", cfg.text_embeddings)
    else:
        from latte.models import load_t5
        from latte.text.tokenizer import T5Tokenizer

        t5_ckpt, tokenizer = cfg.text_encoder_files()  # 'demo': the built-in one, built on first use
        source = functools.partial(encode_texts, T5Tokenizer(tokenizer),
                                   load_t5(t5_ckpt, dtype=resolve_dtype(cfg.dtype, device_target)))
    out = [prompt_embeddings_from(source, [p], cfg.negative_prompt, guided, cfg.mask_feature) for p in prompts]
    del source  # the only reference to T5: T5-XXL's 19 GB go before the transformer comes
    gc.collect()
    width = cfg.transformer_config().get("caption_channels")
    if width is not None and out[0][0].shape[-1] != width:
        raise ValueError(f"the prompt embeddings are {out[0][0].shape[-1]} wide but {cfg.checkpoint} takes "
                         f"caption_channels={width}: use the text encoder it was trained with (Latte-1: T5 v1.1 XXL, "
                         "4096; the demo: 'demo')")
    return out


def load_transformer(cfg, device_target):
    """The LatteT2V of cfg.checkpoint at cfg's latent size, strictly loaded, in cfg.dtype."""
    from latte.models import load_latte

    return load_latte(cfg.checkpoint, resolve_dtype(cfg.dtype, device_target), latent_size=cfg.latent_hw,
                      enable_flash_attention=cfg.enable_flash_attention)


class VideoDecoder:
    """Latents (B, F, C, h, w) -> uint8 frames (B, F, H, W, 3): whole videos, or LattePipeline's chunks; in pixel
    space (no vae_checkpoint) the latents are the frames, in [-1, 1]."""

    def __init__(self, cfg, device_target):
        self.vae = None
        if not cfg.pixel_space:
            from latte.models.vae import load_vae

            self.vae = load_vae(cfg.vae_checkpoint, dtype=resolve_dtype(cfg.vae_dtype or cfg.dtype, device_target))
        self.scale = cfg.latent_scale
        self.frames = cfg.video_length
        self.chunk = cfg.decode_chunk_size or None

    def __call__(self, latents):
        if self.vae is None:
            return video_to_uint8(latents.asnumpy())  # (B, F, 3, H, W) -> (B, F, H, W, 3)
        from latte.models.vae import decode_video

        video = decode_video(self.vae, latents, self.frames, scale=self.scale, decode_chunk_size=self.chunk)
        return video_to_uint8(video.asnumpy())


class TextToVideoSampler:
    """One guided denoiser (compiled once per text length) and the config's scheduler."""

    def __init__(self, cfg, transformer, scheduler):
        self.cfg = cfg
        self.scheduler = scheduler
        self.denoiser = TextGuidedDenoiser(transformer, cfg.guidance_scale, cfg.enable_temporal_attentions,
                                           keep_variance=keeps_variance(scheduler))

    def starting_noise(self, prompt_index, sample_index):
        """Unit noise (1, F, C, h, w) of one video, from stream T2V_LATENTS."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, Stream.T2V_LATENTS, prompt_index, sample_index])
        return rng.standard_normal((1, cfg.video_length, cfg.latent_channels, *cfg.latent_hw), dtype=np.float32)

    def sample(self, embeds, negative, prompt_index, sample_index, step_times=None):
        """The final latents (1, F, C, h, w) of one video."""
        return sample_text_to_video(self.denoiser, self.starting_noise(prompt_index, sample_index), embeds,
                                    negative, self.scheduler, self.cfg.sampling_steps, seed=self.cfg.seed,
                                    step_times=step_times, noise_position=(prompt_index, sample_index))


def sample_stem(out_dir, prompt_index, prompt, sample_index, samples_per_prompt):
    """out_dir/<prompt index>_<the prompt's words>[_<sample>], e.g. 000_a_cat_wearing_sunglasses."""
    words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:NAME_CHARS] or "empty"
    suffix = f"_{sample_index}" if samples_per_prompt > 1 else ""
    return os.path.join(out_dir, f"{prompt_index:03d}_{words}{suffix}")


def write_sample(frames, stem, cfg):
    """frames (F, H, W, 3) uint8 -> stem.png for one frame (text-to-image), else the cfg's video formats; enlarged
    cfg.display_scale times."""
    frames = enlarge(frames, cfg.display_scale)
    if frames.shape[0] == 1:
        return [save_image_grid(frames, stem + ".png", padding=0)]
    return write_video(frames, stem, cfg)
