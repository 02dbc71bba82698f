"""Clip sampling and pixel transforms: uint8 frames (F, H, W, C) -> float32 (F, 3, H, W) in [-1, 1].

All randomness comes from a numpy Generator the caller seeds, so a clip is a pure function of its seed.
"""
import cv2
import numpy as np

from latte.data.errors import VideoReadError
from latte.io import RGB_CHANNELS

PIXEL_MAX = 255.0
# Shrinking uses area averaging (no aliasing on 4x downscales); enlarging uses bilinear like the official Latte.
DOWNSCALE_INTERPOLATION = cv2.INTER_AREA
UPSCALE_INTERPOLATION = cv2.INTER_LINEAR
FLIP_PROBABILITY = 0.5
# ITU-R BT.601 luma, as Pillow's convert("L"): grayscale = 0.299 R + 0.587 G + 0.114 B
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def clip_span(num_frames, stride):
    """Source frames covered by a clip of num_frames taken every stride frames."""
    return (num_frames - 1) * stride + 1


def sample_clip_indices(video_frames, num_frames, stride, rng):
    """Frame indices start, start + stride, ... (num_frames of them) from a random start drawn by rng."""
    span = clip_span(num_frames, stride)
    if video_frames < span:
        raise VideoReadError(
            f"too short: {video_frames} frames, a clip of {num_frames} frames at stride {stride} needs {span}")
    start = int(rng.integers(0, video_frames - span + 1))
    return start + stride * np.arange(num_frames)


def as_size(image_size):
    """image_size as (height, width): an int means a square."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def to_rgb(frames):
    """(F, H, W), (F, H, W, 1), (F, H, W, 3) or (F, H, W, 4) uint8 -> (F, H, W, 3): gray repeated, alpha dropped."""
    if frames.ndim == 3:
        frames = frames[..., None]  # (F, H, W) -> (F, H, W, 1)
    channels = frames.shape[-1]
    if channels == 1:
        return np.repeat(frames, RGB_CHANNELS, axis=-1)  # (F, H, W, 1) -> (F, H, W, 3)
    if channels == 4:
        return frames[..., :RGB_CHANNELS]
    if channels != RGB_CHANNELS:
        raise VideoReadError(f"frames have {channels} channels; expected 1, 3 or 4")
    return frames


def to_channels(frames, channels, axis=-3):
    """Frames with 3 (RGB) or 1 channel(s) on `axis` -> `channels` channels: RGB to luma, or gray repeated.

    Works on float frames in [-1, 1] (the weights sum to 1, so luma commutes with the [-1, 1] mapping).
    """
    have = frames.shape[axis]
    if have == channels:
        return frames
    if have == RGB_CHANNELS and channels == 1:
        weights = np.asarray(LUMA_WEIGHTS, np.float32).reshape([RGB_CHANNELS if a == axis % frames.ndim else 1
                                                                for a in range(frames.ndim)])
        return (frames * weights).sum(axis=axis, keepdims=True).astype(frames.dtype)
    if have == 1 and channels == RGB_CHANNELS:
        return np.repeat(frames, RGB_CHANNELS, axis=axis)
    raise ValueError(f"cannot turn {have}-channel frames into {channels} channels (supported: 1 and 3)")


def center_crop_box(height, width, size):
    """(top, left, crop_h, crop_w): the largest centred box of the target aspect ratio inside height x width."""
    target_h, target_w = size
    scale = max(target_h / height, target_w / width)  # the side that fits exactly decides the scale
    crop_h = min(height, int(round(target_h / scale)))
    crop_w = min(width, int(round(target_w / scale)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def center_crop_resize(frames, size):
    """Crop the centred box with the aspect of size (int or (h, w)), then resize it to size:
    (F, H, W, C) -> (F, h, w, C).

    For a square size this equals "resize the short side to size, then centre crop" (official UCF101)
    and "centre crop the short side, then resize" (official Sky Timelapse), up to rounding.
    """
    target_h, target_w = as_size(size)
    _, height, width, _ = frames.shape
    top, left, crop_h, crop_w = center_crop_box(height, width, (target_h, target_w))
    cropped = frames[:, top:top + crop_h, left:left + crop_w]
    if (crop_h, crop_w) == (target_h, target_w):
        return np.ascontiguousarray(cropped)
    interpolation = DOWNSCALE_INTERPOLATION if crop_h >= target_h else UPSCALE_INTERPOLATION
    return np.stack([cv2.resize(f, (target_w, target_h), interpolation=interpolation) for f in cropped])


def hflip(frames):
    """Mirror left-right: (F, H, W, C) -> (F, H, W, C)."""
    return np.ascontiguousarray(frames[:, :, ::-1])


def to_model_range(frames):
    """uint8 (F, H, W, 3) -> float32 (F, 3, H, W) in [-1, 1] (x / 127.5 - 1, as the official Normalize(0.5, 0.5))."""
    video = frames.transpose(0, 3, 1, 2)  # (F, H, W, 3) -> (F, 3, H, W)
    return (video.astype(np.float32) / (PIXEL_MAX / 2) - 1.0).astype(np.float32)


def preprocess_clip(frames, image_size, rng=None, random_flip=False):
    """Decoded frames -> model input: RGB, centre crop + resize to image_size, optional flip, [-1, 1].

    frames: uint8 (F, H, W[, C]). Returns float32 (F, 3, h, w). rng draws the flip when random_flip is set.
    """
    frames = center_crop_resize(to_rgb(np.asarray(frames)), image_size)
    if random_flip and rng.random() < FLIP_PROBABILITY:
        frames = hflip(frames)
    return to_model_range(frames)
