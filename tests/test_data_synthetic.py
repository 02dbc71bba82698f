"""Moving-shapes generator: determinism, visible motion, classes, files it writes."""
import os

import numpy as np
import pytest

from latte.data import DataConfig, build_video_index, synthetic_video, write_synthetic_dataset
from latte.data.readers import FrameFolderReader, open_video
from latte.data.synthetic import BACKGROUND_MAX, make_video_spec, synthetic_class_names


def test_deterministic_and_distinct():
    a = synthetic_video(3, 8, 32)
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_video(3, 8, 32))
    assert not np.array_equal(a, synthetic_video(4, 8, 32))
    assert not np.array_equal(a, synthetic_video(3, 8, 32, seed=1))


@pytest.mark.parametrize("index", range(4))
def test_motion_is_visible_and_high_contrast(index):
    video = synthetic_video(index, 12, 32).astype(int)
    assert video.max() >= 200 and np.median(video) <= BACKGROUND_MAX  # bright shapes, dark background
    moved = np.abs(video[6] - video[0]).max(axis=-1)
    assert (moved > 100).sum() >= 4  # several pixels change strongly within 6 frames


def test_classes_cycle_through_sorted_kinds():
    shapes = ["triangle", "digit", "circle"]
    assert synthetic_class_names(shapes) == ["circle", "digit", "triangle"]
    assert [make_video_spec(i, shapes).kind for i in range(4)] == ["circle", "digit", "triangle", "circle"]
    assert synthetic_video(1, 2, (24, 40), shapes=shapes).shape == (2, 24, 40, 3)  # digits, non-square
    with pytest.raises(ValueError, match="hexagon"):
        synthetic_class_names(["hexagon"])


def test_written_frame_folders_equal_on_the_fly_videos(tmp_path):
    paths = write_synthetic_dataset(str(tmp_path), n_videos=3, n_frames=5, size=16)
    assert paths[1] == os.path.join(str(tmp_path), "square", "v_square_g0001_c01")
    for i, path in enumerate(paths):
        frames = sorted(os.listdir(path))
        assert frames[0] == "frame_00000.png" and len(frames) == 5
        reader = FrameFolderReader([os.path.join(path, f) for f in frames])
        assert np.array_equal(reader.get_frames(range(5)), synthetic_video(i, 5, 16))  # PNG is lossless
    # Both label rules recover the shape kind.
    for class_from in ("folder", "filename"):
        config = DataConfig(data_folder=str(tmp_path), train_data_type="frame_folder", class_from=class_from)
        index = build_video_index(config, 2, 16, with_labels=True)
        assert index.class_names == ["circle", "square", "triangle"] and index.labels == [0, 1, 2]


def test_written_mp4_and_gif(tmp_path):
    for layout in ("mp4", "gif"):
        paths = write_synthetic_dataset(str(tmp_path / layout), 2, 6, (16, 24), layout=layout, seed=5)
        assert all(p.endswith("." + layout) for p in paths)
        video = open_video(paths[0])
        assert video.num_frames == 6 and video.get_frames([0, 5]).shape[:3] == (2, 16, 24)
        video.close()
    with pytest.raises(ValueError, match="layout"):
        write_synthetic_dataset(str(tmp_path), 1, 2, 8, layout="avi")
