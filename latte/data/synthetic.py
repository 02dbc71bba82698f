"""Moving-shapes videos for the out-of-the-box demo: bright shapes bouncing on a dark background.

Each video shows 1-2 shapes of ONE kind (circle, square, triangle or digit) moving in straight lines and
bouncing off the borders; the kind is the video's class. Captioned videos (text-to-video demo,
data_config.synthetic_captions) show ONE shape of a named colour moving at constant speed in a named direction,
inside the frame for the whole video, captioned "a red square moving left" (grammar: latte/data/shape_captions.py).
Everything is a pure function of (seed, index):
video i of `write_synthetic_dataset(seed=s)` equals video i of train_data_type 'synthetic' when s == 0.
Geometry is stored as fractions of the frame, so one video renders at any size.
"""
import os
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from latte.data.config import DEFAULT_SYNTHETIC_SHAPES, SYNTHETIC_SHAPES
from latte.data.shape_captions import (CAPTION_BACKGROUND, CAPTION_COLOURS, DIRECTIONS, caption_combinations,
                                       shape_caption)
from latte.data.transforms import as_size

SYNTHETIC_SEED = 0  # content seed of the on-the-fly 'synthetic' data type
MAX_SHAPES_PER_VIDEO = 2
# High-contrast RGB colours on a dark background.
PALETTE = ((255, 70, 70), (70, 230, 70), (80, 140, 255), (255, 230, 60), (255, 80, 255), (70, 240, 240),
           (255, 255, 255))
BACKGROUND_MAX = 50  # background channels stay in 0..50 so every palette colour stands out
RADIUS_RANGE = (0.14, 0.22)  # shape half-size, fraction of the frame's short side
SPEED_RANGE = (0.012, 0.03)  # fraction of the frame per frame: crosses a frame in 30-80 frames
CAPTION_RADIUS_RANGE = (0.15, 0.2)  # captioned videos: shape half-size, fraction of the short side
CAPTION_TRAVEL_RANGE = (0.45, 0.6)  # captioned videos: distance covered first -> last frame, fraction of the frame
CAPTION_ACROSS_RANGE = (0.3, 0.7)  # captioned videos: the centre's range across the motion (kept inside the frame)
SUPERSAMPLE = 4  # draw at 4x and shrink with area averaging: smooth edges and sub-pixel motion
DIGIT_FONT = cv2.FONT_HERSHEY_SIMPLEX
DIGIT_HEIGHT_PER_SCALE = 22  # pixel height of a digit at fontScale 1 in DIGIT_FONT
FRAME_FOLDER, MP4, GIF = "frame_folder", "mp4", "gif"
LAYOUTS = (FRAME_FOLDER, MP4, GIF)
DEFAULT_FPS = 8


@dataclass(frozen=True)
class Track:
    """One shape's look and straight-line motion (positions/velocities in fractions of the frame)."""
    colour: Tuple[int, int, int]
    radius: float
    start: Tuple[float, float]  # (x, y) centre at frame 0
    velocity: Tuple[float, float]  # (dx, dy) per frame
    digit: int  # drawn when the kind is "digit"


@dataclass(frozen=True)
class VideoSpec:
    kind: str
    background_top: Tuple[int, int, int]
    background_bottom: Tuple[int, int, int]  # equal to top for a plain background
    tracks: Tuple[Track, ...]


def synthetic_class_names(shapes=DEFAULT_SYNTHETIC_SHAPES):
    """Class names of the synthetic data: the shape kinds, sorted; label = position in this list."""
    for shape in shapes:
        if shape not in SYNTHETIC_SHAPES:
            raise ValueError(f"unknown synthetic shape {shape!r}: expected some of {SYNTHETIC_SHAPES}")
    return sorted(set(shapes))


