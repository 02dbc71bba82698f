"""The config system: yaml + CLI overrides, typed values, unknown keys named with the closest valid one."""
import dataclasses
import glob
import itertools
import os
import re
from typing import List

import pytest
import yaml

from latte.config import ConfigError, field, from_dict, load_config, save_config
from latte.models.registry import LATTE_MODELS
from latte.options import SampleConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Inner:
    data_folder: str = field("", "where")
    sample_stride: int = field(3, "stride")


@dataclasses.dataclass
class Outer:
    lr: float = field(1e-4, "learning rate")
    flag: bool = field(False, "a flag")
    labels: List[int] = field(default_factory=list, help="labels")
    data_config_file: str = field("", "include", include="data_config")
    data_config: Inner = field(default_factory=Inner, help="data")
    mode: int = field(0, "mode", choices=(0, 1))


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_yaml_then_cli_override(tmp_path):
    cfg_file = write(tmp_path / "a.yaml", {"lr": 2e-5, "flag": True})
    cfg = load_config(Outer, ["-c", cfg_file, "--lr", "3e-4"])
    assert cfg.lr == 3e-4 and cfg.flag is True


def test_bool_flag_forms(tmp_path):
    assert load_config(Outer, ["--flag"]).flag is True
    assert load_config(Outer, ["--flag", "False"]).flag is False
    with pytest.raises(ConfigError, match="flag: expected true/false"):
        load_config(Outer, ["--flag", "maybe"])


def test_unknown_yaml_key_names_the_closest(tmp_path):
    cfg_file = write(tmp_path / "a.yaml", {"lrr": 1.0})
    with pytest.raises(ConfigError, match=r"unknown config key 'lrr'.*did you mean 'lr'"):
        load_config(Outer, ["-c", cfg_file])


def test_unknown_cli_flag_names_the_closest():
    with pytest.raises(ConfigError, match=r"'flagg'.*did you mean 'flag'"):
        load_config(Outer, ["--flagg", "1"])


def test_type_and_choice_errors():
    with pytest.raises(ConfigError, match="lr: expected a number"):
        from_dict(Outer, {"lr": "fast"})
    with pytest.raises(ConfigError, match="mode=2 is not one of"):
        from_dict(Outer, {"mode": 2})


def test_include_file_and_nested_overrides(tmp_path):
    data_file = write(tmp_path / "data.yaml", {"data_config": {"data_folder": "/videos", "sample_stride": 2}})
    cfg_file = write(tmp_path / "a.yaml", {"data_config_file": data_file, "data_config": {"sample_stride": 5}})
    cfg = load_config(Outer, ["-c", cfg_file, "--data_config.data_folder", "/other"])
    assert cfg.data_config.sample_stride == 5 and cfg.data_config.data_folder == "/other"
    bad = write(tmp_path / "b.yaml", {"data_config": {"data_foldr": "x"}})
    with pytest.raises(ConfigError, match="did you mean 'data_folder'"):
        load_config(Outer, ["-c", bad])


def test_list_values(tmp_path):
    assert load_config(Outer, ["--labels", "[1, 2]"]).labels == [1, 2]
    assert load_config(Outer, ["--labels", "7"]).labels == [7]
    cfg = from_dict(SampleConfig, {"checkpoint": "x.ckpt", "condition": "class", "num_classes": 101,
                                   "class_labels": "3,4"})
    assert cfg.class_labels == [3, 4]


def test_saved_config_loads_back(tmp_path):
    cfg = from_dict(SampleConfig, {"checkpoint": "x.ckpt", "sampling_steps": 50, "ddim_sampling": True})
    save_config(cfg, str(tmp_path / "resolved.yaml"))
    again = load_config(SampleConfig, ["-c", str(tmp_path / "resolved.yaml")])
    assert again == cfg


@pytest.mark.parametrize("values, needle", [
    ({"checkpoint": "x.ckpt", "guidance_scale": 7.0}, "needs a class-conditional model"),
    ({"checkpoint": "x.ckpt", "condition": "class", "num_classes": 101, "class_labels": [101]}, "out of range"),
    ({"checkpoint": "x.ckpt", "model_name": "Latte-XL-2"}, "did you mean 'Latte-XL/2'"),
    ({"checkpoint": "x.ckpt", "image_size": 250}, "multiple of 16"),
    ({"checkpoint": ""}, "checkpoint is empty"),
])
def test_sample_config_validation(values, needle):
    with pytest.raises(ValueError, match=needle):
        from_dict(SampleConfig, values)


T2V_CONFIGS = ("demo_t2v.yaml", "t2v.yaml")  # LatteT2V (Latte-1, the demo): TextToVideoSampleConfig's keys


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(REPO, "configs", "inference", "*.yaml"))
                                        if os.path.basename(p) not in T2V_CONFIGS))
def test_shipped_inference_configs_parse(path):
    load_config(SampleConfig, ["-c", path])


