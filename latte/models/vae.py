"""The KL autoencoders (diffusers' AutoencoderKL and AutoencoderKLTemporalDecoder) in MindSpore, video helpers, loading.

    vae = AutoencoderKL()                        # sd-vae-ft-mse architecture; any config.json field is a kwarg
    mean, logvar = vae.encode(x)                 # (N, 3, H, W) in [-1, 1] -> two (N, 4, H/8, W/8)
    image = vae.decode(z)                        # (N, 4, h, w) unscaled latent -> (N, 3, 8h, 8w)
    tvae = AutoencoderKLTemporalDecoder()        # Latte-1's vae_temporal_decoder: the same encoder ...
    frames = tvae.decode(z, num_frames=16)       # ... and a decoder that mixes the frames of each video
    latents = encode_video(vae, video, frames_per_batch=4)   # (B, F, 3, H, W) -> scaled (B, F, 4, H/8, W/8)
    video = decode_video(vae, latents, frames_per_batch=4)   # and back, with either VAE
    vae = load_vae("models/sd-vae-ft-mse.ckpt")  # a checkpoint written by tools/vae_converter.py; its record
                                                 # says which of the two it is

Computation runs in fp32, or in fp16 with every GroupNorm (and the attention softmax) kept in fp32;
encode/decode always return fp32.
"""
import logging

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint
from latte.env import resolve_dtype
from latte.models.precision import FP32_CELLS
from latte.models.vae_blocks import Decoder, Encoder, conv1x1
from latte.models.vae_config import (CLASS_NAMES, KIND_KL, KIND_TEMPORAL, VAE_SCALE_FACTOR, VAEConfig,
                                     infer_architecture, kind_of)
from latte.models.vae_encoder import scaled_posterior_sample
from latte.models.vae_temporal import TemporalDecoder

__all__ = ["AutoencoderKL", "AutoencoderKLTemporalDecoder", "VAE_SCALE_FACTOR", "VAEConfig", "build_vae",
           "decode_video", "encode_video", "load_vae"]

logger = logging.getLogger(__name__)

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0  # clamp of the posterior log-variance, as in diffusers
DEFAULT_FRAMES_PER_BATCH = 4  # frames per encode/decode call in the video helpers (bounds activation memory)
_DTYPE_NAMES = {ms.float32: "fp32", ms.float16: "fp16", ms.bfloat16: "bf16"}


def _to_ms_dtype(dtype):
    """ms.float32/float16/bfloat16 or the project's names 'fp32'/'fp16'/'bf16' -> a dtype this device runs."""
    return resolve_dtype(_DTYPE_NAMES.get(dtype, dtype), ms.get_context("device_target"))