def make_video_spec(index, shapes=DEFAULT_SYNTHETIC_SHAPES, seed=SYNTHETIC_SEED):
    """The random but reproducible description of synthetic video `index`; its kind cycles through the classes."""
    classes = synthetic_class_names(shapes)
    rng = np.random.default_rng([seed, index])
    top = tuple(int(c) for c in rng.integers(0, BACKGROUND_MAX + 1, size=3))
    bottom = tuple(int(c) for c in rng.integers(0, BACKGROUND_MAX + 1, size=3)) if rng.random() < 0.5 else top
    n_tracks = int(rng.integers(1, MAX_SHAPES_PER_VIDEO + 1))
    colours = rng.choice(len(PALETTE), size=n_tracks, replace=False)
    tracks = []
    for colour in colours:
        radius = float(rng.uniform(*RADIUS_RANGE))
        start = tuple(float(v) for v in rng.uniform(radius, 1.0 - radius, size=2))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        speed = rng.uniform(*SPEED_RANGE)
        velocity = (float(speed * np.cos(angle)), float(speed * np.sin(angle)))
        tracks.append(Track(PALETTE[colour], radius, start, velocity, int(rng.integers(0, 10))))
    return VideoSpec(classes[index % len(classes)], top, bottom, tuple(tracks))


def make_caption_spec(index, video_length, seed=SYNTHETIC_SEED):
    """Captioned video `index`: (VideoSpec, caption). The (colour, shape, direction) cycles through the grammar's
    48 combinations (colour fastest); size, position and speed are drawn from (seed, index). The shape moves in a
    straight line and stays inside the frame for all video_length frames, so any clip shows the named motion."""
    colour, shape, direction = caption_combinations()[index % len(caption_combinations())]
    rng = np.random.default_rng([seed, index])
    radius = float(rng.uniform(*CAPTION_RADIUS_RANGE))
    travel = float(rng.uniform(*CAPTION_TRAVEL_RANGE))
    step = np.array(DIRECTIONS[direction], np.float64)  # (dx, dy) unit
    low, high = radius, 1.0 - radius  # the centre's range that keeps the shape inside
    travel = min(travel, high - low)
    along = rng.uniform(low, high - travel)  # where the motion starts along its axis, counted in its direction
    across = rng.uniform(max(low, CAPTION_ACROSS_RANGE[0]), min(high, CAPTION_ACROSS_RANGE[1]))
    axis = 0 if step[0] else 1
    sign = step[axis]
    start = [across, across]
    start[axis] = along if sign > 0 else 1.0 - along
    velocity = step * travel / max(video_length - 1, 1)
    track = Track(CAPTION_COLOURS[colour], radius, (float(start[0]), float(start[1])),
                  (float(velocity[0]), float(velocity[1])), 0)
    spec = VideoSpec(shape, CAPTION_BACKGROUND, CAPTION_BACKGROUND, (track,))
    return spec, shape_caption(colour, shape, direction)


def _bounce(start, velocity, t, low, high):
    """Position at time t of a point moving at velocity between walls low and high (reflecting)."""
    span = high - low
    u = np.mod(start - low + velocity * t, 2.0 * span)  # unfold the bounces into a sawtooth
    return low + (u if u <= span else 2.0 * span - u)


def _background(spec, height, width):
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    top = np.array(spec.background_top, np.float32)
    bottom = np.array(spec.background_bottom, np.float32)
    column = (1.0 - ramp) * top + ramp * bottom  # (H, 1, 3)
    return np.broadcast_to(column, (height, width, 3)).astype(np.uint8)


