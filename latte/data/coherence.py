"""Whether a video of moving shapes is coherent: each object keeps its presence, size and colour through every frame
and moves smoothly. The demo's measure of its samples (tools/coherence.py, checkpoint samples in train.py).

    report = video_coherence(frames)           # frames: uint8 (F, H, W, 3)
    report.coherent, report.reasons            # True / ['frame 3: no object', ...]
    score_coherence([frames, ...])             # {"coherent": % of videos, "videos": [per-video readings]}

The background of the synthetic videos (latte/data/synthetic.py) is a vertical ramp from a top to a bottom colour,
plain in most; the shapes are far from it in colour (PALETTE against BACKGROUND_MAX). Per video, the background is
the ramp fitted to the left and right border columns (a per-row median over every frame's two borders, so a shape
touching a border in a few frames does not move it); per frame, the foreground is every pixel farther than
FOREGROUND_DISTANCE from its row's background colour, and the objects are its connected groups of pixels.
A video is coherent when
- every frame shows an object (at least MIN_OBJECT_PIXELS foreground pixels),
- the foreground area of every frame is within a factor MAX_AREA_RATIO of the video's median area,
- no frame shows a colour that most frames do not, over more than MAX_STRAY_SHARE of its foreground (colours of
  `palette`: the synthetic PALETTE, or the captioned videos' CAPTION_COLOURS; a frame shows a colour when at least
  MIN_COLOUR_SHARE of its foreground does; where two shapes overlap their blend may stray, over a small share),
- every colour that most frames show covers at least MIN_PRESENT_SHARE of every frame's foreground (a shape that
  vanishes while another stays, or turns into it, fails here even when the two touch),
- the foreground centroid moves at most MAX_STEP (a fraction of the frame's short side) between two frames,
- the number of objects varies by at most one between frames (two objects that touch count as one).
The synthetic training clips score 100% (tested); a shape that vanishes, splits, changes colour, grows or jumps
fails with the first reason found in each test.
"""
from typing import List, NamedTuple, Tuple

import numpy as np

from latte.data.synthetic import PALETTE

FOREGROUND_DISTANCE = 80.0  # RGB distance from the row's background colour above which a pixel is foreground
MIN_OBJECT_PIXELS = 2  # fewer foreground pixels in a frame: no object there; smaller groups are noise
MAX_AREA_RATIO = 2.0  # each frame's foreground area within [median / 2, median * 2]
MIN_COLOUR_SHARE = 0.1  # a palette colour is shown in a frame when this share of its foreground shows it
MAX_STRAY_SHARE = 0.25  # a colour that most frames do not show may cover at most this share of a frame's foreground
MIN_PRESENT_SHARE = 0.05  # a colour most frames show must cover this share of every frame's foreground
MAX_STEP = 0.2  # centroid motion between consecutive frames, fraction of the short side (16 px frame: 3.2 px)


class FrameReading(NamedTuple):
    area: int  # foreground pixels
    colours: Tuple[float, ...]  # share of the foreground showing each palette colour (K,)
    centroid: Tuple[float, float]  # their mean (x, y) in pixels; (nan, nan) when there is no object
    objects: int  # connected groups of at least MIN_OBJECT_PIXELS pixels


class CoherenceReport(NamedTuple):
    coherent: bool
    reasons: List[str]  # why not (empty when coherent)
    frames: List[FrameReading]


def background_ramp(frames):
    """(H, 3) float32 background colour of each row: a line in y through the per-row medians of the left and right
    border pixels of every frame (F, H, W, 3)."""
    borders = np.concatenate([frames[:, :, :1], frames[:, :, -1:]], axis=2).astype(np.float32)  # (F, H, 2, 3)
    rows = np.median(borders.transpose(1, 0, 2, 3).reshape(frames.shape[1], -1, 3), axis=1)  # (H, F*2, 3) -> (H, 3)
    y = np.arange(frames.shape[1], dtype=np.float32)
    if len(y) < 2:  # one row (a uniform video, shrunk to 1x1 by read_sample_video): no slope to fit
        return rows
    slope, intercept = np.polyfit(y, rows, 1)  # each (3,): one line per channel
    return (intercept[None] + y[:, None] * slope[None]).astype(np.float32)  # (H, 3)


def background_distance(frame, background):
    """(H, W) RGB distance of each pixel of a frame uint8 (H, W, 3) from its row's background colour (H, 3); the
    foreground is where it exceeds FOREGROUND_DISTANCE."""
    return np.linalg.norm(frame.astype(np.float32) - background[:, None], axis=-1)


