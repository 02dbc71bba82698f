"""mindone's own embedding caches -> latte-ms numpy caches (tools/mindone_cache.py).

The caches here are written by this test in mindone's layouts as its writers' code lays them out (file names,
array keys, shapes, dtypes: latte/data/mindone_cache.py), with random latents."""
import os

import numpy as np
import pytest

from latte.config import ConfigError, load_config
from latte.data import DataConfig, DataError
from latte.data.cache import read_cache_index
from latte.options import TrainConfig

LATENT = (4, 4, 4)  # (C, h, w): 32x32 frames through the SD VAE
# Sky Timelapse names: <video>/<video>_frames_<n>.jpg; numeric order differs from the names' order (2 < 10)
FRAMES = {"clipB_1": [2, 10, 7, 1, 30], "clipA_2": [5, 3, 4, 11, 6, 100]}


def mindone_latents(name, dtype="float16"):
    """A video's latents in mindone's frame order (the frames' numbers, ascending)."""
    seed = sum(map(ord, name))
    return np.random.default_rng(seed).normal(size=(len(FRAMES[name]),) + LATENT).astype(dtype)


def write_mindone_numpy(folder, dtype="float16", extra=None):
    """mindone's numpy writer: <video>.npz with the name, <video>/video_latent-<image stem>.npy per frame."""
    os.makedirs(folder)
    for name, numbers in FRAMES.items():
        latents = mindone_latents(name, dtype)
        os.makedirs(os.path.join(folder, name))
        for number, latent in zip(sorted(numbers), latents):
            np.save(os.path.join(folder, name, f"video_latent-{name}_frames_{number:08d}.npy"), latent)
        np.savez_compressed(os.path.join(folder, name + ".npz"), video=name, **(extra or {}))
    return str(folder)


def write_mindone_npz(folder, dtype="float32"):
    """mindone's earlier npz writer: <video>.npz holding video_latent (F, 4, h, w) and the name."""
    os.makedirs(folder)
    for name in FRAMES:
        np.savez_compressed(os.path.join(folder, name + ".npz"), video_latent=mindone_latents(name, dtype), video=name)
    return str(folder)


def write_mindone_mindrecord(folder):
    """mindone's mindrecord writer: <data yaml stem><N>.mindrecord, one row per video, float32 latents."""
    from mindspore.mindrecord import FileWriter

    os.makedirs(folder)
    schema = {"video": {"type": "string"}, "video_latent": {"type": "float32", "shape": [-1, *LATENT]}}
    for n, name in enumerate(sorted(FRAMES, reverse=True)):  # one video per file, rows not in name order
        writer = FileWriter(os.path.join(folder, f"sky_mindrecord_video{n}.mindrecord"), shard_num=1, overwrite=True)
        writer.add_schema(schema, "Preprocessed sky_mindrecord_video dataset.")
        writer.write_raw_data([{"video": name, "video_latent": mindone_latents(name, "float32")}])
        writer.commit()
    return str(folder)


def convert(source, target, *extra):
    from tools import mindone_cache

    return mindone_cache.main(["--source", str(source), "--cache_folder", str(target), *map(str, extra)])


@pytest.mark.parametrize("layout,write,dtype", [("numpy", write_mindone_numpy, "float16"),
                                                 ("npz", write_mindone_npz, "float32"),
                                                 ("mindrecord", write_mindone_mindrecord, "float32")])
