"""The coherence measure of sampled shape videos (latte/data/coherence.py, tools/coherence.py): the synthetic
training clips all pass; a shape that vanishes, changes colour, jumps, grows or breaks into pieces fails, naming why."""
import json

import numpy as np
import pytest
from scipy import ndimage

from latte.data.coherence import background_ramp, score_coherence, video_coherence
from latte.data.shape_captions import CAPTION_COLOURS
from latte.data.synthetic import PALETTE, make_video_spec, render_frames, synthetic_video
from latte.io import save_video
from latte.sampling import enlarge
from tools import coherence as coherence_tool


def training_clip(index, size=16, stride=3, start=0, shapes=("circle", "square")):
    return render_frames(make_video_spec(index, shapes), range(start, start + 8 * stride, stride), size)


def one_shape_clip():
    """A clip of the class demo's data with one shape (uint8 (8, 16, 16, 3)) and its foreground masks."""
    for index in range(64):
        spec = make_video_spec(index, ("circle", "square"))
        if len(spec.tracks) == 1:
            frames = training_clip(index)
            background = background_ramp(frames)  # (H, 3)
            masks = np.linalg.norm(frames.astype(np.float32) - background[:, None], axis=-1) > 80  # (F, H, W)
            return frames, background, masks
    raise AssertionError("no one-shape video among the first 64")


def two_shape_clip():
    """A clip of the class demo's data with two shapes (uint8 (8, 16, 16, 3)) and their palette indices."""
    for index in range(64):
        spec = make_video_spec(index, ("circle", "square"))
        if len(spec.tracks) == 2:
            return training_clip(index), [PALETTE.index(track.colour) for track in spec.tracks]
    raise AssertionError("no two-shape video among the first 64")


def test_the_training_clips_are_all_coherent():
    clips = [training_clip(i, size, 3, start) for i in range(24) for size in (16, 32) for start in (0, 7)]
    clips += [training_clip(i, 16, 1, 0, ("circle", "square", "triangle", "digit")) for i in range(24)]
    report = score_coherence(clips)
    assert report["coherent"] == 100.0, [v["reasons"] for v in report["videos"] if not v["coherent"]][:3]
    captioned = [synthetic_video(i, 8, 16, captioned=True) for i in range(48)]
    assert score_coherence(captioned, list(CAPTION_COLOURS.values()))["coherent"] == 100.0


def test_each_kind_of_incoherence_fails_with_its_reason():
    frames, background, masks = one_shape_clip()
    assert video_coherence(frames).coherent

    vanished = frames.copy()
    vanished[3] = np.broadcast_to(background[:, None].round().astype(np.uint8), vanished[3].shape)
    assert "frame 3: no object" in video_coherence(vanished).reasons

    recoloured = frames.copy()
    own = np.argmin([np.linalg.norm(frames[0][masks[0]].mean(0) - np.array(c)) for c in PALETTE])
    other = np.array(PALETTE[(own + 2) % len(PALETTE)], np.uint8)
    for f in range(5, 8):
        recoloured[f][masks[f]] = other
    reasons = video_coherence(recoloured).reasons
    assert any(r.startswith("frame 5:") and "most frames do not show" in r for r in reasons), reasons

    jumped = frames.copy()
    jumped[5] = np.roll(frames[5], 6, axis=1)
    assert any("frames 4-5: centroid jumps" in r for r in video_coherence(jumped).reasons)

    grown = frames.copy()
    big = ndimage.binary_dilation(masks[2], iterations=3)
    grown[2][big] = frames[2][masks[2]].mean(0).astype(np.uint8)
    assert any(r.startswith("frame 2: area") for r in video_coherence(grown).reasons)

    two, names = two_shape_clip()
    assert video_coherence(two).coherent
    turned = two.copy()
    first, second = (np.array(PALETTE[k], np.float32) for k in names)
    for f in range(5, 8):  # the first shape takes the second's colour: the two touch or not, one colour is gone
        near = np.linalg.norm(two[f].astype(np.float32) - first, axis=-1) < 100
        turned[f][near] = second.astype(np.uint8)
    reasons = video_coherence(turned).reasons
    assert any(r.startswith(("frame 5:", "frame 6:", "frame 7:")) and "which most frames show, is missing" in r
               for r in reasons), reasons

    broken = frames.copy()
    for y, x in ((0, 0), (0, 13), (13, 0)):
        broken[6, y:y + 2, x:x + 2] = frames[6][masks[6]].mean(0).astype(np.uint8)  # three specks off the shape
    assert any("objects in a frame" in r for r in video_coherence(broken).reasons)


