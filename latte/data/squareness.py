"""Whether the shapes of a video are squares: the demo's second measure of its samples, beside coherence.py.

    video_squareness(frames)      # frames: uint8 (F, H, W, 3) -> the median four-fold moment of its objects
    is_square(value)              # below SQUARE_BELOW: an axis-aligned square, not a disc or a blob

Each object of a frame is a connected group of foreground pixels (coherence.py's background ramp and
FOREGROUND_DISTANCE), grown by one pixel to take in its blended edge, each pixel weighted by how far its colour is
from the background, relative to the object's farthest pixel (its coverage, 0..1). Around the weighted centroid,
with z = (x - cx) + i (y - cy) in pixels, its four-fold moment is

    sum(w * Re(z^4)) / sum(w * |z|^4)

which is 0 for a disc (no direction stands out) and -3/7 (-0.43) for a filled axis-aligned square: over
[-a, a]^2, E[x^4 + y^4 - 6 x^2 y^2] / E[(x^2 + y^2)^2] = (2/5 - 2/3) / (2/5 + 2/9). A square turned 45 degrees
gives +3/7. A video's value is the median over its frames' objects (two shapes that touch make one object for a
frame or two; the median looks past them).
Measured on the class demo's training clips (256 clips of 8 frames, circles and squares, 2026-12-01): at 16x16 the
squares' values run -0.40 to -0.14 (10th to 90th percentile), the circles' 0.00 to 0.04; below SQUARE_BELOW lie 88%
of the squares and 1% of the circles (32x32: 93% and 1%). A square drawn 4-7 pixels wide but smoothed into a blob
moves towards 0 and is not counted (tested).
"""
import numpy as np

from latte.data.coherence import FOREGROUND_DISTANCE, background_distance, background_ramp

SQUARE_BELOW = -0.15  # a video whose value is below this shows squares
MIN_SQUARE_PIXELS = 6  # smaller objects (specks, a shape leaving the frame) have no shape worth measuring


def frame_fourfold(frame, background):
    """The four-fold moment of each object of one frame uint8 (H, W, 3) against its rows' background (H, 3)."""
    from scipy import ndimage

    distance = background_distance(frame, background)  # (H, W)
    labels, count = ndimage.label(distance > FOREGROUND_DISTANCE)  # 4-connected groups
    ys, xs = np.mgrid[0:frame.shape[0], 0:frame.shape[1]]  # (H, W) each
    values = []
    for k in range(1, count + 1):
        own = labels == k
        if own.sum() < MIN_SQUARE_PIXELS:
            continue
        reach = ndimage.binary_dilation(own) & ((labels == 0) | own)  # its edge, not another object's pixels
        weight = np.clip(distance / distance[own].max(), 0.0, 1.0)[reach]  # (N,) coverage of its N pixels
        x, y = xs[reach], ys[reach]
        z = (x - np.sum(weight * x) / weight.sum()) + 1j * (y - np.sum(weight * y) / weight.sum())  # (N,)
        values.append(float(np.sum(weight * (z ** 4).real) / np.sum(weight * np.abs(z) ** 4)))
    return values


def video_squareness(frames):
    """The median four-fold moment over every object of every frame of uint8 (F, H, W, 3); nan without one."""
    frames = np.asarray(frames)
    background = background_ramp(frames)  # (H, 3)
    values = [v for frame in frames for v in frame_fourfold(frame, background)]
    return float(np.median(values)) if values else float("nan")


def is_square(value):
    """Whether a video's squareness says it shows squares (nan: no object, not square)."""
    return bool(value < SQUARE_BELOW)
