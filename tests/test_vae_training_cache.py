"""tools/embedding_cache.py with a VAE trained by tools/train_vae.py (1 channel, 2 latent channels, 4x): clips are
turned to luma as in training, latents have the VAE's shape, and train.py trains from the cache."""
import glob
import os

import numpy as np
import pytest

import train
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)
from tests.vae_training_support import train_tiny_vae

LATTE = ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--device_target", "CPU"]


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    return train_tiny_vae(tmp_path_factory.mktemp("vae"))


def test_embedding_cache_and_training_from_it(trained_vae, tmp_path):
    from tools import embedding_cache

    cache = tmp_path / "cache"
    source = ["--data_config.train_data_type", "synthetic", "--data_config.num_videos", "3",
              "--data_config.video_length", "6", "--data_config.synthetic_shapes", "digit"]
    assert embedding_cache.cli(["--cache_folder", str(cache), "--vae_checkpoint", trained_vae, "--image_size", "16",
                                "--device_target", "CPU", "--data_config.num_parallel_workers", "1",
                                *source]) == 0
    latents = [np.load(f) for f in sorted(glob.glob(os.path.join(cache, "**", "*.npy"), recursive=True))]
    assert len(latents) == 3 and latents[0].shape == (6, 2, 4, 4)  # (F, latent channels, 16/4, 16/4)
    out = tmp_path / "latte"
    assert train.main(LATTE + ["--vae_checkpoint", trained_vae, "--output_path", str(out), "--max_steps", "2",
                               "--train_batch_size", "2", "--data_config.train_data_type", "numpy",
                               "--data_config.data_folder", str(cache), "--data_config.sample_stride", "1",
                               "--data_config.num_parallel_workers", "1"]) == 2
