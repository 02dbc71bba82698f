"""The squares measure of sampled shape videos (latte/data/squareness.py, tools/coherence.py): it tells the demo's
squares from its circles in the training clips, and a square smoothed into a blob no longer counts."""
import json
import math

import cv2
import numpy as np

from latte.data.squareness import SQUARE_BELOW, frame_fourfold, is_square, video_squareness
from latte.data.synthetic import make_video_spec, render_frames
from latte.io import save_video
from tools import coherence as coherence_tool


def clips_of(kind, size, count=24):
    """`count` clips (8 frames, every 2nd) of the class demo's training videos of one kind: uint8 (8, S, S, 3)."""
    specs = [make_video_spec(i, ("circle", "square")) for i in range(2 * count)]
    return [render_frames(spec, range(i % 9, i % 9 + 16, 2), size) for i, spec in enumerate(specs) if spec.kind == kind]


def drawn(kind, size=64, half=20):
    """One frame of one white shape on black, uint8 (size, size, 3), centred; 'diamond': a square turned 45 degrees."""
    frame = np.zeros((size, size, 3), np.uint8)
    c = size // 2
    if kind == "square":
        frame[c - half:c + half, c - half:c + half] = 255
    elif kind == "disc":
        cv2.circle(frame, (c, c), half, (255, 255, 255), -1, cv2.LINE_AA)
    else:
        cv2.fillPoly(frame, [np.array([[c, c - half], [c + half, c], [c, c + half], [c - half, c]], np.int32)],
                     (255, 255, 255))
    return frame


def test_the_moment_of_a_square_a_disc_and_a_diamond():
    background = np.zeros((64, 3), np.float32)
    (square,), (disc,), (diamond,) = (frame_fourfold(drawn(k), background) for k in ("square", "disc", "diamond"))
    assert math.isclose(square, -3 / 7, abs_tol=0.03), square  # the continuum's value, -3/7
    assert abs(disc) < 0.04, disc  # pixels make a small disc a little square
    assert math.isclose(diamond, 3 / 7, abs_tol=0.05), diamond  # turned 45 degrees: the sign flips
    assert frame_fourfold(np.zeros((64, 64, 3), np.uint8), background) == []  # no object: nothing to measure


def test_the_training_clips_squares_count_and_their_circles_do_not():
    for size in (16, 32):
        squares = [is_square(video_squareness(clip)) for clip in clips_of("square", size)]
        circles = [is_square(video_squareness(clip)) for clip in clips_of("circle", size)]
        assert np.mean(squares) >= 0.8, (size, np.mean(squares))
        assert not any(circles), size


def test_a_square_smoothed_into_a_blob_does_not_count():
    clip = next(c for c in clips_of("square", 16) if is_square(video_squareness(c)))
    blob = np.stack([cv2.GaussianBlur(frame, (0, 0), 1.2) for frame in clip])  # what a blurry sample shows
    assert video_squareness(clip) < SQUARE_BELOW < video_squareness(blob)
    assert math.isnan(video_squareness(np.zeros((8, 16, 16, 3), np.uint8)))
    assert not is_square(float("nan"))


def test_the_coherence_tool_counts_the_squares(tmp_path, capsys):
    squares, circles = clips_of("square", 16, 4), clips_of("circle", 16, 4)
    for i, clip in enumerate(squares + circles):  # enlarged 8x, as sample.py writes them
        save_video(np.repeat(np.repeat(clip, 8, axis=1), 8, axis=2), str(tmp_path / f"sample_{i:03d}.gif"), fps=4)
    assert coherence_tool.cli([str(tmp_path)]) == 0
    report = json.loads((tmp_path / "coherence.json").read_text())
    kinds = [row["square"] for row in report["videos"]]  # in file order: the squares first
    assert report["squares"] == sum(kinds) and sum(kinds[:len(squares)]) >= len(squares) - 1
    assert not any(kinds[len(squares):])
    assert all(isinstance(row["squareness"], float) for row in report["videos"])
    assert f"squares: {report['squares']} of {report['count']} videos show squares" in capsys.readouterr().out