def _objects(mask):
    from scipy import ndimage

    labels, count = ndimage.label(mask)  # 4-connected groups
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]  # (count,)
    return int(np.sum(sizes >= MIN_OBJECT_PIXELS))


def colour_shares(pixels, background, palette):
    """(K,) share of the pixels (N, 3) that show each palette colour (K, 3). A pixel shows the colour whose direction from the background colour behind it (N, 3) is closest to its own: an
    edge pixel blends a shape's colour with the background and keeps that direction."""
    table = np.asarray(palette, np.float32)  # (K, 3)
    own = pixels.astype(np.float32) - background  # (N, 3)
    towards = table[None] - background[:, None]  # (N, K, 3)
    cosine = np.einsum("nc,nkc->nk", own, towards) / (
        np.linalg.norm(own, axis=-1)[:, None] * np.linalg.norm(towards, axis=-1) + 1e-6)  # (N, K)
    nearest = np.argmax(cosine, axis=1)  # (N,)
    return tuple(float(c) for c in np.bincount(nearest, minlength=len(table)) / len(pixels))


def read_frames(frames, palette=PALETTE):
    """Per frame of uint8 (F, H, W, 3): its FrameReading against the video's background ramp."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames {frames.shape} {frames.dtype}: expected uint8 (F, H, W, 3)")
    background = background_ramp(frames)  # (H, 3)
    readings = []
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]  # (H, W) each
    for frame in frames:
        mask = background_distance(frame, background) > FOREGROUND_DISTANCE  # (H, W)
        area = int(mask.sum())
        if area < MIN_OBJECT_PIXELS:
            readings.append(FrameReading(area, (0.0,) * len(palette), (np.nan, np.nan), 0))
            continue
        behind = np.broadcast_to(background[:, None], frame.shape)[mask]  # (H, 3) -> (N, 3) for the N pixels
        readings.append(FrameReading(area, colour_shares(frame[mask], behind, palette),
                                     (float(xs[mask].mean()), float(ys[mask].mean())), _objects(mask)))
    return readings


def video_coherence(frames, palette=PALETTE):
    """CoherenceReport of one video, uint8 (F, H, W, 3) whose shapes have colours of `palette` (K, 3); the
    thresholds are this module's constants."""
    readings = read_frames(frames, palette)
    short = min(np.asarray(frames).shape[1:3])
    reasons = [f"frame {i}: no object" for i, r in enumerate(readings) if r.area < MIN_OBJECT_PIXELS]
    if reasons:
        return CoherenceReport(False, reasons, readings)
    areas = np.array([r.area for r in readings], np.float32)
    median = float(np.median(areas))
    reasons += [f"frame {i}: area {a:.0f} px against the median {median:.0f}" for i, a in enumerate(areas)
                if not median / MAX_AREA_RATIO <= a <= median * MAX_AREA_RATIO]
    counts = [r.objects for r in readings]
    if max(counts) - min(counts) > 1:  # two objects that touch count as one: a change by one is allowed
        reasons.append(f"{min(counts)} to {max(counts)} objects in a frame (frames {counts.index(min(counts))} and "
                       f"{counts.index(max(counts))})")
    shares = np.array([r.colours for r in readings])  # (F, K)
    usual = np.mean(shares >= MIN_COLOUR_SHARE, axis=0) > 0.5  # (K,): the colours most frames show
    for i, row in enumerate(shares):
        stray = np.where(~usual & (row > MAX_STRAY_SHARE))[0]
        reasons += [f"frame {i}: {row[k]:.0%} of the foreground in colour {k} ({tuple(palette[k])}), which most "
                    f"frames do not show" for k in stray]
        missing = np.where(usual & (row < MIN_PRESENT_SHARE))[0]
        reasons += [f"frame {i}: colour {k} ({tuple(palette[k])}), which most frames show, is missing"
                    for k in missing]
    for i in range(1, len(readings)):
        a, b = readings[i - 1], readings[i]
        step = float(np.hypot(b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1]))
        if step > MAX_STEP * short:
            reasons.append(f"frames {i - 1}-{i}: centroid jumps {step:.1f} px")
    return CoherenceReport(not reasons, reasons, readings)


def score_coherence(videos, palette=PALETTE):
    """videos: iterable of uint8 (F, H, W, 3) -> {"coherent": % coherent, "count": N, "videos": [{"coherent",
    "reasons"}]}."""
    rows = []
    for frames in videos:
        report = video_coherence(frames, palette)
        rows.append({"coherent": report.coherent, "reasons": report.reasons})
    count = len(rows)
    return {"coherent": 100.0 * sum(r["coherent"] for r in rows) / max(count, 1), "count": count, "videos": rows}
