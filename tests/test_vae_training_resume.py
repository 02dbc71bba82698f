"""tools/train_vae.py resumes exactly: N steps straight and N/2 + --resume + N/2 give bit-identical weights, with
the discriminator training across the split; the perceptual term off says how to turn it on."""
import os

import mindspore as ms
import numpy as np
import pytest

from latte.checkpoint_io import read_meta
from tests.vae_training_support import read_metrics, train_args, write_frames
from tools import train_vae

STEPS = 4
COMMON = ["--disc_start", 1, "--ckpt_save_interval", 2, "--ckpt_max_keep", 5, "--autoencoder_img_save_steps", 100,
          "--autoencoder_lr", "1e-3", "--seed", 7]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("frames"))


def checkpoint(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path, frames, capfd):
    train_vae.main(train_args(frames, tmp_path / "straight", "", *COMMON, "--max_steps", STEPS))
    assert "perceptual (LPIPS) term is OFF" in capfd.readouterr().err  # and it names lpips_converter.py:
    train_vae.main(train_args(frames, tmp_path / "split", "", *COMMON, "--max_steps", STEPS // 2))
    with pytest.raises(ValueError, match="--resume"):  # a new run never overwrites an old one
        train_vae.main(train_args(frames, tmp_path / "split", "", *COMMON, "--max_steps", STEPS))
    train_vae.main(train_args(frames, tmp_path / "split", "", *COMMON, "--max_steps", STEPS, "--resume"))

    name = f"{STEPS:07d}.ckpt"
    for kind in ("vae-", "train_state-"):  # the VAE, and everything else: discriminator, Adam moments, BN stats
        a = checkpoint(tmp_path / "straight" / "ckpt" / (kind + name))
        b = checkpoint(tmp_path / "split" / "ckpt" / (kind + name))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{kind}{name}: {key}")
    state = checkpoint(tmp_path / "split" / "ckpt" / ("train_state-" + name))
    assert any(k.startswith("discriminator.main.") and "moving_mean" in k for k in state)
    assert any(k.startswith("moment1.discriminator.") for k in state)
    straight, split = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "split")
    assert [r["step"] for r in split] == [str(s) for s in range(1, STEPS + 1)]
    assert [r["loss"] for r in split] == [r["loss"] for r in straight]
    assert os.path.isfile(tmp_path / "split" / "vae.ckpt.json")
    # the best held-out checkpoint survives the resume: the same weights and record as the uninterrupted run's
    best = {run: read_meta(str(tmp_path / run / "vae-best.ckpt")) for run in ("straight", "split")}
    assert {k: v for k, v in best["split"].items() if k != "run"} == {k: v for k, v in best["straight"].items()
                                                                     if k != "run"}
    assert best["split"]["val_psnr_db"] >= read_meta(str(tmp_path / "split" / "vae.ckpt"))["val_psnr_db"]
    a, b = (checkpoint(tmp_path / run / "vae-best.ckpt") for run in ("straight", "split"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
