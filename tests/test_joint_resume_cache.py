"""Image-video joint training (class-conditional) through train.py: a resumed run ends with the weights of an
uninterrupted one (images, their labels and their label dropout re-drawn exactly), and a joint run from an
embedding cache (numpy and mindrecord: the images are cached latents) trains, then sample.py samples it."""
import os

import numpy as np
import pytest

import sample
import train
from latte.data import write_synthetic_dataset
from tests.cache_support import IMAGE_SIZE, cache_args, run_tool
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)
from tests.test_train_e2e import ckpt_params

JOINT = ["--device_target", "CPU", "--mode", "1", "--train_batch_size", "2", "--log_interval", "1",
         "--step_mode", "True", "--ckpt_save_interval", "1", "--ckpt_max_keep", "5", "--condition", "class",
         "--data_config.num_parallel_workers", "1", "--data_config.sample_stride", "1",
         "--data_config.image_video_joint", "True", "--data_config.use_image_num", "2"]


def test_joint_resume_is_exact(tmp_path):
    """2 steps straight vs 1 step, then --resume to 2: bit-identical raw and EMA weights. Dropout at 0.5 so both
    the clips' and the images' label-drop draws matter; synthetic videos of 4 classes, 4 videos per epoch of 2
    steps, so the second step draws other images than the first."""
    common = JOINT + ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--vae_checkpoint",
                      "", "--class_dropout_prob", "0.5", "--data_config.train_data_type", "synthetic",
                      "--data_config.num_videos", "4", "--data_config.video_length", "6"]
    assert train.main(common + ["--output_path", str(tmp_path / "straight"), "--max_steps", "2"]) == 2
    assert train.main(common + ["--output_path", str(tmp_path / "split"), "--max_steps", "1"]) == 1
    assert train.main(common + ["--output_path", str(tmp_path / "split"), "--max_steps", "2", "--resume"]) == 2
    for name in ("latte-0000002.ckpt", "latte-0000002-ema.ckpt"):
        a, b = ckpt_params(tmp_path / "straight" / "ckpt" / name), ckpt_params(tmp_path / "split" / "ckpt" / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")
    one = ckpt_params(tmp_path / "split" / "ckpt" / "latte-0000001.ckpt")
    assert any(not np.array_equal(one[k], a[k]) for k in a)  # the resumed step did train


@pytest.fixture(scope="module")
def frame_videos(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frames"))
    write_synthetic_dataset(folder, n_videos=4, n_frames=6, size=IMAGE_SIZE, layout="frame_folder")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("file_type", ["numpy", "mindrecord"])
def test_joint_train_from_cache_then_sample(tmp_path, vae_path, frame_videos, file_type):
    """Clips and images both from the cache (no VAE in the step), two steps, then sample.py decodes with the
    VAE the run recorded."""
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(frame_videos, cache, vae_path, "frame_folder", "--cache_file_type", file_type,
                                "--condition", "class")) == 0
    out = tmp_path / "run"
    assert train.main(JOINT + ["--model_name", "Latte-T/2", "--image_size", str(IMAGE_SIZE), "--num_frames", "2",
                               "--vae_checkpoint", vae_path, "--num_classes", "4", "--max_steps", "2",
                               "--output_path", str(out), "--data_config.train_data_type", file_type,
                               "--data_config.data_folder", str(cache)]) == 2
    ckpt = out / "ckpt" / "latte-0000002-ema.ckpt"
    assert ckpt.exists()
    run_dir = sample.main(["--checkpoint", str(ckpt), "--device_target", "CPU", "--mode", "1", "--num_frames", "2",
                           "--sampling_steps", "2", "--ddim_sampling", "True", "--num_samples", "1",
                           "--output_path", str(tmp_path / "samples")])
    assert any(name.startswith("sample_000") for name in os.listdir(run_dir))
