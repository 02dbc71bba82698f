"""AutoencoderKLTemporalDecoder (Latte-1's vae_temporal_decoder) against diffusers' own, through the converter.

One tiny diffusers model with every parameter re-drawn (the alpha blenders' mix_factor too, so the temporal and
spatial paths are mixed unevenly), saved with save_pretrained, converted by tools/vae_converter.py in-process,
loaded by load_vae. GroupNorms have 32 groups in diffusers' temporal VAE, hence widths of 32.
"""
import json
import os
import types

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from latte.checkpoint_io import meta_path
from latte.convert.io import cli_main
from latte.convert.vae_keys import mindspore_name
from latte.models.vae import AutoencoderKL, AutoencoderKLTemporalDecoder, build_vae, decode_video, load_vae
from latte.models.vae_config import KIND_KL, KIND_TEMPORAL, VAEConfig
from tests.test_vae import DECODE_TOL, FP16_REL_TOL, MOMENTS_TOL, max_err, random_images, torch_state
from tools.vae_converter import main as convert_main

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

TINY = dict(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2, layers_per_block=2,
            latent_channels=4)
BATCH, FRAMES = 2, 3  # two videos of three frames: the first and last frame see one neighbour, the middle two
FRAME_SIZE = 16  # pixels; latents are 8x8
LATENT_SHAPE = (BATCH * FRAMES, 4, FRAME_SIZE // 2, FRAME_SIZE // 2)
LATTE1_TEMPORAL_CONFIG = {  # maxin-cn/Latte-1 vae_temporal_decoder/config.json (Stable Video Diffusion's VAE)
    "_class_name": "AutoencoderKLTemporalDecoder", "_diffusers_version": "0.24.0.dev0",
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "out_channels": 3,
    "sample_size": 768, "scaling_factor": 0.18215,
}


def randomized_temporal_vae(seed=0, **config):
    """diffusers AutoencoderKLTemporalDecoder with every parameter drawn anew from a seeded generator: weights
    N(0, 1/fan_in) (activations stay O(1) through the 40-odd layers), norm scales 1 + N(0, 0.2), biases and
    norm shifts N(0, 0.2), mix factors N(0, 1) (diffusers starts them all at 0, an even blend)."""
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLTemporalDecoder(**config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in vae.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("mix_factor"):
                param.copy_(noise)
            elif param.ndim > 1:
                param.copy_(noise / param[0].numel() ** 0.5)
            else:
                centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                param.copy_(centre + 0.2 * noise)
    return vae


def random_latents(shape=LATENT_SHAPE, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_decode(vae, z, num_frames):
    with torch.no_grad():
        return vae.decode(torch.from_numpy(z), num_frames=num_frames).sample.numpy()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(diffusers model, its save_pretrained folder, the .ckpt the converter wrote from that folder)."""
    root = tmp_path_factory.mktemp("temporal_vae")
    torch_vae = randomized_temporal_vae(**TINY)
    folder = str(root / "vae_temporal_decoder")
    torch_vae.save_pretrained(folder, safe_serialization=True)
    target = str(root / "vae_temporal.ckpt")
    assert convert_main(["--source", folder, "--target", target]) == 0
    return torch_vae, folder, target


# ---------------------------------------------------------------------------------------------------------
# Parity with diffusers
# ---------------------------------------------------------------------------------------------------------

def test_decode_and_encode_match_diffusers(mode, converted):
    torch_vae, _, target = converted
    vae = load_vae(target)
    assert isinstance(vae, AutoencoderKLTemporalDecoder) and vae.post_quant_conv is None
    z = random_latents()
    decoded = vae.decode(ms.Tensor(z), FRAMES).asnumpy()
    reference = torch_decode(torch_vae, z, FRAMES)
    assert decoded.shape == (BATCH * FRAMES, 3, FRAME_SIZE, FRAME_SIZE)
    assert max_err(decoded, reference) < DECODE_TOL
    # frames do mix: the same latents as six one-frame videos decode differently
    assert max_err(torch_decode(torch_vae, z, 1), reference) > 1e-2

    images = random_images((BATCH * FRAMES, 3, FRAME_SIZE, FRAME_SIZE))
    with torch.no_grad():
        posterior = torch_vae.encode(torch.from_numpy(images)).latent_dist
    mean, logvar = vae.encode(ms.Tensor(images))
    assert max_err(mean.asnumpy(), posterior.mean.numpy()) < MOMENTS_TOL
    assert max_err(logvar.asnumpy(), posterior.logvar.numpy()) < MOMENTS_TOL


def test_fp16_keeps_group_norm_fp32(converted):
    torch_vae, _, target = converted
    vae = load_vae(target, dtype=ms.float16)
    cells = [cell for _, cell in vae.cells_and_names()]
    assert all(c.get_flags().get("fp32") for c in cells if isinstance(c, nn.GroupNorm))
    assert all(c.get_flags().get("fp16") for c in cells if isinstance(c, (nn.Conv2d, nn.Conv3d)))
    z = random_latents()
    decoded = vae.decode(ms.Tensor(z), FRAMES)
    reference = torch_decode(torch_vae, z, FRAMES)
    assert decoded.dtype == ms.float32
    assert max_err(decoded.asnumpy(), reference) < FP16_REL_TOL * np.abs(reference).max()


# ---------------------------------------------------------------------------------------------------------
# decode_video: whole videos by default, LattePipeline's chunks on request
# ---------------------------------------------------------------------------------------------------------

def test_decode_video_decodes_whole_videos(converted):
    torch_vae, _, target = converted
    vae = load_vae(target)
    scale = vae.scaling_factor
    latents = random_latents((BATCH, FRAMES) + LATENT_SHAPE[1:])  # (B, F, C, h, w), scaled
    reference = torch_decode(torch_vae, latents.reshape(LATENT_SHAPE) / scale, FRAMES)
    for frames_per_batch in (1, FRAMES, 2 * FRAMES):  # one video per call (even when fewer frames are asked), all
        video = decode_video(vae, latents, frames_per_batch=frames_per_batch).asnumpy()
        assert video.shape == (BATCH, FRAMES, 3, FRAME_SIZE, FRAME_SIZE)
        assert max_err(video.reshape(reference.shape), reference) < DECODE_TOL, frames_per_batch


def test_decode_chunk_size_reproduces_latte_pipeline(converted):
    """diffusers' LattePipeline.decode_latents (its official twin does the same with 14) cuts the flat frame
    sequence every decode_chunk_size frames, across videos; decode_chunk_size=2 does the same here."""
    torch_vae, _, target = converted
    vae = load_vae(target)
    latents = random_latents((BATCH, FRAMES) + LATENT_SHAPE[1:])
    pipeline = types.SimpleNamespace(vae=torch_vae)  # decode_latents only reads self.vae
    with torch.no_grad():
        reference = diffusers.LattePipeline.decode_latents(
            pipeline, torch.from_numpy(latents).permute(0, 2, 1, 3, 4), video_length=FRAMES, decode_chunk_size=2,
        ).permute(0, 2, 1, 3, 4).numpy()  # (B, C, F, H, W) -> (B, F, C, H, W)
    chunked = decode_video(vae, latents, decode_chunk_size=2).asnumpy()
    assert max_err(chunked, reference) < DECODE_TOL
    assert max_err(decode_video(vae, latents).asnumpy(), reference) > 1e-2  # whole videos differ: no seams


def test_decode_rejects_frames_that_do_not_group(converted):
    vae = load_vae(converted[2])
    with pytest.raises(ValueError, match="num_frames=4 does not divide the 6 latent frames"):
        vae.decode(ms.Tensor(random_latents()), 4)


# ---------------------------------------------------------------------------------------------------------
# Conversion and the architecture record
# ---------------------------------------------------------------------------------------------------------

def test_record_says_temporal_and_lone_safetensors_converts_the_same(tmp_path, converted):
    _, folder, target = converted
    with open(meta_path(target)) as f:
        meta = json.load(f)
    assert meta["model"] == "AutoencoderKLTemporalDecoder" and meta["config"]["kind"] == KIND_TEMPORAL
    assert meta["config"]["use_post_quant_conv"] is False
    lone = str(tmp_path / "lone.ckpt")  # no config.json: the kind comes from the weights
    assert convert_main(["--source", os.path.join(folder, "diffusion_pytorch_model.safetensors"),
                         "--target", lone]) == 0
    with open(meta_path(lone)) as f:
        lone_config = json.load(f)["config"]
    assert lone_config == meta["config"]  # shapes give all but groups and scaling factor, whose defaults hold here
    first, second = ms.load_checkpoint(target), ms.load_checkpoint(lone)
    assert set(first) == set(second) and all(np.array_equal(first[k].asnumpy(), second[k].asnumpy()) for k in first)


def test_converter_names_a_missing_mix_factor(tmp_path, converted, capsys):
    torch_vae = converted[0]
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = {k: torch.from_numpy(v) for k, v in torch_state(torch_vae).items()}
    del state["decoder.up_blocks.1.resnets.2.time_mixer.mix_factor"]
    source = str(tmp_path / "missing.safetensors")
    safetensors_torch.save_file(state, source)
    assert cli_main(convert_main, ["--source", source, "--target", str(tmp_path / "out.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "parameters not filled: decoder.up_blocks.1.resnets.2.time_mixer.mix_factor" in err


def test_latte1_config_builds_diffusers_names_shapes_and_norms():
    """Latte-1's real config.json builds cells named and shaped like diffusers' state dict (no weights needed),
    every GroupNorm with diffusers' groups and epsilon (1e-5 in the temporal resnets, 1e-6 elsewhere)."""
    with torch.device("meta"):
        reference = diffusers.AutoencoderKLTemporalDecoder(
            **{k: v for k, v in LATTE1_TEMPORAL_CONFIG.items() if not k.startswith("_")})
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    renamed = {mindspore_name(k): shape for k, shape in expected.items()}  # diffusers' names are canonical
    vae = build_vae(LATTE1_TEMPORAL_CONFIG)
    assert isinstance(vae, AutoencoderKLTemporalDecoder) and vae.downsample_factor == 8
    assert {p.name: tuple(p.shape) for p in vae.get_parameters()} == renamed
    norms = {name: (m.num_groups, m.eps) for name, m in reference.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    assert {name: (c.num_groups, c.eps) for name, c in vae.cells_and_names() if isinstance(c, nn.GroupNorm)} == norms


@pytest.mark.parametrize("fields, message", [
    ({"_class_name": "AutoencoderKLTemporalDecoder", "use_post_quant_conv": True}, "has no post_quant_conv"),
    ({"kind": KIND_TEMPORAL, "mid_block_add_attention": False}, "always has its mid-block attentions"),
    ({"kind": KIND_KL, "_class_name": "AutoencoderKLTemporalDecoder"}, "config says kind='kl'"),
    ({"kind": "video"}, "kind='video' is not a VAE kind"),
    ({"_class_name": "AutoencoderKLCogVideoX"}, "'AutoencoderKLCogVideoX', not one of"),
])
def test_bad_temporal_config_is_a_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig.from_dict({**TINY, **fields})


def test_each_class_builds_its_own_kind():
    assert VAEConfig.from_dict(LATTE1_TEMPORAL_CONFIG).kind == KIND_TEMPORAL
    assert isinstance(build_vae(dict(TINY, kind=KIND_KL)), AutoencoderKL)
    assert AutoencoderKLTemporalDecoder(**TINY).config.kind == KIND_TEMPORAL  # the class implies its kind
    with pytest.raises(ValueError, match="not 'AutoencoderKL': build it with latte.models.vae.build_vae"):
        AutoencoderKL(**TINY, kind=KIND_TEMPORAL)
