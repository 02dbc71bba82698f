"""Writing videos and grids: layouts, conversion, read-back, atomicity."""
import os

import numpy as np
import pytest

from latte import io
from latte.io import make_image_grid, save_image_grid, save_video, video_to_uint8


def moving_square(frames=6, height=20, width=30):
    """uint8 (F, H, W, 3): a white square moving right, so no two frames are equal."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    for t in range(frames):
        video[t, 4:12, 2 + 3 * t:10 + 3 * t] = 255
    return video


def test_video_to_uint8_matches_official_rounding():
    x = np.array([-1.0, -0.5, 0.0, 0.999, 1.0, 1.5, -3.0], np.float32).reshape(1, 1, 1, 7)  # (F, C, H, W)
    expected = np.clip((x * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)
    out = video_to_uint8(np.repeat(x, 3, axis=1))  # (1, 3, 1, 7) -> (1, 1, 7, 3)
    assert out.shape == (1, 1, 7, 3) and out.dtype == np.uint8
    assert list(out[0, 0, :, 0]) == list(expected.ravel()) == [0, 64, 128, 255, 255, 255, 0]


def test_video_to_uint8_layout_and_nan(caplog):
    video = np.zeros((2, 3, 4, 5), np.float32)
    video[:, 0] = 1.0  # red channel on
    video[1, 2, 0, 0] = np.nan
    out = video_to_uint8(video)
    assert out.shape == (2, 4, 5, 3) and np.all(out[..., 0] == 255) and out[1, 0, 0, 2] == 128
    assert "NaN" in caplog.text
    with pytest.raises(ValueError, match="expected float"):
        video_to_uint8(np.zeros((2, 4, 5, 3), np.float32))  # channels-last floats are rejected
    batch = np.stack([video, -video])  # (B, F, C, H, W) -> (B, F, H, W, C)
    out = video_to_uint8(batch)
    assert out.shape == (2, 2, 4, 5, 3) and np.all(out[1, ..., 0] == 0)
    assert np.array_equal(out[0], video_to_uint8(video))


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_save_video_round_trip(tmp_path, ext):
    import decord
    import imageio.v3 as iio

    video = moving_square()
    path = save_video(video, str(tmp_path / f"sub/clip{ext}"), fps=8)
    assert os.path.isfile(path) and os.listdir(tmp_path / "sub") == [f"clip{ext}"]  # no temp files left
    if ext == ".gif":
        frames = iio.imread(path, index=None)
        assert iio.immeta(path)["loop"] == 0
    else:
        frames = decord.VideoReader(path).get_batch(list(range(6))).asnumpy()
        assert len(decord.VideoReader(path)) == 6
    assert frames.shape[:3] == (6, 20, 30)
    assert np.abs(frames[..., :3].astype(int) - video.astype(int)).mean() < 8  # lossy but recognisable


def test_save_video_float_layout_and_odd_mp4_size(tmp_path):
    import decord
    import imageio.v3 as iio

    video = moving_square(frames=4, height=15, width=21).transpose(0, 3, 1, 2) / 127.5 - 1.0  # (F, 3, H, W)
    path = save_video(video, str(tmp_path / "odd.mp4"), fps=4)
    reader = decord.VideoReader(path)
    assert len(reader) == 4 and reader[0].shape == (16, 22, 3)  # padded to even by one repeated row/column
    gif = save_video(video, str(tmp_path / "odd.gif"), fps=4)
    assert iio.imread(gif, index=None).shape[:3] == (4, 15, 21)


def test_save_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        save_video(moving_square(), str(tmp_path / "clip.avi"))
    with pytest.raises(ValueError, match="dtype int64"):
        save_video(moving_square().astype(np.int64), str(tmp_path / "clip.gif"))
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        save_video(np.zeros((2, 3, 8, 8), np.uint8), str(tmp_path / "clip.gif"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def broken_writer(frames, path, fps):
        with open(path, "wb") as f:
            f.write(b"half a video")
        raise RuntimeError("disk full")

    monkeypatch.setitem(io._VIDEO_WRITERS, ".mp4", broken_writer)
    with pytest.raises(RuntimeError, match="disk full"):
        save_video(moving_square(), str(tmp_path / "clip.mp4"))
    assert os.listdir(tmp_path) == []
    # An existing file of that name survives a failed overwrite untouched.
    (tmp_path / "clip.mp4").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        save_video(moving_square(), str(tmp_path / "clip.mp4"))
    assert os.listdir(tmp_path) == ["clip.mp4"] and (tmp_path / "clip.mp4").read_bytes() == b"old"


def test_image_grid_layout_and_png(tmp_path):
    import imageio.v3 as iio

    images = np.stack([np.full((4, 6, 3), 50 * (i + 1), np.uint8) for i in range(5)])  # (N, H, W, 3)
    grid = make_image_grid(images, nrow=3, padding=2)
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2, 3)
    assert np.all(grid[2:6, 2:8] == 50) and np.all(grid[8:12, 10:16] == 250) and np.all(grid[8:12, 18:24] == 0)
    path = save_image_grid(images.transpose(0, 3, 1, 2) / 127.5 - 1.0, str(tmp_path / "grid.png"), nrow=3)
    back = iio.imread(path)
    assert back.shape == grid.shape and np.abs(back.astype(int) - grid).max() <= 1
    with pytest.raises(ValueError, match="extension"):
        save_image_grid(images, str(tmp_path / "grid.tiff"))
