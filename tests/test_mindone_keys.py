"""mindone's Latte yaml files run as they are: their key names are read as ours (our own copies of their key
sets, not their files)."""
import pytest
import yaml

from latte.config import ConfigError, load_config
from latte.options import SampleConfig, TrainConfig

# the keys of a mindone Latte training yaml and its data yaml (values as their sky/ucf101 files set them)
MINDONE_TRAIN = {"dataset_name": "sky", "model_name": "Latte-XL/2", "num_frames": 16, "image_size": 256,
                 "use_fp16": True, "condition": None, "data_config_file": "data/sky.yaml", "epochs": 3000,
                 "train_batch_size": 5, "start_learning_rate": 1.0e-4, "use_recompute": True,
                 "enable_flash_attention": True, "dataset_sink_mode": False}
MINDONE_DATA = {"data_config": {"data_folder": "sky_train", "train_data_type": "video_file", "sample_size": 256,
                                "sample_n_frames": 16, "sample_stride": 3, "use_safer_augment": True,
                                "image_video_joint": False, "use_image_num": 0, "num_parallel_workers": 8}}


def write_mindone(tmp_path, train=None, data=None):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "sky.yaml").write_text(yaml.safe_dump(data or MINDONE_DATA))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(train or MINDONE_TRAIN))
    return str(path)


def test_mindone_training_yaml_runs_as_it_is(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="latte.mindone_keys"):
        cfg = load_config(TrainConfig, ["-c", write_mindone(tmp_path)])
    assert cfg.dtype == "fp16" and cfg.image_size == 256 and cfg.num_frames == 16
    assert cfg.data_config.random_flip is False and cfg.data_config.sample_stride == 3
    for said in ("use_fp16: True read as dtype: fp16", "dataset_name: sky read as nothing",
                 "use_safer_augment: True read as random_flip: False", "sample_size: 256 read as image_size: 256"):
        assert said in caplog.text


def test_mindone_keys_that_contradict_ours_or_ask_for_what_is_missing_are_errors(tmp_path):
    data = {"data_config": dict(MINDONE_DATA["data_config"], sample_size=512)}
    with pytest.raises(ConfigError, match="sample_size: 512 means image_size: 512, but image_size: 256 is also"):
        load_config(TrainConfig, ["-c", write_mindone(tmp_path, data=data)])
    data = {"data_config": dict(MINDONE_DATA["data_config"], image_video_joint=True, use_image_num=0)}
    with pytest.raises(ConfigError, match="image_video_joint: true with use_image_num: 0"):
        load_config(TrainConfig, ["-c", write_mindone(tmp_path, data=data)])
    train = dict(MINDONE_TRAIN, use_fp16=False, dtype="bf16")
    with pytest.raises(ConfigError, match="use_fp16: False means dtype: 'fp32', but dtype: 'bf16'"):
        load_config(TrainConfig, ["-c", write_mindone(tmp_path, train=train)])


def test_mindone_model_dtype_and_captions_csv(tmp_path):
    train = {k: v for k, v in MINDONE_TRAIN.items() if k != "use_fp16"}
    train["use_model_dtype"] = "bf16"
    data = {"data_config": dict(MINDONE_DATA["data_config"], csv_path="captions.csv")}
    (tmp_path / "captions.csv").write_text("video,caption\n")
    cfg = load_config(TrainConfig, ["-c", write_mindone(tmp_path, train=train, data=data)])
    assert cfg.dtype == "bf16" and cfg.data_config.caption_file == "captions.csv"


def test_mindone_inference_keys(tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"")
    path = tmp_path / "sample.yaml"
    path.write_text(yaml.safe_dump({"checkpoint": str(tmp_path / "x.ckpt"), "model_name": "Latte-XL/2",
                                    "use_fp16": True, "image_size": 256, "num_frames": 16}))
    assert load_config(SampleConfig, ["-c", str(path)]).dtype == "fp16"


def test_cache_tool_reads_a_training_yaml_for_its_data_keys(tmp_path, caplog):
    """mindone documents `tools/embedding_cache.py --config configs/training/sky_video.yaml --cache_folder ...`."""
    from latte.options import EmbeddingCacheConfig

    with caplog.at_level("WARNING", logger="latte.options"):
        cfg = load_config(EmbeddingCacheConfig, ["-c", write_mindone(tmp_path), "--cache_folder", str(tmp_path / "c"),
                                                 "--vae_checkpoint", "vae.ckpt"])
    assert cfg.image_size == 256 and cfg.data_config.sample_stride == 3 and cfg.data_config.random_flip is False
    assert "training keys not read by the cache tool: " in caplog.text and "model_name, num_frames" in caplog.text
    with pytest.raises(ConfigError, match="did you mean"):  # a key of no command is still an error
        load_config(EmbeddingCacheConfig, ["-c", write_mindone(tmp_path, train=dict(MINDONE_TRAIN, num_frame=3)),
                                           "--cache_folder", "c", "--vae_checkpoint", "vae.ckpt"])


def test_command_line_wins_over_mindone_data_keys_and_their_nulls_read_as_ours(tmp_path):
    """mindone's toy CSV data yaml repeats sample_size / sample_n_frames; tiny sizes on the command line win over
    them (as over image_size / num_frames). Every mindone data yaml says `use_image_num:` (null) without joint."""
    data = {"data_config": dict(MINDONE_DATA["data_config"], use_image_num=None)}
    cfg = load_config(TrainConfig, ["-c", write_mindone(tmp_path, data=data), "--image_size", "32", "--num_frames",
                                    "4", "--data_config_file", "data/sky.yaml"])
    assert cfg.image_size == 32 and cfg.num_frames == 4 and cfg.data_config.use_image_num == 0
