"""The caption grammar of the text-to-video demo's shape videos, and reading a caption back from a video.

    caption = shape_caption("red", "square", "left")        # "a red square moving left"
    parsed = parse_shape_caption("A red square moving left")  # ShapeCaption("red", "square", "left")
    seen = read_shape_video(frames)                          # colour and motion of the one shape in a video
    agreement(parsed, seen)                                  # does the video follow its prompt?

latte/data/synthetic.py draws the captioned videos from this grammar (one shape of a named colour moving in a
named direction on a dark background); tools/prompt_agreement.py scores sampled videos with it. Plain numpy.
"""
import re
from collections import OrderedDict
from typing import NamedTuple, Optional

import numpy as np

# name -> RGB: far apart from each other and from the dark background (so the nearest name is never in doubt)
CAPTION_COLOURS = OrderedDict([("red", (240, 50, 50)), ("green", (50, 220, 50)), ("blue", (60, 110, 255)),
                               ("yellow", (245, 225, 40))])
CAPTION_SHAPES = ("circle", "square", "triangle")
# direction -> unit motion (dx, dy) in image coordinates (y grows downwards)
DIRECTIONS = OrderedDict([("left", (-1, 0)), ("right", (1, 0)), ("up", (0, -1)), ("down", (0, 1))])
CAPTION_BACKGROUND = (16, 16, 24)  # the dark background of every captioned video
CAPTION_PATTERN = re.compile(r"^\s*a (?P<colour>\w+) (?P<shape>\w+) moving (?P<direction>\w+)\s*$")
FOREGROUND_DISTANCE = 80.0  # RGB distance from the background above which a pixel is part of the shape
MIN_FOREGROUND_PIXELS = 2  # fewer in a frame: no shape seen there


class ShapeCaption(NamedTuple):
    colour: str
    shape: str
    direction: str


def shape_caption(colour, shape, direction):
    """The caption of a video: 'a red square moving left'."""
    for value, known in ((colour, CAPTION_COLOURS), (shape, CAPTION_SHAPES), (direction, DIRECTIONS)):
        if value not in known:
            raise ValueError(f"{value!r} is not in the caption grammar: expected one of {list(known)}")
    return f"a {colour} {shape} moving {direction}"


def caption_combinations():
    """Every (colour, shape, direction) of the grammar, colour fastest: 4 x 3 x 4 = 48."""
    return [ShapeCaption(c, s, d) for d in DIRECTIONS for s in CAPTION_SHAPES for c in CAPTION_COLOURS]


def parse_shape_caption(text):
    """'a red square moving left' (any case) -> ShapeCaption; a ValueError names what is off."""
    match = CAPTION_PATTERN.match(text.lower())
    if match is None:
        raise ValueError(f"caption {text!r} is not of the form 'a <colour> <shape> moving <direction>'")
    parsed = ShapeCaption(**match.groupdict())
    shape_caption(*parsed)  # each word must be in the grammar
    return parsed


# ---------------------------------------------------------------------------------------------------------
# Reading a video back
# ---------------------------------------------------------------------------------------------------------

class ShapeReading(NamedTuple):
    colour: Optional[str]  # nearest CAPTION_COLOURS name of the foreground's mean colour; None: nothing seen
    rgb: tuple  # the foreground's mean colour
    displacement: tuple  # (dx, dy) of the foreground centroid, first -> last frame, in pixels
    direction: Optional[str]  # the DIRECTIONS entry along the larger displacement component; None: no motion


def foreground_mask(frame, background):
    """(H, W) bool: pixels farther than FOREGROUND_DISTANCE from the background colour (3,)."""
    distance = np.linalg.norm(frame.astype(np.float32) - background, axis=-1)  # (H, W, 3) -> (H, W)
    return distance > FOREGROUND_DISTANCE


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return (float(xs.mean()), float(ys.mean())) if len(xs) >= MIN_FOREGROUND_PIXELS else None


def nearest_colour(rgb):
    names = list(CAPTION_COLOURS)
    table = np.array([CAPTION_COLOURS[n] for n in names], np.float32)  # (K, 3)
    return names[int(np.argmin(np.linalg.norm(table - np.asarray(rgb, np.float32), axis=1)))]


def read_shape_video(frames):
    """What a video (F, H, W, 3) uint8 shows: the dominant colour of the pixels that stand out from the background
    (the median colour of all pixels; the shape covers a minority) and the motion of their centroid."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames {frames.shape} {frames.dtype}: expected uint8 (F, H, W, 3)")
    background = np.median(frames.reshape(-1, 3), axis=0).astype(np.float32)  # (F*H*W, 3) -> (3,)
    masks = [foreground_mask(frame, background) for frame in frames]  # F x (H, W)
    pixels = frames[np.stack(masks)]  # (N, 3): every foreground pixel of every frame
    if len(pixels) < MIN_FOREGROUND_PIXELS:
        return ShapeReading(None, tuple(background.tolist()), (0.0, 0.0), None)
    rgb = pixels.astype(np.float32).mean(axis=0)
    first, last = _centroid(masks[0]), _centroid(masks[-1])
    if first is None or last is None:
        return ShapeReading(nearest_colour(rgb), tuple(rgb.tolist()), (0.0, 0.0), None)
    dx, dy = last[0] - first[0], last[1] - first[1]
    if dx == dy == 0:
        direction = None
    elif abs(dx) >= abs(dy):
        direction = "right" if dx > 0 else "left"
    else:
        direction = "down" if dy > 0 else "up"
    return ShapeReading(nearest_colour(rgb), tuple(rgb.tolist()), (dx, dy), direction)


def along_prompt_axis(caption, reading):
    """Whether the centroid moved the prompt's way along the prompt's axis (the sign of that displacement)."""
    step = DIRECTIONS[caption.direction]  # (+-1, 0) or (0, +-1)
    projected = step[0] * reading.displacement[0] + step[1] * reading.displacement[1]
    return projected > 0


def agreement(caption, reading):
    """{"colour": bool, "direction": bool (sign along the prompt's axis), "direction_4way": bool, "agrees": both
    colour and direction}: the demo's prompt-following measure for one sample."""
    colour = reading.colour == caption.colour
    direction = along_prompt_axis(caption, reading)
    return {"colour": colour, "direction": direction, "direction_4way": reading.direction == caption.direction,
            "agrees": colour and direction}


def score_prompt_agreement(samples):
    """samples: [(prompt, frames (F, H, W, 3) uint8)] -> {"samples": [per-sample reading and agreement],
    "agreement": % of samples whose colour and direction (sign along the prompt's axis) both agree, and the %
    for "colour", "direction" and "direction_4way" alone}."""
    rows = []
    for prompt, frames in samples:
        caption = parse_shape_caption(prompt)
        reading = read_shape_video(frames)
        rows.append({"prompt": prompt, "seen_colour": reading.colour, "seen_rgb": [round(c, 1) for c in reading.rgb],
                     "displacement": [round(d, 2) for d in reading.displacement],
                     "seen_direction": reading.direction, **agreement(caption, reading)})
    count = max(len(rows), 1)
    percent = {key: 100.0 * sum(row[key] for row in rows) / count
               for key in ("agrees", "colour", "direction", "direction_4way")}
    return {"samples": rows, "agreement": percent.pop("agrees"), **percent}
