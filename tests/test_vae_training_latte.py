"""A VAE trained by tools/train_vae.py (1 channel, 2 latent channels, 4x downsampling) in Latte: the options read
its record, train.py trains two steps on grayscale clips through it, sample.py decodes with it."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import sample
import train
from latte.config import ConfigError
from latte.models.vae_config import read_vae_architecture
from latte.options import SampleConfig, TrainConfig
from tests.vae_training_support import train_tiny_vae

LATTE = ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--device_target", "CPU"]


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    return train_tiny_vae(tmp_path_factory.mktemp("vae"))


def test_options_take_the_architecture_from_the_record(trained_vae, tmp_path):
    cfg = SampleConfig(checkpoint="x.ckpt", vae_checkpoint=trained_vae, image_size=16, model_name="Latte-T/2")
    assert (cfg.latent_channels, cfg.downsample, cfg.latent_size, cfg.frame_channels) == (2, 4, 4, 1)
    assert cfg.latte_kwargs()["in_channels"] == 2
    with pytest.raises(ConfigError, match="multiple of 8"):  # 4x downsampling x patch 2
        SampleConfig(checkpoint="x.ckpt", vae_checkpoint=trained_vae, image_size=12, model_name="Latte-T/2").validate()
    # without the record the architecture is inferred from the weights; a missing file keeps sd-vae-ft-mse's
    bare = tmp_path / "bare.ckpt"
    shutil.copy(trained_vae, bare)
    assert read_vae_architecture(str(bare)).latent_channels == 2
    assert read_vae_architecture(str(tmp_path / "missing.ckpt")) is None
    assert SampleConfig(checkpoint="x.ckpt", vae_checkpoint=str(tmp_path / "missing.ckpt")).latent_channels == 4
    assert TrainConfig(vae_checkpoint="").latent_channels == 3  # pixel space
    record = json.loads(open(trained_vae + ".json").read())
    assert record["config"]["in_channels"] == 1 and record["config"]["scaling_factor"] > 0


@pytest.mark.slow
def test_latte_trains_and_samples_through_the_trained_vae(trained_vae, tmp_path):
    out = tmp_path / "latte"
    scale = json.loads(open(trained_vae + ".json").read())["config"]["scaling_factor"]
    steps = train.main(LATTE + ["--vae_checkpoint", trained_vae, "--sd_scale_factor", str(scale),
                                "--output_path", str(out), "--train_batch_size", "2", "--max_steps", "2",
                                "--step_mode", "True",
                                "--data_config.train_data_type", "synthetic", "--data_config.num_videos", "4",
                                "--data_config.video_length", "8", "--data_config.synthetic_shapes", "digit",
                                "--data_config.num_parallel_workers", "1", "--data_config.sample_stride", "1"])
    assert steps == 2
    loss = [float(line.split(",")[2]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert len(loss) == 2 and all(np.isfinite(loss))
    meta = json.loads((out / "ckpt" / "latte-0000002.ckpt.json").read_text())
    assert meta["config"]["in_channels"] == 2 and meta["config"]["input_size"] == 4

    run_dir = sample.main(LATTE + ["--checkpoint", str(out / "ckpt" / "latte-0000002-ema.ckpt"),
                                   "--vae_checkpoint", trained_vae, "--sd_scale_factor", str(scale),
                                   "--sampling_steps", "2", "--ddim_sampling", "True",
                                   "--output_path", str(tmp_path / "samples")])
    gif = Image.open(os.path.join(run_dir, "sample_000.gif"))
    assert gif.size == (16, 16) and gif.n_frames == 4