class AutoencoderKL(nn.Cell):
    """The KL-regularised autoencoder of Stable Diffusion (diffusers' AutoencoderKL, same math and names).

    Keyword arguments are diffusers config.json fields (see VAEConfig); `dtype` picks the compute precision.
    """

    KIND = KIND_KL

    def __init__(self, dtype=ms.float32, **config):
        super().__init__()
        if "kind" not in config and "_class_name" not in config:
            config = {**config, "kind": self.KIND}  # the class says what it builds
        kind = kind_of(config)
        if kind != self.KIND:
            raise ValueError(f"config is for {CLASS_NAMES[kind]!r}, not {CLASS_NAMES[self.KIND]!r}: "
                             "build it with latte.models.vae.build_vae (or load_vae for a converted checkpoint)")
        self.config = VAEConfig.from_dict(config)
        cfg = self.config
        self.compute_dtype = _to_ms_dtype(dtype)
        self.scaling_factor = cfg.scaling_factor
        self.downsample_factor = cfg.downsample_factor
        self.encoder = Encoder(cfg.in_channels, cfg.latent_channels, cfg.block_out_channels, cfg.layers_per_block,
                               cfg.norm_num_groups, cfg.mid_block_add_attention)
        self.decoder = self._build_decoder(cfg)
        moments = 2 * cfg.latent_channels  # mean and logvar, stacked on channels
        self.quant_conv = conv1x1(moments, moments) if cfg.use_quant_conv else None
        self.post_quant_conv = conv1x1(cfg.latent_channels, cfg.latent_channels) if cfg.use_post_quant_conv else None
        if self.compute_dtype != ms.float32:
            self._keep_norms_fp32(self.compute_dtype)

    @staticmethod
    def _build_decoder(cfg):
        return Decoder(cfg.latent_channels, cfg.out_channels, cfg.block_out_channels, cfg.layers_per_block,
                       cfg.norm_num_groups, cfg.mid_block_add_attention)

    def _keep_norms_fp32(self, dtype):
        # the policy of latte.models.precision.apply_amp (custom_mixed_precision with a black list), done with
        # cast flags instead of its wrapper cells, which would hide encode/decode behind the wrapper
        self.to_float(dtype)
        for _, cell in self.cells_and_names():
            if isinstance(cell, tuple(FP32_CELLS)):
                cell.to_float(ms.float32)

    def encode(self, x):
        """(N, in_channels, H, W) in [-1, 1] -> posterior (mean, logvar), each (N, latent, H/f, W/f), fp32."""
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, logvar = ops.chunk(moments.astype(ms.float32), 2, axis=1)  # (N, 2L, h, w) -> 2 x (N, L, h, w)
        return mean, ops.clamp(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z):
        """(N, latent, h, w) unscaled latent -> (N, out_channels, h*f, w*f), fp32."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z).astype(ms.float32)

    def construct(self, x):
        """Reconstruction through the posterior mean (diffusers' forward with sample_posterior=False)."""
        mean, _ = self.encode(x)
        return self.decode(mean)


class AutoencoderKLTemporalDecoder(AutoencoderKL):
    """diffusers' AutoencoderKLTemporalDecoder (Stable Video Diffusion's VAE, Latte-1's vae_temporal_decoder):
    AutoencoderKL's per-frame encoder and quant_conv, no post_quant_conv, and a decoder that mixes the frames
    of each video (latte.models.vae_temporal). Config fields as AutoencoderKL's; diffusers fixes
    norm_num_groups at 32 and has the mid-block attention."""

    KIND = KIND_TEMPORAL

    @staticmethod
    def _build_decoder(cfg):
        return TemporalDecoder(cfg.latent_channels, cfg.out_channels, cfg.block_out_channels, cfg.layers_per_block,
                               cfg.norm_num_groups)

    def decode(self, z, num_frames):
        """(B*F, latent, h, w) unscaled latents, the F frames of each video adjacent -> (B*F, out_channels,
        h*f, w*f), fp32. Frames of one video influence each other; videos do not."""
        if z.shape[0] % num_frames:
            raise ValueError(f"num_frames={num_frames} does not divide the {z.shape[0]} latent frames: give "
                             "(B*F, C, h, w) with F = num_frames")
        return self.decoder(z, num_frames).astype(ms.float32)

    def construct(self, x, num_frames=1):
        """Reconstruction through the posterior mean (diffusers' forward with sample_posterior=False)."""
        mean, _ = self.encode(x)
        return self.decode(mean, num_frames)


VAE_CLASSES = {KIND_KL: AutoencoderKL, KIND_TEMPORAL: AutoencoderKLTemporalDecoder}


def build_vae(config, **overrides):
    """The VAE a config describes (a VAEConfig or its dict of fields): AutoencoderKL or
    AutoencoderKLTemporalDecoder by its kind. overrides: fields or `dtype` that win."""
    fields = config.to_dict() if isinstance(config, VAEConfig) else dict(config)
    fields.update(overrides)
    return VAE_CLASSES[kind_of(fields)](**fields)


# ---------------------------------------------------------------------------------------------------------
# Video helpers: (B, F, C, H, W) clips, encoded/decoded a few frames at a time
# ---------------------------------------------------------------------------------------------------------

def _frames(video, what):
    video = video if isinstance(video, ms.Tensor) else ms.Tensor(np.asarray(video, dtype=np.float32))
    if video.ndim != 5:
        raise ValueError(f"{what} must be (B, F, C, H, W), got shape {tuple(video.shape)}")
    b, f = video.shape[:2]
    return video.reshape((b * f,) + tuple(video.shape[2:])), (b, f)  # (B, F, C, H, W) -> (B*F, C, H, W)


def _check_frames_per_batch(frames_per_batch):
    if int(frames_per_batch) < 1:
        raise ValueError(f"frames_per_batch={frames_per_batch}: must be a positive number of frames")
    return int(frames_per_batch)


def encode_video(vae, video, frames_per_batch=DEFAULT_FRAMES_PER_BATCH, sample=False, rng=None, scale=None):
    """Encodes a clip to the latents the diffusion model sees: (B, F, C, H, W) -> (B, F, L, H/f, W/f), fp32.

    sample=False takes the posterior mean; sample=True draws mean + std * noise, the noise a float32 standard
    normal from numpy's Generator `np.random.default_rng(rng)` (pass a seed or a Generator), drawn in frame
    order so the result does not depend on frames_per_batch. Latents are multiplied by `scale`
    (default: vae.scaling_factor, i.e. VAE_SCALE_FACTOR for sd-vae-ft-mse).
    """
    frames, (b, f) = _frames(video, "video")
    step = _check_frames_per_batch(frames_per_batch)
    scale = vae.scaling_factor if scale is None else scale
    generator = np.random.default_rng(rng) if sample else None
    chunks = []
    for start in range(0, b * f, step):
        mean, logvar = vae.encode(frames[start:start + step])
        noise = (ms.Tensor(generator.standard_normal(tuple(mean.shape), dtype=np.float32)) if sample
                 else ops.zeros_like(mean))
        chunks.append(scaled_posterior_sample(mean, logvar, noise, scale))
    latents = ops.cat(chunks, axis=0)
    return latents.reshape((b, f) + tuple(latents.shape[1:]))  # (B*F, L, h, w) -> (B, F, L, h, w)


def decode_video(vae, latents, frames_per_batch=DEFAULT_FRAMES_PER_BATCH, scale=None, decode_chunk_size=None):
    """Decodes scaled latents (B, F, L, h, w) back to a clip (B, F, C, h*f, w*f) in about [-1, 1], fp32.

    AutoencoderKL decodes each frame on its own, `frames_per_batch` frames per call. AutoencoderKLTemporalDecoder
    mixes the frames of a video, so it decodes whole videos: max(1, frames_per_batch // F) per call (at least
    one, however long), each as one F-frame clip.
    decode_chunk_size=N instead cuts the flat B*F frame sequence every N frames and decodes each piece as one
    clip of its length: what diffusers' LattePipeline.decode_latents and the official Latte
    decode_latents_with_temporal_decoder do (N=14 there), to reproduce their videos. With the temporal decoder
    this puts a seam inside a video longer than N (16 frames: frames 0-13 and 14-15 are decoded apart) and,
    for B > 1, decodes the end of one video with the start of the next. AutoencoderKL gives the same frames
    however they are cut.
    """
    frames, (b, f) = _frames(latents, "latents")
    scale = vae.scaling_factor if scale is None else scale
    temporal = vae.config.temporal
    if decode_chunk_size is not None:
        step = _check_frames_per_batch(decode_chunk_size)
    elif temporal:
        step = max(1, _check_frames_per_batch(frames_per_batch) // f) * f  # whole videos
    else:
        step = _check_frames_per_batch(frames_per_batch)
    chunks = []
    for start in range(0, b * f, step):
        z = frames[start:start + step] / scale
        chunks.append(vae.decode(z, z.shape[0] if decode_chunk_size is not None else f) if temporal
                      else vae.decode(z))
    video = ops.cat(chunks, axis=0)
    return video.reshape((b, f) + tuple(video.shape[1:]))  # (B*F, C, H, W) -> (B, F, C, H, W)


# ---------------------------------------------------------------------------------------------------------
# Loading a converted checkpoint
# ---------------------------------------------------------------------------------------------------------

def load_vae(ckpt_path, **overrides):
    """Builds the VAE recorded next to `ckpt_path` by tools/vae_converter.py and loads it strictly: an
    AutoencoderKL or, when the record's kind says so, an AutoencoderKLTemporalDecoder.

    overrides: config fields or `dtype` that win over the record (e.g. dtype=ms.float16). Without a record
    (no `<ckpt>.json`), the architecture is inferred from the weight shapes.
    """
    params, meta = read_ms_checkpoint(ckpt_path, what="VAE checkpoint", converter="tools/vae_converter.py")
    if meta.get("kind") in ("latte", "latte_t2v"):  # registry.KINDS; a Latte record names its kind at the top
        raise CheckpointError(f"VAE checkpoint {ckpt_path} holds a Latte transformer ({meta['kind']}), not a VAE: "
                              "give the .ckpt of tools/vae_converter.py as vae_checkpoint")
    config = meta.get("config")
    if config is None:
        config = infer_architecture(params)
        logger.warning("%s has no architecture record (.json sidecar): inferred %s from weight shapes",
                       ckpt_path, config)
    vae = build_vae(config, **overrides)
    load_strict(vae, params, what=ckpt_path)
    vae.set_train(False)
    return vae
