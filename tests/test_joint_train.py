"""Image-video joint training end to end: train.py on videos + images (class-conditional, from video files),
then sample.py from the checkpoint (n = 0 when sampling); the joint loss
covers the images with their own labels."""
import os

import numpy as np
import pytest

import mindspore as ms

import sample
import train
from latte.data import write_synthetic_dataset
from latte.diffusion import create_diffusion
from latte.models.latte import Latte
from latte.training.joint import ImageConditionDrop, JointClassTrainLoss

TINY = ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--device_target", "CPU",
        "--vae_checkpoint", "", "--train_batch_size", "2", "--log_interval", "1", "--step_mode", "True",
        "--data_config.num_parallel_workers", "1", "--data_config.sample_stride", "1",
        "--data_config.image_video_joint", "True", "--data_config.use_image_num", "2", "--max_steps", "2"]


def test_joint_train_from_videos_then_sample(tmp_path):
    """Class-conditional, from video files (unconditional joint training is the same step without labels)."""
    data = tmp_path / "data"
    write_synthetic_dataset(str(data), n_videos=4, n_frames=6, size=16, layout="gif", seed=1)
    out = tmp_path / "run"
    assert train.main(TINY + ["--output_path", str(out), "--data_config.data_folder", str(data),
                              "--condition", "class"]) == 2
    ckpt = out / "ckpt" / "latte-0000002-ema.ckpt"
    assert ckpt.exists()
    run_dir = sample.main(["--checkpoint", str(ckpt), "--image_size", "16", "--num_frames", "4", "--device_target",
                           "CPU", "--sampling_steps", "2", "--ddim_sampling", "True", "--output_path",
                           str(tmp_path / "s"), "--num_samples", "1"])
    assert any(name.startswith("sample_000") and name.endswith(".gif") for name in os.listdir(run_dir))


def test_joint_loss_covers_video_and_images_with_their_labels():
    """The loss's mse is the mean over all F + n frames of (noise - eps)^2, eps from the model given each image's
    label and the images' dropout: computed here by hand from q_sample."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)  # no graph to compile for one call
    try:
        _check_joint_loss()
    finally:
        ms.set_context(mode=previous)


def _check_joint_loss():
    frames, images, b = 4, 2, 2
    latte = Latte(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_frames=frames,
                  num_classes=5, condition="class", kernels="native")
    rng = np.random.default_rng(0)
    for p in latte.trainable_params():
        p.set_data(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.2))
    diffusion = create_diffusion("")
    loss = JointClassTrainLoss(latte, diffusion)
    x = rng.standard_normal((b, frames + images, 4, 8, 8)).astype(np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    t = np.array([10, 700], np.int32)
    y, drop = np.array([1, 3], np.int32), np.array([0, 1], np.int32)
    image_labels, image_drop = np.array([[0, 4], [2, 2]], np.int32), np.array([1, 0], np.int32)
    _, mse, _ = loss(*map(ms.Tensor, (x, t, noise, np.zeros_like(x), drop, y, image_labels, image_drop)))
    a = np.sqrt(np.cumprod(1 - diffusion.betas))[t].reshape(-1, 1, 1, 1, 1)
    x_t = a * x + np.sqrt(1 - a**2) * noise
    eps = latte(ms.Tensor(x_t.astype(np.float32)), ms.Tensor(t), ms.Tensor(y), force_drop_ids=ms.Tensor(drop),
                image_labels=ms.Tensor(image_labels), image_drop_ids=ms.Tensor(image_drop)).asnumpy()[:, :, :4]
    np.testing.assert_allclose(float(mse.asnumpy()), np.mean((noise - eps) ** 2), rtol=1e-5)
    video_only = np.mean((noise[:, :frames] - eps[:, :frames]) ** 2)
    assert abs(video_only - np.mean((noise - eps) ** 2)) > 1e-4  # the images count


def test_image_label_drop_is_numbered_like_step_noise():
    """Two ranks of batch 1 draw, together, what one process of batch 2 draws; a resumed map continues."""
    labels = np.zeros((2, 3), np.int32)
    single = np.concatenate([ImageConditionDrop(5, 0, 0, 2, 0.5)(labels)[1] for _ in range(1)] +
                            [ImageConditionDrop(5, 0, 1, 2, 0.5)(labels)[1]])
    one_by_one = []
    ranks = [ImageConditionDrop(5, r, 0, 1, 0.5, num_ranks=2) for r in (0, 1)]
    for _ in range(2):
        one_by_one += [ranks[r](labels[:1])[1][0] for r in (0, 1)]
    np.testing.assert_array_equal(single, one_by_one)
    many = np.concatenate([ImageConditionDrop(5, 0, 0, 64, 0.5)(np.zeros((64, 1), np.int32))[1]])
    assert 10 < many.sum() < 54  # p = 0.5
