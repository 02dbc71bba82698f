"""sample.py --save_format frames: a folder of PNG frames per video under <run>/videos, the layout
tools/eval_metrics.py (and the official evaluation) reads."""
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from latte.metrics.clips import list_videos, plan_clips, read_clip  # noqa: E402
from tests.test_sample_e2e import FRAMES, IMAGE, models, run  # noqa: E402,F401  (the tiny converted models)


def test_frames_layout_is_what_the_metrics_read(tmp_path, models):  # noqa: F811
    out = run(models, tmp_path / "frames", None, "--ddim_sampling", "True", "--save_format", "frames")
    videos = os.path.join(out, "videos")
    assert sorted(os.listdir(videos)) == ["sample_000", "sample_001"]
    assert "first_frames.png" in os.listdir(out)  # beside videos/, not inside it
    entries = list_videos(videos)
    assert [e.name for e in entries] == ["sample_000", "sample_001"]
    clips = plan_clips(entries, FRAMES, 1, None, False, 0, "generated")
    frames = [read_clip(c) for c in clips]  # each (3, F, H, W) uint8
    assert all(f.shape == (3, FRAMES, IMAGE, IMAGE) for f in frames)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 0  # two different samples