@pytest.mark.parametrize("name", T2V_CONFIGS)
def test_shipped_text_to_video_configs_parse(name):
    """Every key is known; the one complaint left is the checkpoint nobody converted or trained here."""
    from latte.t2v_options import TextToVideoSampleConfig

    path = os.path.join(REPO, "configs", "inference", name)
    with open(path) as f:
        checkpoint = yaml.safe_load(f)["checkpoint"]  # converted (Latte-1) or trained (the demo) elsewhere
    with pytest.raises(ValueError, match=f"checkpoint '{checkpoint}' not found"):
        load_config(TextToVideoSampleConfig, ["-c", path, "--prompt", "a cat"])


def test_include_found_from_another_working_directory(tmp_path, monkeypatch):
    cfg_file = os.path.join(REPO, "configs", "training", "sky_video.yaml")
    monkeypatch.chdir(tmp_path)
    from latte.options import TrainConfig

    cfg = load_config(TrainConfig, ["-c", cfg_file])
    assert cfg.data_config.train_data_type == "frame_folder" and cfg.data_config.sample_stride == 3


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "training", "*.yaml"))))
def test_shipped_training_configs_parse(path):
    from latte.options import TrainConfig
    from latte.vae_training.config import VAETrainConfig

    # vae_*.yaml are tools/capture_frames.py + tools/train_vae.py configs
    cls = VAETrainConfig if os.path.basename(path).startswith("vae_") else TrainConfig
    load_config(cls, ["-c", path])


def test_latent_scale_comes_from_the_vae_record_unless_set(tmp_path):
    import json
    import shutil

    from tests.cache_support import write_tiny_vae

    plain = write_tiny_vae(tmp_path / "plain.ckpt")  # converter-style record: sd-vae-ft-mse's scaling factor
    trained = str(tmp_path / "trained.ckpt")
    shutil.copy(plain, trained)
    record = json.load(open(plain + ".json"))
    record["config"]["scaling_factor"] = 0.751  # as tools/train_vae.py measures it
    json.dump(record, open(trained + ".json", "w"))
    assert SampleConfig(vae_checkpoint=plain, image_size=32).latent_scale == pytest.approx(0.18215)
    assert SampleConfig(vae_checkpoint=trained, image_size=32).latent_scale == pytest.approx(0.751)
    assert SampleConfig(vae_checkpoint=trained, image_size=32, sd_scale_factor=0.5).latent_scale == 0.5
    assert SampleConfig(vae_checkpoint=str(tmp_path / "missing.ckpt")).latent_scale == pytest.approx(0.18215)
    assert SampleConfig(vae_checkpoint="", sd_scale_factor=0.5).latent_scale == 1.0  # pixel space: no scaling


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "cache", "*.yaml"))))
def test_shipped_cache_configs_parse(path):
    from latte.options import EmbeddingCacheConfig

    cfg = load_config(EmbeddingCacheConfig, ["-c", path, "--cache_folder", "cache"])
    assert cfg.data_config.train_data_type == "frame_folder" and cfg.image_size == 256


def test_minimum_and_choices_are_config_errors_naming_the_dotted_key():
    from latte.options import TrainConfig

    with pytest.raises(ConfigError, match=r"^data_config.sample_stride=0 must be >= 1$"):
        load_config(TrainConfig, ["--data_config.sample_stride", "0"])
    with pytest.raises(ConfigError, match=r"^data_config.class_from='title' is not one of \['folder', 'filename'\]$"):
        load_config(TrainConfig, ["--data_config.class_from", "title"])
    with pytest.raises(ConfigError, match="^max_steps=0 must be >= 1$"):
        load_config(TrainConfig, ["--max_steps", "0"])
    assert load_config(TrainConfig, ["--max_steps", "null"]).max_steps is None  # not set: no minimum


def test_include_beside_the_config_wins_over_the_working_directory(tmp_path, monkeypatch):
    """A user's config names configs/training/data/x.yaml: their file, not the one of the folder they run from."""
    user = tmp_path / "user"
    write(user / "configs" / "training" / "data" / "x.yaml", {"data_config": {"sample_stride": 7}})
    cfg_file = write(user / "configs" / "training" / "run.yaml", {"data_config_file": "configs/training/data/x.yaml"})
    project = tmp_path / "project"
    write(project / "configs" / "training" / "data" / "x.yaml", {"data_config": {"sample_stride": 2}})
    monkeypatch.chdir(project)
    cfg = load_config(Outer, ["-c", cfg_file])
    assert cfg.data_config.sample_stride == 7
    assert cfg.data_config_file == str(user / "configs" / "training" / "data" / "x.yaml")  # saved with the run
    alone = write(tmp_path / "elsewhere" / "run.yaml", {"data_config_file": "configs/training/data/x.yaml"})
    assert load_config(Outer, ["-c", alone]).data_config.sample_stride == 2  # not beside it: the working directory


def test_model_name_help_lists_every_registered_variant():
    help_text = next(f for f in dataclasses.fields(SampleConfig) if f.name == "model_name").metadata["help"]
    listed = set()
    for prefix, sizes, patches in re.findall(r"(Latte-)(\{[^}]*\}|[A-Z0-9]+)/\{([^}]*)\}", help_text):
        for size, patch in itertools.product(sizes.strip("{}").split(","), patches.split(",")):
            listed.add(f"{prefix}{size}/{patch}")
    assert listed == set(LATTE_MODELS)
