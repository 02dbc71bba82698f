"""tools/train_vae.py on tiny 1-channel 24x32 frames: every loss on, the discriminator starting at its step,
accumulation, the adaptive weight against a direct computation, the saved VAE, config errors."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from latte.config import ConfigError
from latte.models.vae import AutoencoderKL, load_vae
from latte.training.updater import Updater
from latte.vae_training.discriminator import PatchGAN, patchgan_output_size
from latte.vae_training.step import AutoencoderForward, GeneratorStep
from tests.vae_training_support import read_metrics, train_args, write_frames, write_tiny_lpips
from tools import train_vae

TINY_VAE = dict(in_channels=1, out_channels=1, block_out_channels=(8, 16, 16), norm_num_groups=4, latent_channels=2,
                layers_per_block=1)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="module")
def lpips(tmp_path_factory):
    return write_tiny_lpips(tmp_path_factory.mktemp("lpips") / "lpips.ckpt")


@pytest.mark.slow
def test_every_loss_discriminator_from_its_step(tmp_path, frames, lpips):
    out = tmp_path / "run"
    result = train_vae.main(train_args(frames, out, lpips, "--max_steps", 4, "--disc_start", 2,
                                       "--mid_block_add_attention", "True",
                                       "--autoencoder_acc_steps", 2, "--autoencoder_img_save_steps", 2,
                                       "--ckpt_save_interval", 2, "--reconstruction_loss", "l2"))
    assert result["step"] == 4 and np.isfinite(result["psnr_db"])
    rows = read_metrics(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        for key in ("loss", "rec_loss", "perceptual_loss", "kl_loss"):
            assert np.isfinite(float(row[key])), (key, row)
        assert float(row["perceptual_loss"]) > 0  # LPIPS on
    for row in rows[:2]:  # optimizer steps 0 and 1: before disc_start
        assert row["d_loss"] == row["adv_loss"] == row["d_weight"] == ""
    for row in rows[2:]:
        assert np.isfinite(float(row["d_loss"])) and float(row["d_weight"]) > 0 and row["adv_loss"] != ""
    assert rows[1]["val_psnr_db"] and rows[3]["val_psnr_db"]
    assert sorted(os.listdir(out / "samples")) == ["step-0000000.png", "step-0000002.png", "step-0000004.png"]
    assert {"vae-0000004.ckpt", "vae-0000004.ckpt.json", "train_state-0000004.ckpt"} <= set(os.listdir(out / "ckpt"))

    # the saved VAE is what load_vae builds: 1 channel in and out, 2 latent channels, 4x downsampling
    vae = load_vae(str(out / "vae.ckpt"))
    assert (vae.config.in_channels, vae.config.latent_channels, vae.downsample_factor) == (1, 2, 4)
    mean, _ = vae.encode(ms.Tensor(np.zeros((1, 1, 24, 32), np.float32)))
    assert tuple(mean.shape) == (1, 2, 6, 8)


@pytest.mark.parametrize("adaptive, mode", [(True, ms.GRAPH_MODE), (True, ms.PYNATIVE_MODE),
                                           (False, ms.GRAPH_MODE)])
def test_generator_step_matches_direct_gradients(adaptive, mode):
    """The vjp step (adaptive weight from the last layer's gradients, one pullback) against value_and_grad of
    the whole loss. An SGD step with lr 1 turns the weight change into the gradient."""
    previous = ms.get_context("mode")
    try:
        _check_generator_step(adaptive, mode)
    finally:
        ms.set_context(mode=previous)


def _check_generator_step(adaptive, mode):
    ms.set_context(mode=mode)
    ms.set_seed(0)
    vae = AutoencoderKL(**TINY_VAE)
    disc = PatchGAN(1, 8, 2)
    for p in disc.get_parameters():
        p.name = "discriminator." + p.name
    disc.set_train(True)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.uniform(-1, 1, (2, 1, 24, 32)).astype(np.float32))
    noise = ms.Tensor(rng.standard_normal((2, 2, 6, 8)).astype(np.float32))
    forward = AutoencoderForward(vae)
    weights = vae.trainable_params()
    before = [p.asnumpy().copy() for p in weights]
    step = GeneratorStep(forward, Updater(nn.SGD(weights, learning_rate=1.0)), reconstruction_loss="l1",
                         kl_weight=0.01, discriminator=disc, disc_weight=0.5, disc_adaptive=adaptive)
    loss, _, _, _, _, d_weight, rec, *_ = step(x, noise)
    grads = [b - p.asnumpy() for b, p in zip(before, weights)]
    for p, b in zip(weights, before):
        p.set_data(ms.Tensor(b))
    ms.set_context(mode=ms.PYNATIVE_MODE)  # the reference, eagerly (no graph compiles)

    # the reconstruction is vae.decode of the posterior sample
    mean, logvar = vae.encode(x)
    np.testing.assert_allclose(rec.asnumpy(), vae.decode(mean + ops.exp(0.5 * logvar) * noise).asnumpy(),
                               atol=1e-5)

    def rec_of(x, noise):
        return forward(x, noise)[0]

    def nll_fn(x, noise):
        return ops.mean(ops.abs(rec_of(x, noise) - x))

    def adv_fn(x, noise):
        return -ops.mean(disc(rec_of(x, noise)))

    last = [vae.decoder.conv_out.weight]
    g_nll = ops.grad(nll_fn, None, last)(x, noise)[0].asnumpy()
    g_adv = ops.grad(adv_fn, None, last)(x, noise)[0].asnumpy()
    expected_weight = float(0.5 * np.linalg.norm(g_nll) / (np.linalg.norm(g_adv) + 1e-4)) if adaptive else 0.5
    np.testing.assert_allclose(float(d_weight.asnumpy()), expected_weight, rtol=1e-4)

    def total_fn(x, noise):
        rec, kl, _ = forward(x, noise)
        return ops.mean(ops.abs(rec - x)) + 0.01 * kl - expected_weight * ops.mean(disc(rec))

    expected_loss, expected = ops.value_and_grad(total_fn, None, weights)(x, noise)
    np.testing.assert_allclose(float(loss.asnumpy()), float(expected_loss.asnumpy()), rtol=1e-5)
    scale = max(np.abs(g.asnumpy()).max() for g in expected)  # some gradients are ~0 (attention key bias)
    for p, got, want in zip(weights, grads, expected):
        np.testing.assert_allclose(got, want.asnumpy(), rtol=0, atol=1e-4 * scale, err_msg=p.name)


def test_patchgan_output_size():
    assert patchgan_output_size((24, 32), 2) == (4, 6)
    assert patchgan_output_size((256, 256), 3) == (30, 30)  # pix2pix's 70x70 PatchGAN map on 256x256 images
    disc = PatchGAN(3, 8, 3)
    assert tuple(disc(ms.Tensor(np.zeros((1, 3, 256, 256), np.float32))).shape) == (1, 1, 30, 30)


@pytest.mark.parametrize("extra, needle", [
    (["--frame_height", "26"], "multiple of the VAE's downsampling 4"),
    (["--disc_layers", "5", "--disc_start", "0"], "lower disc_layers"),
    (["--norm_num_groups", "3"], "does not divide"),
    (["--frame_channels", "2"], "not one of"),
    (["--kl_wieght", "1"], "did you mean 'kl_weight'"),
])
def test_config_errors(tmp_path, extra, needle):
    with pytest.raises((ConfigError, ValueError), match=needle):
        train_vae.main(train_args(str(tmp_path), tmp_path / "run", "", *extra))


def test_missing_lpips_checkpoint_is_an_error(tmp_path, frames):
    with pytest.raises(ValueError, match="lpips_converter.py"):
        train_vae.main(train_args(frames, tmp_path / "run", str(tmp_path / "missing.ckpt"), "--max_steps", 1))
