"""Clip sampling and pixel transforms."""
import numpy as np
import pytest

from latte.data.errors import VideoReadError
from latte.data.transforms import (
    center_crop_box, center_crop_resize, clip_span, hflip, preprocess_clip, sample_clip_indices, to_rgb,
)


def test_clip_indices_length_stride_and_bounds():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = sample_clip_indices(20, 4, 3, rng)
        assert len(idx) == 4 and np.all(np.diff(idx) == 3)
        assert idx[0] >= 0 and idx[-1] <= 19
        starts.add(int(idx[0]))
    assert starts == set(range(20 - clip_span(4, 3) + 1))  # every start 0..10 is drawn
    assert list(sample_clip_indices(10, 4, 3, rng)) == [0, 3, 6, 9]  # exactly long enough
    with pytest.raises(VideoReadError, match="too short: 9 frames"):
        sample_clip_indices(9, 4, 3, rng)


def three_bands(height, width):
    """Red | green | blue vertical bands; the centre square of a wide frame is all green."""
    frame = np.zeros((height, width, 3), np.uint8)
    quarter = width // 4
    frame[:, :quarter, 0] = 255
    frame[:, quarter:width - quarter, 1] = 255
    frame[:, width - quarter:, 2] = 255
    return frame


def test_center_crop_on_known_pattern():
    frames = np.stack([three_bands(40, 80)] * 2)  # (F, H, W, 3), wide: crop columns 20..60
    assert center_crop_box(40, 80, (40, 40)) == (0, 20, 40, 40)
    out = center_crop_resize(frames, (40, 40))
    assert out.shape == (2, 40, 40, 3)
    assert np.all(out[..., 1] == 255) and np.all(out[..., 0] == 0) and np.all(out[..., 2] == 0)
    small = center_crop_resize(frames, (10, 10))  # crop, then area-resize: still pure green
    assert small.shape == (2, 10, 10, 3) and np.all(small[..., 1] == 255) and small[..., [0, 2]].max() == 0


def test_center_crop_tall_and_non_square_target():
    tall = np.zeros((1, 90, 30, 3), np.uint8)
    tall[:, 30:60] = 200  # middle third bright
    out = center_crop_resize(tall, (15, 15))
    assert out.shape == (1, 15, 15, 3) and np.all(out == 200)
    assert center_crop_box(90, 30, (15, 15)) == (30, 0, 30, 30)
    assert center_crop_box(100, 100, (20, 40)) == (25, 0, 50, 100)  # a 1:2 target keeps the full width
    assert center_crop_resize(np.zeros((1, 100, 100, 3), np.uint8), (20, 40)).shape == (1, 20, 40, 3)
    assert center_crop_resize(np.zeros((1, 8, 12, 3), np.uint8), 16).shape == (1, 16, 16, 3)  # upscale


def test_grayscale_and_alpha_become_rgb():
    gray = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)  # (F, H, W)
    rgb = to_rgb(gray)
    assert rgb.shape == (1, 2, 3, 3) and np.all(rgb[..., 0] == gray) and np.all(rgb[..., 2] == gray)
    assert to_rgb(gray[..., None]).shape == (1, 2, 3, 3)
    assert to_rgb(np.zeros((1, 2, 3, 4), np.uint8)).shape == (1, 2, 3, 3)
    with pytest.raises(VideoReadError, match="2 channels"):
        to_rgb(np.zeros((1, 2, 3, 2), np.uint8))


def test_preprocess_range_layout_and_flip():
    frames = np.stack([three_bands(16, 16)] * 3)
    frames[:, :, 0] = 0  # a black left column marks orientation
    out = preprocess_clip(frames, 16)
    assert out.shape == (3, 3, 16, 16) and out.dtype == np.float32  # (F, 3, H, W)
    assert out.min() == -1.0 and out.max() == 1.0
    assert np.allclose(out[:, 0, :, 1], 1.0)  # red band kept left of the black column
    flips = [np.array_equal(preprocess_clip(frames, 16, np.random.default_rng(s), True), out) for s in range(20)]
    assert 0 < sum(flips) < 20  # both outcomes occur
    flipped = next(preprocess_clip(frames, 16, np.random.default_rng(s), True) for s in range(20) if not flips[s])
    assert np.array_equal(flipped, out[..., ::-1])
    assert np.array_equal(hflip(frames)[:, :, -1], frames[:, :, 0])
    assert np.array_equal(preprocess_clip(frames, 16, None, False), out)  # no flip needs no rng
