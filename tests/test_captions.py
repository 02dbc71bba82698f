"""Captioned videos: a caption CSV with bad rows, .txt captions beside video files and frame folders, and
caption_id -> caption through the real pipeline on two shards."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from latte.config import ConfigError
from latte.data import DataConfig, DataError, build_video_index, create_video_dataset

SIZE = 8
FRAMES = 3


def grey_folder(path, level, frames=FRAMES):
    """A frame folder of `frames` uniform frames of grey `level` (the video's fingerprint)."""
    os.makedirs(path, exist_ok=True)
    for t in range(frames):
        Image.fromarray(np.full((SIZE, SIZE, 3), level, np.uint8)).save(os.path.join(path, f"{t}.png"))
    return str(path)


def frame_config(folder, **kwargs):
    return DataConfig(data_folder=str(folder), train_data_type="frame_folder", sample_stride=1,
                      num_parallel_workers=1, **kwargs)


def only_warning(caplog):
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    return warnings[0]


def test_csv_keeps_exactly_the_well_captioned_videos_and_names_the_rest(tmp_path, caplog):
    data = tmp_path / "data"
    for name in ("a", "b", "c", "d", "e", "f"):
        grey_folder(data / "clips" / name, 10)
    outside = grey_folder(tmp_path / "elsewhere" / "g", 10)  # listed by absolute path, outside data_folder
    (data / "captions.csv").write_text(
        "id,caption,video,score\n"  # columns in any order, extra columns ignored
        '1,"A red square, moving left",clips/a,0.5\n'  # a comma inside quotes
        '2,"  two\n  lines  ",clips/b/,0.1\n'  # a multi-line cell is joined; a trailing slash names the folder
        "3,,clips/c,0.2\n"  # empty caption
        "4\n"  # a short row: no caption cell, no video cell
        "5,first,clips/d,0.3\n"
        "6,second,clips/d,0.3\n"  # d listed twice
        "7,gone,clips/missing,0.3\n"  # not on disk
        "\n"  # blank line
        f"8,far away,{outside},0.9\n"
        "9,café ☕,./clips/f,1\n", encoding="utf-8")  # e has no row
    config = frame_config(data, caption_file="captions.csv")  # found under data_folder
    with caplog.at_level(logging.WARNING):
        index = build_video_index(config, 2, SIZE, with_captions=True)
    assert [(e.name, e.caption) for e in index.entries] == [
        ("clips/a", "A red square, moving left"), ("clips/b", "two lines"), ("clips/f", "café ☕")]
    assert index.skipped == [
        ("captions.csv line 6", "caption_file row without a video path"),  # file lines: b's row takes two
        ("clips/c", "empty caption"),
        ("clips/d", "listed twice in caption_file: lines 7, 8 of captions.csv"),
        ("clips/e", "no caption"),
        ("clips/missing", "in caption_file but not on disk: captions.csv line 9")]
    warning = only_warning(caplog)
    assert warning.startswith("data: skipped 5 of 8 videos")  # 6 listed + 2 rows naming no file
    for count in ("1 empty caption", "1 listed twice in caption_file", "1 no caption",
                  "1 in caption_file but not on disk", "1 caption_file row without a video path"):
        assert count in warning
    assert "clips/missing" in warning and "clips/e (no caption)" in warning


def test_csv_errors_are_one_line(tmp_path):
    grey_folder(tmp_path / "a", 10)
    (tmp_path / "bad.csv").write_text("path,text\na,hello\n")  # Open-Sora's names, not video,caption
    with pytest.raises(DataError, match=r"bad.csv.*does not name the 'video' and 'caption' columns"):
        build_video_index(frame_config(tmp_path, caption_file=str(tmp_path / "bad.csv")), 2, SIZE,
                          with_captions=True)
    with pytest.raises(DataError, match=r"caption_file='nope.csv' not found"):
        build_video_index(frame_config(tmp_path, caption_file="nope.csv"), 2, SIZE, with_captions=True)
    (tmp_path / "empty.csv").write_text("video,caption\na,\n")
    with pytest.raises(DataError, match=r"no usable videos.*'empty caption': 1.*caption per video"):
        build_video_index(frame_config(tmp_path, caption_file=str(tmp_path / "empty.csv")), 2, SIZE,
                          with_captions=True)
    with pytest.raises(ConfigError, match="caption_file.*synthetic"):
        DataConfig(train_data_type="synthetic", caption_file="captions.csv")


def test_text_files_beside_video_files_and_frame_folders(tmp_path, caplog):
    videos = tmp_path / "videos"
    os.makedirs(videos / "sub")
    for name in ("one.mp4", "sub/two.avi", "three.mp4", "four.mp4"):
        (videos / name).write_bytes(b"")  # never opened: scan_videos is off
    (videos / "one.txt").write_text("  A cat\n\n wearing sunglasses \n", encoding="utf-8")
    (videos / "sub" / "two.txt").write_text("naïve ☕", encoding="utf-8")
    (videos / "three.txt").write_text(" \n ")  # empty; four.mp4 has none
    config = DataConfig(data_folder=str(videos), scan_videos=False, num_parallel_workers=1)
    with caplog.at_level(logging.WARNING):
        index = build_video_index(config, 2, SIZE, with_captions=True)
    assert [(e.name, e.caption) for e in index.entries] == [("one.mp4", "A cat wearing sunglasses"),
                                                            ("sub/two.avi", "naïve ☕")]
    assert index.skipped == [("four.mp4", "no caption"), ("three.mp4", "empty caption")]
    assert "skipped 2 of 4 videos" in only_warning(caplog)

    folders = tmp_path / "folders"
    for name in ("beside", "inside", "both", "none"):
        grey_folder(folders / name, 10)
    (folders / "beside.txt").write_text("beside the folder")
    (folders / "inside" / "caption.txt").write_text("inside the folder")
    (folders / "both.txt").write_text("beside wins")
    (folders / "both" / "caption.txt").write_text("inside loses")
    index = build_video_index(frame_config(folders), 2, SIZE, with_captions=True)
    assert [(e.name, e.caption) for e in index.entries] == [
        ("beside", "beside the folder"), ("both", "beside wins"), ("inside", "inside the folder")]
    assert index.skipped == [("none", "no caption")]
    assert all(len(e.frames) == FRAMES for e in index.entries)  # caption.txt is not a frame
    assert build_video_index(frame_config(folders), 2, SIZE).skipped == []  # captions are read only for text


def batches(dataset):
    return [dict(b) for b in dataset.create_dict_iterator(num_epochs=1, output_numpy=True)]


def test_caption_ids_name_the_captions_of_the_videos_shown_on_two_shards(tmp_path):
    levels = [20 * (i + 1) for i in range(9)]  # video i is uniformly grey levels[i]
    rows = ["video,caption"]
    for i, level in enumerate(levels):
        grey_folder(tmp_path / f"v{i}", level)
        rows.append(f"v{i},grey {level}")
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    config = frame_config(tmp_path, caption_file=str(tmp_path / "captions.csv"))
    seen = []
    for shard in (0, 1):
        kwargs = dict(num_shards=2, shard_id=shard, seed=3)
        dataset, info = create_video_dataset(config, SIZE, 2, 2, condition="text", **kwargs)
        assert info.captions == [f"grey {level}" for level in levels] and info.text_encoder == {}
        plain = batches(create_video_dataset(config, SIZE, 2, 2, **kwargs)[0])
        resumed = batches(create_video_dataset(config, SIZE, 2, 2, condition="text", start_step=1, **kwargs)[0])
        got = batches(dataset)
        assert len(got) == info.steps_per_epoch == 2  # 9 videos: 4 per shard, 2 batches of 2
        for batch, unconditional in zip(got, plain):
            assert sorted(batch) == ["caption_id", "video"]
            ids = batch["caption_id"]
            assert ids.shape == (2,) and ids.dtype == np.int32
            np.testing.assert_array_equal(batch["video"], unconditional["video"])  # same clips as without text
            for video, caption_id in zip(batch["video"], ids):  # (F, 3, H, W): the grey level named by the caption
                level = int(info.captions[caption_id].split()[1])
                np.testing.assert_allclose(video, level / 127.5 - 1.0, atol=1e-6)
            seen += ids.tolist()
        for a, b in zip(resumed, got[1:]):
            np.testing.assert_array_equal(a["caption_id"], b["caption_id"])
            np.testing.assert_array_equal(a["video"], b["video"])
    assert len(seen) == len(set(seen)) == 8  # disjoint shards, one video left over this epoch