def _draw(canvas, kind, track, centre, radius):
    x, y = int(round(centre[0])), int(round(centre[1]))
    r = int(round(radius))
    colour = tuple(int(c) for c in track.colour)
    if kind == "circle":
        cv2.circle(canvas, (x, y), r, colour, -1, cv2.LINE_AA)
    elif kind == "square":
        cv2.rectangle(canvas, (x - r, y - r), (x + r, y + r), colour, -1, cv2.LINE_AA)
    elif kind == "triangle":
        points = np.array([[x, y - r], [x - r, y + r], [x + r, y + r]], np.int32)
        cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)
    else:  # digit
        scale = 2.0 * radius / DIGIT_HEIGHT_PER_SCALE
        thickness = max(1, int(round(scale * 3)))
        (text_w, text_h), _ = cv2.getTextSize(str(track.digit), DIGIT_FONT, scale, thickness)
        origin = (x - text_w // 2, y + text_h // 2)
        cv2.putText(canvas, str(track.digit), origin, DIGIT_FONT, scale, colour, thickness, cv2.LINE_AA)


def render_frames(spec, frame_indices, image_size):
    """Draw the given frames of a video: uint8 (len(frame_indices), H, W, 3), RGB."""
    height, width = as_size(image_size)
    big_h, big_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    short = min(big_h, big_w)
    background = _background(spec, big_h, big_w)
    frames = []
    for t in frame_indices:
        canvas = background.copy()
        for track in spec.tracks:
            # Keep the whole shape inside the frame: walls at radius from each border.
            rx, ry = track.radius * short / big_w, track.radius * short / big_h
            cx = _bounce(track.start[0], track.velocity[0], t, rx, 1.0 - rx) * big_w
            cy = _bounce(track.start[1], track.velocity[1], t, ry, 1.0 - ry) * big_h
            _draw(canvas, spec.kind, track, (cx, cy), track.radius * short)
        frames.append(cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def synthetic_video(index, num_frames, image_size, shapes=DEFAULT_SYNTHETIC_SHAPES, seed=SYNTHETIC_SEED,
                    captioned=False):
    """All frames of synthetic video `index`: uint8 (num_frames, H, W, 3); captioned: the video of
    make_caption_spec (its caption: make_caption_spec(index, num_frames, seed)[1])."""
    spec = make_caption_spec(index, num_frames, seed)[0] if captioned else make_video_spec(index, shapes, seed)
    return render_frames(spec, range(num_frames), image_size)


class SyntheticReader:
    """Reader interface (see readers.py) over one synthetic video; renders only the frames asked for."""

    def __init__(self, index, num_frames, image_size, shapes, captioned=False):
        self.spec = make_caption_spec(index, num_frames)[0] if captioned else make_video_spec(index, shapes)
        self.num_frames = num_frames
        self.image_size = image_size

    def get_frames(self, indices):
        return render_frames(self.spec, indices, self.image_size)

    def close(self):
        pass


def synthetic_video_name(index, kind):
    """UCF101-style name, so class_from 'folder' and 'filename' both recover the kind."""
    return f"v_{kind}_g{index:04d}_c01"


def write_synthetic_dataset(folder, n_videos, n_frames, size, layout=FRAME_FOLDER, seed=SYNTHETIC_SEED,
                            shapes=DEFAULT_SYNTHETIC_SHAPES, fps=DEFAULT_FPS):
    """Write n_videos moving-shapes videos under folder/<kind>/; returns their paths.

    layout 'frame_folder': folder/<kind>/v_<kind>_gNNNN_c01/frame_00000.png ... (lossless);
    'mp4' (H.264, lossy) or 'gif': folder/<kind>/v_<kind>_gNNNN_c01.<ext>. size: int or (height, width).
    """
    from latte.io import save_video

    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {LAYOUTS}")
    paths = []
    for index in range(n_videos):
        spec = make_video_spec(index, shapes, seed)
        frames = render_frames(spec, range(n_frames), size)
        name = os.path.join(folder, spec.kind, synthetic_video_name(index, spec.kind))
        if layout == FRAME_FOLDER:
            os.makedirs(name, exist_ok=True)
            for t, frame in enumerate(frames):
                cv2.imwrite(os.path.join(name, f"frame_{t:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            paths.append(name)
        else:
            os.makedirs(os.path.dirname(name), exist_ok=True)
            paths.append(save_video(frames, f"{name}.{layout}", fps=fps))
    return paths
