"""Training from a cache: its batches are the encoded batches of the video pipeline; mismatches are errors."""
import dataclasses
import os

import numpy as np
import pytest

from latte.data import DataConfig, DataError, create_cache_dataset, create_video_dataset, write_synthetic_dataset
from latte.data.cache import read_cache_index
from tests.cache_support import IMAGE_SIZE, SCALE, cache_args, load_vae_once, run_tool
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)

LATENT_SHAPE = (4, 4, 4)
CLIP = dict(image_size=IMAGE_SIZE, num_frames=3, batch_size=2, condition="class", seed=3)
STRIDE = 2  # a clip spans 5 frames; video 0 keeps only 4 and is skipped by both pipelines


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frames"))
    paths = write_synthetic_dataset(folder, n_videos=7, n_frames=9, size=IMAGE_SIZE, layout="frame_folder")
    for frame in sorted(os.listdir(paths[0]))[4:]:
        os.remove(os.path.join(paths[0], frame))
    return DataConfig(data_folder=folder, train_data_type="frame_folder", sample_stride=STRIDE,
                      num_parallel_workers=1)


@pytest.fixture(scope="module", params=["numpy", "mindrecord"])
def cache(request, tmp_path_factory, vae_path, videos):
    folder = tmp_path_factory.mktemp(request.param) / "cache"
    assert run_tool(*cache_args(videos.data_folder, folder, vae_path, "frame_folder", "--condition", "class",
                                "--cache_file_type", request.param, "--segment_frames", 4,
                                "--videos_per_file", 3)) == 0
    return dataclasses.replace(videos, data_folder=str(folder), train_data_type=request.param)


def batches(dataset, n=None):
    iterator = dataset.create_dict_iterator(num_epochs=1, output_numpy=True)
    out = [dict(b) for b in iterator]
    return out[:n] if n else out


def encode(vae_path, video):
    from latte.models.vae import encode_video

    return encode_video(load_vae_once(vae_path), video, frames_per_batch=4, scale=SCALE).asnumpy()


@pytest.mark.parametrize("shards", [dict(), dict(shard_id=1, num_shards=2, start_step=1)], ids=["one", "shard-resume"])
def test_cache_batches_are_encoded_video_batches(cache, videos, vae_path, shards):
    cached, info = create_cache_dataset(cache, latent_shape=LATENT_SHAPE, scale_factor=SCALE, **CLIP, **shards)
    direct, direct_info = create_video_dataset(videos, **CLIP, **shards)
    assert (info.num_videos, info.steps_per_epoch, info.class_names) == (
        direct_info.num_videos, direct_info.steps_per_epoch, direct_info.class_names)
    assert info.num_videos == 6 and info.skipped == [("circle/v_circle_g0000_c01", "too short: 4 frames < 5")]
    got, want = batches(cached), batches(direct)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g["video"].dtype == np.float32 and g["video"].shape == (2, 3) + LATENT_SHAPE
        assert g["label"].dtype == np.int32
        np.testing.assert_array_equal(g["label"], w["label"])
        np.testing.assert_allclose(g["video"], encode(vae_path, w["video"]), rtol=1e-5, atol=1e-5)


def test_worker_processes_read_the_same_clips(cache):
    one, _ = create_cache_dataset(cache, **CLIP)
    two, _ = create_cache_dataset(dataclasses.replace(cache, num_parallel_workers=2), **CLIP)
    a, b = batches(one), batches(two)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["video"], y["video"])


def test_cache_must_fit_the_model(cache):
    with pytest.raises(DataError, match=r"latents of shape \(C, h, w\) = \(4, 4, 4\) but the model expects \(4, 8, 8\)"):
        create_cache_dataset(cache, latent_shape=(4, 8, 8), **CLIP)
    with pytest.raises(DataError, match="holds 32x32 frames but training asks image_size 64"):
        create_cache_dataset(cache, **dict(CLIP, image_size=64))
    with pytest.raises(DataError, match="scaled by 0.18215 but sd_scale_factor is 0.13025"):
        create_cache_dataset(cache, scale_factor=0.13025, **CLIP)
    with pytest.raises(DataError, match="random_flip cannot apply to cached latents"):
        create_cache_dataset(dataclasses.replace(cache, random_flip=True), **CLIP)
    other = "numpy" if cache.train_data_type == "mindrecord" else "mindrecord"
    with pytest.raises(DataError, match=f"holds a '{cache.train_data_type}' cache but data_config.train_data_type is"):
        create_cache_dataset(dataclasses.replace(cache, train_data_type=other), **CLIP)
    with pytest.raises(DataError, match="A clip of 4 frames at data.sample_stride=3 needs 10 frames"):
        create_cache_dataset(dataclasses.replace(cache, sample_stride=3), **dict(CLIP, num_frames=4))


def test_unlabelled_cache_refuses_class_training_and_empty_folders_are_named(tmp_path, vae_path, videos):
    folder = tmp_path / "cache"
    assert run_tool(*cache_args(videos.data_folder, folder, vae_path, "frame_folder", "--max_videos", 2)) == 0
    unlabelled = dataclasses.replace(videos, data_folder=str(folder), train_data_type="numpy")
    assert read_cache_index(str(folder)).header["condition"] is None
    with pytest.raises(DataError, match="condition 'class' needs labels"):
        create_cache_dataset(unlabelled, **CLIP)
    dataset, info = create_cache_dataset(unlabelled, **dict(CLIP, condition=None, batch_size=1))
    assert info.num_videos == 1 and info.class_names == []  # video 0 is too short
    assert list(batches(dataset)[0]) == ["video"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no cache manifest"):
        create_cache_dataset(dataclasses.replace(unlabelled, data_folder=str(empty)), **CLIP)


def test_the_vae_check_compares_files_not_path_strings(tmp_path):
    """A symlink to the cache's VAE, or a copy of it, is the same VAE (no warning); other bytes are not."""
    import shutil

    from latte.data.cache_dataset import _same_file

    vae = tmp_path / "vae.ckpt"
    vae.write_bytes(b"weights" * 1000)
    (tmp_path / "link.ckpt").symlink_to(vae)
    shutil.copy(vae, tmp_path / "copy.ckpt")
    (tmp_path / "other.ckpt").write_bytes(b"Weights" * 1000)
    assert _same_file(str(tmp_path / "link.ckpt"), str(vae)) and _same_file(str(tmp_path / "copy.ckpt"), str(vae))
    assert not _same_file(str(tmp_path / "other.ckpt"), str(vae))
    assert not _same_file(str(tmp_path / "missing.ckpt"), str(vae))