def test_each_mindone_layout_converts_to_the_same_latents_in_mindone_frame_order(tmp_path, layout, write, dtype):
    from latte.data.cache_dataset import NumpyLatentReader, list_cached_videos

    source = write(tmp_path / "mindone")
    assert convert(source, tmp_path / "latte", "--sd_scale_factor", "0.13025") == 0
    index = read_cache_index(str(tmp_path / "latte"))
    header = index.header
    assert header["source"]["layout"] == layout and header["dtype"] == dtype and header["latents"] == "sample"
    assert header["latent_shape"] == list(LATENT) and header["image_size"] == [32, 32]
    assert header["scale_factor"] == 0.13025 and header["condition"] is None
    assert [v["name"] for v in index.videos] == sorted(FRAMES)
    data_config = DataConfig(data_folder=str(tmp_path / "latte"), train_data_type="numpy")
    for entry in list_cached_videos(data_config, image_size=32):
        reader = NumpyLatentReader(entry)
        got = reader.get_frames(range(reader.num_frames))
        np.testing.assert_array_equal(got, mindone_latents(entry.name, dtype))  # bit-exact, stored dtype kept
        assert got.dtype == np.dtype(dtype)


def test_a_rerun_continues_and_a_damaged_or_foreign_cache_is_named(tmp_path):
    source = write_mindone_numpy(tmp_path / "mindone")
    assert convert(source, tmp_path / "latte") == 0
    stamp = os.stat(tmp_path / "latte" / "manifest.rank0.jsonl").st_mtime_ns
    assert convert(source, tmp_path / "latte") == 0  # all converted already: nothing rewritten
    assert os.stat(tmp_path / "latte" / "manifest.rank0.jsonl").st_mtime_ns == stamp
    # a frame of another shape
    bad = tmp_path / "mindone" / "clipA_2" / "video_latent-clipA_2_frames_00000004.npy"
    np.save(bad, np.zeros((4, 4, 5), np.float16))
    with pytest.raises(DataError, match=r"clipA_2_frames_00000004.npy: a frame of shape \(4, 4, 5\)"):
        convert(source, tmp_path / "again")
    # a frame whose name does not say its place
    os.rename(bad, tmp_path / "mindone" / "clipA_2" / "video_latent-last.npy")
    with pytest.raises(DataError, match="frame name 'last' does not end in _<number>"):
        convert(source, tmp_path / "again")
    with pytest.raises(DataError, match="holds no mindone embedding cache"):
        convert(tmp_path / "latte", tmp_path / "again")


@pytest.mark.parametrize("extra,condition", [({"class": np.array([3], np.int32)}, "class"),
                                             ({"caption": "clouds", "text_emb": np.zeros((77, 768), np.float16)},
                                              "text")])
def test_class_and_text_caches_are_refused_with_how_to_cache_again(tmp_path, extra, condition):
    source = write_mindone_numpy(tmp_path / "mindone", extra=extra)
    with pytest.raises(DataError, match=f"condition '{condition}', which is not converted.*tools/embedding_cache.py"
                                        f".*--condition {condition}"):
        convert(source, tmp_path / "latte")


def test_training_configs_pointing_at_a_mindone_cache_say_how_to_convert_it(tmp_path):
    from latte.data.cache_dataset import create_cache_dataset

    source = write_mindone_numpy(tmp_path / "mindone")
    data_config = DataConfig(data_folder=source, train_data_type="numpy")
    with pytest.raises(DataError, match=f"holds a mindone numpy embedding cache.*tools/mindone_cache.py --source "
                                        f"{source} --cache_folder {source}_latte"):
        create_cache_dataset(data_config, 32, 4, 1)
    # mindone's data yaml for its npz caches (train_data_type: npz, use_safer_augment) reads as a numpy cache
    (tmp_path / "data.yaml").write_text(f"data_config:\n  train_data_type: npz\n  data_folder: {source}\n"
                                        "  use_safer_augment: False\n  sample_stride: 3\n")
    (tmp_path / "train.yaml").write_text(f"data_config_file: {tmp_path / 'data.yaml'}\nimage_size: 32\n")
    cfg = load_config(TrainConfig, ["-c", str(tmp_path / "train.yaml")])
    assert cfg.data_config.train_data_type == "numpy" and cfg.data_config.random_flip is False
    (tmp_path / "data.yaml").write_text("data_config:\n  train_data_type: tfrecord\n")
    with pytest.raises(ConfigError, match="tfrecord"):
        load_config(TrainConfig, ["-c", str(tmp_path / "train.yaml")])
