"""Listing videos: frame folders (natural order, nesting), video files, filter lists, class labels, errors."""
import dataclasses
import logging
import os

import cv2
import numpy as np
import pytest

from latte.config import ConfigError
from latte.data import DataConfig, DataError, build_video_index
from latte.data.sources import list_frame_folders, list_video_files, natural_key, read_filter_list


def write_frames(folder, names, size=(8, 10), value=0):
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(os.path.join(folder, name), np.full(size + (3,), (value + i) % 256, np.uint8))


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_data_config_fields_all_have_help_and_validate():
    for f in dataclasses.fields(DataConfig):
        assert f.metadata.get("help"), f"DataConfig.{f.name} has no help"
    with pytest.raises(ValueError, match="class_from"):
        DataConfig(class_from="path")
    with pytest.raises(ValueError, match="sample_stride"):
        DataConfig(sample_stride=0)
    with pytest.raises(ValueError, match="'.mp4'"):
        DataConfig(video_extensions=["mp4"])


def test_natural_sort_orders_numbers_by_value():
    names = ["frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "frame_100.jpg"]
    assert sorted(names, key=natural_key) == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg", "frame_100.jpg"]


def test_frame_folders_flat_and_nested(tmp_path, caplog):
    root = tmp_path / "sky_train"
    write_frames(str(root / "videoA"), [f"frame_{i}.jpg" for i in (10, 2, 1)])
    # Real Sky Timelapse nests clips one level deeper: sky_train/<video>/<clip>/<frame>.jpg
    write_frames(str(root / "videoB" / "videoB_1"), [f"{i}.png" for i in range(4)])
    touch(str(root / "videoB" / "notes.txt"))
    touch(str(root / "videoA" / "._frame_3.jpg"))  # hidden files (macOS resource forks) are not frames
    touch(str(root / "videoC" / "frame_1.tif"))  # not an image type read here: said, not silently dropped
    with caplog.at_level(logging.INFO, logger="latte.data.sources"):
        entries = list_frame_folders(DataConfig(data_folder=str(root), train_data_type="frame_folder"))
    assert "2 folder(s) under" in caplog.text and "videoB, videoC" in caplog.text
    assert [e.name for e in entries] == ["videoA", "videoB/videoB_1"]
    assert [os.path.basename(p) for p in entries[0].frames] == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]
    assert entries[1].num_frames == 4


def test_video_file_folder_of_frame_folders_reads_them_as_frame_folders(tmp_path, caplog):
    """mindone's Sky Timelapse yaml says train_data_type video_file for frame folders: that runs, said once."""
    root = tmp_path / "sky_train"
    for video in ("v1", "v2"):
        write_frames(str(root / video / f"{video}_1"), [f"{i}.jpg" for i in range(5)])
    config = DataConfig(data_folder=str(root), train_data_type="video_file", sample_stride=1)
    with caplog.at_level(logging.INFO, logger="latte.data.sources"):
        index = build_video_index(config, 4, 8)
    assert [e.name for e in index.entries] == ["v1/v1_1", "v2/v2_1"] and [e.num_frames for e in index.entries] == [5, 5]
    assert "holds no video files but 2 frame folders: reading them as train_data_type frame_folder" in caplog.text


def test_video_files_by_extension_any_depth(tmp_path):
    for rel in ("a/x.mp4", "a/y.AVI", "b/c/z.webm", "b/readme.txt", "w.gif"):
        touch(str(tmp_path / rel))
    entries = list_video_files(DataConfig(data_folder=str(tmp_path)))
    assert [e.name for e in entries] == ["a/x.mp4", "a/y.AVI", "b/c/z.webm", "w.gif"]


def ucf_tree(root, scan=False):
    """Fake UCF101: 2 classes x 2 videos. scan=False so empty files count as videos (no decoding)."""
    for cls in ("PlayingGuitar", "ApplyEyeMakeup"):
        for g in (1, 2):
            touch(os.path.join(root, cls, f"v_{cls}_g{g:02d}_c01.avi"))
    return DataConfig(data_folder=str(root), scan_videos=scan)