def test_the_tool_reads_enlarged_gifs_and_writes_its_report(tmp_path, capsys):
    frames, background, _ = one_shape_clip()
    vanished = frames.copy()
    vanished[2:4] = np.broadcast_to(background[:, None].round().astype(np.uint8), vanished[2:4].shape)
    for name, video in (("sample_000", frames), ("sample_001", vanished)):
        save_video(enlarge(video, 8), str(tmp_path / f"{name}.gif"), fps=4)  # as sample.py writes them
    assert coherence_tool.main([str(tmp_path)]) == 0
    assert "coherent: 1 of 2 videos (50.0%)" in capsys.readouterr().out
    report = json.loads((tmp_path / "coherence.json").read_text())
    assert [v["coherent"] for v in report["videos"]] == [True, False]
    assert report["videos"][1]["reasons"][0] == "frame 2: no object"
    assert coherence_tool.cli([str(tmp_path / "missing")]) == 2
    with pytest.raises(ValueError, match="expected uint8"):
        video_coherence(frames.astype(np.float32))


def test_frame_strip_puts_each_video_on_a_row(tmp_path, capsys):
    from latte.io import GRID_PADDING
    from tools import frame_strip

    frames, _, _ = one_shape_clip()
    for i in range(3):
        save_video(enlarge(np.roll(frames, i, axis=2), 8), str(tmp_path / f"sample_{i:03d}.gif"), fps=4)
    out = tmp_path / "strip.png"
    assert frame_strip.main([str(tmp_path), "--output", str(out), "--every", "2", "--scale", "2"]) == 0
    assert "2 videos x 8 frames" in capsys.readouterr().out
    import imageio.v3 as iio

    strip = iio.imread(out)
    side = 16 * 2 + GRID_PADDING
    assert strip.shape[:2] == (2 * side + GRID_PADDING, 8 * side + GRID_PADDING)
    first = strip[GRID_PADDING:GRID_PADDING + 32, GRID_PADDING:GRID_PADDING + 32]  # video 0, frame 0, enlarged 2x
    np.testing.assert_array_equal(first, enlarge(frames[:1], 2)[0])
    third = strip[side + GRID_PADDING:side + GRID_PADDING + 32, GRID_PADDING:GRID_PADDING + 32]  # video 2 (every 2)
    np.testing.assert_array_equal(third, enlarge(np.roll(frames, 2, axis=2)[:1], 2)[0])


@pytest.mark.parametrize("tool", ["coherence", "prompt_agreement", "frame_strip"])
def test_the_sample_tools_refuse_a_missing_or_empty_folder_in_one_line(tool, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"tools.{tool}").cli
    extra = ["--output", str(tmp_path / "out.png")] if tool == "frame_strip" else []
    assert main([str(tmp_path / "missing")] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {str(tmp_path / 'missing')!r} is not a folder: give a folder of sampled videos " \
                  f"(sample.py's output)"
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")] + extra) == 2
    assert capsys.readouterr().err.strip() == f"error: no .gif or .mp4 videos in {tmp_path / 'empty'}: give a " \
                                              f"sample.py output folder"


def test_gifs_give_back_every_frame_and_an_empty_sample_is_scored(tmp_path, capsys):
    """Pillow merges identical consecutive GIF frames into one: read_sample_video restores them from the frame
    count save_video records, and a sample of one uniform colour (shrunk to 1x1) is scored, not a crash."""
    from latte.io import read_sample_video

    frames, _, _ = one_shape_clip()
    still = frames.copy()
    still[3:6] = frames[3]  # the shape stops for three frames
    save_video(enlarge(still, 8), str(tmp_path / "sample_000.gif"), fps=4)
    np.testing.assert_array_equal(read_sample_video(str(tmp_path / "sample_000.gif")), still)
    save_video(np.full((8, 128, 128, 3), 128, np.uint8), str(tmp_path / "sample_001.gif"), fps=4)
    assert read_sample_video(str(tmp_path / "sample_001.gif")).shape == (8, 1, 1, 3)
    assert coherence_tool.main([str(tmp_path)]) == 0
    assert "coherent: 1 of 2 videos" in capsys.readouterr().out
    report = json.loads((tmp_path / "coherence.json").read_text())
    assert report["videos"][1]["reasons"][0] == "frame 0: no object"
