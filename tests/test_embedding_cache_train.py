"""train.py from a latent cache, in-process: two optimizer steps per cache format, no VAE built."""
import csv
import os

import pytest

from latte.data import write_synthetic_dataset
from tests.cache_support import IMAGE_SIZE, cache_args, run_tool
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)



@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frames"))
    write_synthetic_dataset(folder, n_videos=4, n_frames=8, size=IMAGE_SIZE, layout="frame_folder")
    return folder


@pytest.mark.parametrize("file_type", ["numpy", "mindrecord"])
def test_two_steps_from_cache_write_a_checkpoint_without_a_vae(tmp_path, vae_path, videos, file_type, monkeypatch):
    import train
    from latte.models import vae as vae_module

    cache = tmp_path / "cache"
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--cache_file_type", file_type,
                                "--condition", "class")) == 0

    def no_vae(*args, **kwargs):
        raise AssertionError("training from a cache must not build the VAE")

    monkeypatch.setattr(vae_module, "load_vae", no_vae)
    out = tmp_path / "run"
    step = train.main(["--model_name", "Latte-T/2", "--image_size", str(IMAGE_SIZE), "--num_frames", "4",
                       "--max_steps", "2", "--device_target", "CPU", "--output_path", str(out),
                       "--vae_checkpoint", vae_path, "--condition", "class", "--num_classes", "3",
                       "--train_batch_size", "2", "--data_config.train_data_type", file_type,
                       "--data_config.data_folder", str(cache), "--data_config.sample_stride", "2",
                       "--data_config.num_parallel_workers", "1"])
    assert step == 2
    ckpts = os.listdir(out / "ckpt")
    assert "latte-0000002.ckpt" in ckpts and "latte-0000002-ema.ckpt" in ckpts, ckpts
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    print(f"{file_type}: step times {[r['step_time_s'] for r in rows]} s")