def test_ucf_labels_from_folder_and_filename_agree(tmp_path):
    config = ucf_tree(tmp_path / "UCF-101")
    by_folder = build_video_index(config, 4, 8, with_labels=True)
    by_name = build_video_index(dataclasses.replace(config, class_from="filename"), 4, 8, with_labels=True)
    assert by_folder.class_names == by_name.class_names == ["ApplyEyeMakeup", "PlayingGuitar"]
    assert by_folder.labels == by_name.labels == [0, 0, 1, 1]
    assert [e.name.split("/")[0] for e in by_folder.entries] == ["ApplyEyeMakeup"] * 2 + ["PlayingGuitar"] * 2


def test_labels_from_filename_need_ucf_names(tmp_path):
    touch(str(tmp_path / "cls" / "clip.mp4"))
    config = DataConfig(data_folder=str(tmp_path), scan_videos=False, class_from="filename")
    with pytest.raises(DataError, match="v_<Class>_gXX_cYY"):
        build_video_index(config, 4, 8, with_labels=True)


def test_filter_list_ucf_style(tmp_path, caplog):
    config = ucf_tree(tmp_path / "UCF-101")
    listing = tmp_path / "trainlist01.txt"
    listing.write_text("# comment\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
                       "v_PlayingGuitar_g02_c01\n\nPlayingGuitar/v_Missing_g09_c01.avi 2\n")
    assert read_filter_list(str(listing))[0] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    with caplog.at_level(logging.WARNING):
        index = build_video_index(dataclasses.replace(config, filter_list=str(listing)), 4, 8, with_labels=True)
    assert [e.name for e in index.entries] == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                               "PlayingGuitar/v_PlayingGuitar_g02_c01.avi"]
    assert index.labels == [0, 1]
    assert "v_Missing_g09_c01" in caplog.text


def test_filter_list_errors(tmp_path):
    config = ucf_tree(tmp_path / "UCF-101")
    with pytest.raises(DataError, match="not found"):
        build_video_index(dataclasses.replace(config, filter_list="nope.txt"), 4, 8)
    listing = tmp_path / "list.txt"
    listing.write_text("other.avi\n")
    with pytest.raises(DataError, match="matches none"):
        build_video_index(dataclasses.replace(config, filter_list=str(listing)), 4, 8)


@pytest.mark.parametrize("data_type", ["video_file", "frame_folder"])
def test_missing_or_empty_folder_is_one_clear_error(tmp_path, data_type):
    missing = str(tmp_path / "missing")
    with pytest.raises(DataError, match="does not exist") as err:
        build_video_index(DataConfig(data_folder=missing, train_data_type=data_type), 4, 8)
    assert missing in str(err.value)
    with pytest.raises(DataError, match="holds no videos"):
        build_video_index(DataConfig(data_folder=str(tmp_path), train_data_type=data_type), 4, 8)
    with pytest.raises(DataError, match="data_folder is empty"):
        build_video_index(DataConfig(data_folder="", train_data_type=data_type), 4, 8)


def test_unknown_data_type_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="frame_folder"):  # refused when the config is made
        build_video_index(DataConfig(data_folder=str(tmp_path), train_data_type="lmdb"), 4, 8)


def test_too_short_frame_folders_skipped_and_named(tmp_path, caplog):
    write_frames(str(tmp_path / "long"), [f"{i}.png" for i in range(7)])
    write_frames(str(tmp_path / "short"), [f"{i}.png" for i in range(6)])
    config = DataConfig(data_folder=str(tmp_path), train_data_type="frame_folder", sample_stride=2)
    with caplog.at_level(logging.WARNING):
        index = build_video_index(config, 4, 8)  # needs (4 - 1) * 2 + 1 = 7 frames
    assert [e.name for e in index.entries] == ["long"]
    assert index.skipped == [("short", "too short: 6 frames < 7")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "short" in warnings[0].getMessage()
    with pytest.raises(DataError, match="needs 13 frames"):
        build_video_index(config, 7, 8)


def test_dropped_videos_do_not_renumber_classes(tmp_path):
    for cls, length in (("a", 2), ("b", 5), ("c", 5)):  # class "a" has only a too-short video
        write_frames(str(tmp_path / cls / "video"), [f"{i}.png" for i in range(length)])
    config = DataConfig(data_folder=str(tmp_path), train_data_type="frame_folder", sample_stride=1)
    index = build_video_index(config, 3, 8, with_labels=True)
    assert index.class_names == ["a", "b", "c"] and index.labels == [1, 2]
