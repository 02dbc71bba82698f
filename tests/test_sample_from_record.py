"""A trained checkpoint carries its config: sample.py needs only its path (nanoGPT's model_args)."""
import json
import os
import shutil

import imageio.v3 as iio
import pytest
import yaml

import sample
import train
from latte.checkpoint_io import meta_path
from latte.config import ConfigError, load_config
from latte.data import write_synthetic_dataset
from latte.options import SampleConfig

TRAINED = {"model_name": "Latte-T/2", "image_size": 16, "num_frames": 4, "noise_schedule": "squaredcos_cap_v2",
           "predict_xstart": True}
SAMPLING = ["--device_target", "CPU", "--sampling_steps", "2", "--ddim_sampling", "True", "--seed", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-step pixel-space training run with non-default model and diffusion keys; returns its ckpt/ folder."""
    root = tmp_path_factory.mktemp("record")
    write_synthetic_dataset(str(root / "frames"), n_videos=2, n_frames=6, size=16, layout="frame_folder", seed=1)
    keys = [arg for k, v in TRAINED.items() for arg in (f"--{k}", str(v))]
    assert train.main(keys + ["--vae_checkpoint", "", "--device_target", "CPU", "--train_batch_size", "2",
                              "--max_steps", "1", "--output_path", str(root / "run"),
                              "--data_config.data_folder", str(root / "frames"),
                              "--data_config.train_data_type", "frame_folder", "--data_config.sample_stride", "1",
                              "--data_config.num_parallel_workers", "1"]) == 1
    return root / "run" / "ckpt"


def resolved(out_dir):
    with open(os.path.join(out_dir, "config.yaml")) as f:
        return yaml.safe_load(f)


def test_sample_from_a_bare_checkpoint_path(tmp_path, run):
    out = sample.main(["--checkpoint", str(run / "latte-0000001-ema.ckpt"), "--output_path", str(tmp_path)] + SAMPLING)
    config = resolved(out)
    assert {k: config[k] for k in TRAINED} == TRAINED
    assert config["vae_checkpoint"] == ""  # trained in pixel space, so no VAE (the default would be sd-vae-ft-mse)
    assert iio.imread(os.path.join(out, "sample_000.gif"), index=None).shape[1:3] == (16, 16)


def test_a_key_that_contradicts_the_record_is_one_error_line(tmp_path, run):
    with pytest.raises(ConfigError) as err:
        sample.main(["--checkpoint", str(run / "latte-0000001-ema.ckpt"), "--num_frames", "8", "--model_name",
                     "Latte-T/2", "--output_path", str(tmp_path)] + SAMPLING)
    message = str(err.value)
    assert "num_frames=8 but the checkpoint has num_frames=4" in message and "\n" not in message
    assert "model_name" not in message  # an explicit key that agrees is fine


def test_a_train_state_samples_with_the_ema_weights_saved_with_it(tmp_path, run):
    from_state = sample.main(["--checkpoint", str(run / "train_state-0000001.ckpt"),
                              "--output_path", str(tmp_path / "state")] + SAMPLING)
    from_ema = sample.main(["--checkpoint", str(run / "latte-0000001-ema.ckpt"),
                            "--output_path", str(tmp_path / "ema")] + SAMPLING)
    assert resolved(from_state)["checkpoint"] == str(run / "latte-0000001-ema.ckpt")
    with open(os.path.join(from_state, "sample_000.gif"), "rb") as a, \
            open(os.path.join(from_ema, "sample_000.gif"), "rb") as b:
        assert a.read() == b.read()


def test_a_train_state_without_its_weights_names_the_file_to_use(tmp_path, run):
    shutil.copy(run / "train_state-0000001.ckpt", tmp_path / "train_state-0000001.ckpt")
    with pytest.raises(ConfigError, match="latte-0000001-ema.ckpt"):
        load_config(SampleConfig, ["--checkpoint", str(tmp_path / "train_state-0000001.ckpt")])


def test_record_fills_only_what_is_not_given(tmp_path):
    ckpt = tmp_path / "latte-0000009.ckpt"
    ckpt.write_bytes(b"weights are not read while parsing the config")
    record = {"model_name": "Latte-S/2", "image_size": 64, "pixel_space": False, "vae_checkpoint": "old/vae.ckpt",
              "config": {"num_frames": 8, "condition": "class", "num_classes": 7, "class_dropout_prob": 0.1,
                         "patch_embedder": "linear"},
              "sd_scale_factor": 0.5, "diffusion": {"noise_schedule": "linear", "predict_xstart": False,
                                                    "learn_sigma": False}}
    with open(meta_path(str(ckpt)), "w") as f:
        json.dump(record, f)
    cfg = load_config(SampleConfig, ["--checkpoint", str(ckpt), "--vae_checkpoint", "moved/vae.ckpt"])
    assert cfg.sd_scale_factor == 0.5  # the latent multiplier the model was trained with
    assert (cfg.model_name, cfg.image_size, cfg.num_frames, cfg.condition, cfg.num_classes) == \
        ("Latte-S/2", 64, 8, "class", 7)
    assert (cfg.patch_embedder, cfg.learn_sigma, cfg.vae_checkpoint) == ("linear", False, "moved/vae.ckpt")
    with pytest.raises(ConfigError, match="vae_checkpoint='' but the checkpoint has vae_checkpoint='old/vae.ckpt'"):
        load_config(SampleConfig, ["--checkpoint", str(ckpt), "--vae_checkpoint", ""])
