"""The text-to-video demo's data and measure: captioned moving shapes (pure function of (seed, index), the named
colour, shape and direction, inside the frame), the caption grammar, and the prompt-agreement measure (100% on
the ground truth, 0% on colour-swapped or reversed videos, also through tools/prompt_agreement.py on GIFs)."""
import dataclasses
import json
import os

import numpy as np
import pytest

from latte.data import DataConfig
from latte.data.shape_captions import (CAPTION_COLOURS, CAPTION_SHAPES, DIRECTIONS, caption_combinations,
                                       parse_shape_caption, read_shape_video, score_prompt_agreement, shape_caption)
from latte.data.sources import get_source_type
from latte.data.synthetic import make_caption_spec, make_video_spec, render_frames, synthetic_video
from latte.io import save_video
from tools import prompt_agreement

FRAMES, SIZE = 8, 16
N_VIDEOS = len(caption_combinations())  # 48: every (colour, shape, direction) once


def captioned(num_videos=N_VIDEOS, **keys):
    return DataConfig(train_data_type="synthetic", synthetic_captions=True, num_videos=num_videos,
                      video_length=FRAMES, **keys)


def ground_truth():
    """[(caption, frames (F, H, W, 3) uint8)] of every combination, as the data pipeline reads them."""
    config = captioned()
    source = get_source_type("synthetic")
    out = []
    for entry in source.list_videos(config, SIZE):
        reader = source.open_video(entry, config, SIZE)
        out.append((entry.caption, reader.get_frames(range(FRAMES))))
    return out


def test_grammar_round_trip():
    assert shape_caption("red", "square", "left") == "a red square moving left"
    assert parse_shape_caption("  A Yellow Triangle moving DOWN ") == ("yellow", "triangle", "down")
    combos = caption_combinations()
    assert len(combos) == len(set(combos)) == len(CAPTION_COLOURS) * len(CAPTION_SHAPES) * len(DIRECTIONS)
    for bad in ("a purple square moving left", "a red hexagon moving up", "a red square moving sideways",
                "red square moving left"):
        with pytest.raises(ValueError, match="caption|grammar"):
            parse_shape_caption(bad)


def test_captioned_listing_and_videos():
    entries = get_source_type("synthetic").list_videos(captioned(num_videos=50), SIZE)
    assert [e.caption for e in entries[:2]] == ["a red circle moving left", "a green circle moving left"]
    assert entries[48].caption == entries[0].caption  # the 48 combinations cycle
    assert {e.class_name for e in entries} == set(CAPTION_SHAPES)
    assert get_source_type("synthetic").class_names(captioned()) == sorted(CAPTION_SHAPES)
    # a pure function of (seed, index): the same video twice, another for another index or seed
    a = synthetic_video(5, FRAMES, SIZE, captioned=True)
    assert np.array_equal(a, synthetic_video(5, FRAMES, SIZE, captioned=True))
    assert not np.array_equal(a, synthetic_video(53, FRAMES, SIZE, captioned=True))  # same caption, other draw
    assert not np.array_equal(a, synthetic_video(5, FRAMES, SIZE, seed=1, captioned=True))


def test_class_data_has_no_captions_and_is_unchanged():
    config = DataConfig(train_data_type="synthetic", num_videos=3, video_length=FRAMES)
    entries = get_source_type("synthetic").list_videos(config, SIZE)
    assert all(e.caption is None for e in entries)
    reader = get_source_type("synthetic").open_video(entries[2], config, SIZE)
    np.testing.assert_array_equal(reader.get_frames(range(FRAMES)),
                                  render_frames(make_video_spec(2), range(FRAMES), SIZE))


@pytest.mark.parametrize("video_length", [2, 8, 48])
def test_shape_stays_inside_and_moves_straight(video_length):
    for index in range(N_VIDEOS):
        spec, caption = make_caption_spec(index, video_length)
        (track,) = spec.tracks
        step = DIRECTIONS[parse_shape_caption(caption).direction]
        end = [track.start[k] + track.velocity[k] * (video_length - 1) for k in range(2)]
        for centre in (track.start, end):
            assert all(track.radius - 1e-9 <= c <= 1 - track.radius + 1e-9 for c in centre)
        assert np.sign(track.velocity[0]) == step[0] and np.sign(track.velocity[1]) == step[1]


def test_agreement_is_full_on_ground_truth_and_none_on_swapped_or_reversed():
    truth = ground_truth()
    report = score_prompt_agreement(truth)
    assert report["agreement"] == report["direction_4way"] == 100.0
    colours = list(CAPTION_COLOURS)
    swapped = []
    for index, (caption, _) in enumerate(truth):
        spec, _ = make_caption_spec(index, FRAMES)
        parsed = parse_shape_caption(caption)
        other = CAPTION_COLOURS[colours[(colours.index(parsed.colour) + 1) % len(colours)]]
        spec = dataclasses.replace(spec, tracks=(dataclasses.replace(spec.tracks[0], colour=other),))
        swapped.append((caption, render_frames(spec, range(FRAMES), SIZE)))
    swapped_report = score_prompt_agreement(swapped)
    assert swapped_report["agreement"] == swapped_report["colour"] == 0.0
    assert swapped_report["direction"] == 100.0
    reversed_report = score_prompt_agreement([(c, frames[::-1]) for c, frames in truth])
    assert reversed_report["agreement"] == reversed_report["direction"] == 0.0
    assert reversed_report["colour"] == 100.0


def test_reading_a_blank_or_still_video():
    blank = np.full((FRAMES, SIZE, SIZE, 3), 20, np.uint8)
    assert read_shape_video(blank).colour is None
    still = np.repeat(ground_truth()[0][1][:1], FRAMES, axis=0)  # the first frame held: no motion
    reading = read_shape_video(still)
    assert reading.colour == "red" and reading.direction is None
    assert score_prompt_agreement([("a red circle moving left", still)])["agreement"] == 0.0


def test_tool_scores_a_samples_folder(tmp_path, capsys):
    truth = ground_truth()[:6]
    for i, (caption, frames) in enumerate(truth):  # sample.py's names, enlarged as display_scale 4 writes them
        big = np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)
        save_video(big, str(tmp_path / f"{i:03d}_{caption.replace(' ', '_')}.gif"), fps=4)
    reversed_caption, frames = truth[0]
    save_video(frames[::-1], str(tmp_path / f"006_{reversed_caption.replace(' ', '_')}_1.gif"), fps=4)
    save_video(frames, str(tmp_path / "007_a_cat_wearing_sunglasses.gif"), fps=4)  # not a demo prompt: skipped
    assert prompt_agreement.main([str(tmp_path)]) == 0
    report = json.loads((tmp_path / prompt_agreement.RESULT_FILE).read_text())
    assert len(report["samples"]) == 7 and report["skipped"] == ["007_a_cat_wearing_sunglasses.gif"]
    assert report["agreement"] == pytest.approx(600 / 7)
    assert [r["agrees"] for r in report["samples"]] == [True] * 6 + [False]
    assert "prompt agreement 85.7% of 7 samples" in capsys.readouterr().out
    assert prompt_agreement.cli([str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    os.makedirs(empty)
    assert prompt_agreement.cli([str(empty)]) == 2
