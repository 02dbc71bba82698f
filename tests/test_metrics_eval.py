"""tools/eval_metrics.py end to end on tiny videos with a converted random I3D, against the scripted torch I3D on
the same clips; the feature cache (reuse, resume after a kill)."""
import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from latte.config import ConfigError
from latte.io import save_video
from latte.metrics import features as features_module
from latte.metrics.clips import list_videos, plan_clips
from latte.metrics.features import gather_features
from latte.metrics.recipes import FVD_METRICS
from latte.metrics.stats import FeatureStats, frechet_distance
from tools.eval_metrics import main as eval_main
from tools.metrics_converter import main as convert_main

torch = pytest.importorskip("torch")

SIZE = 16


def _write_frame_folder(folder, frames):
    os.makedirs(folder)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{i:03d}.png"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.torch_metrics import TorchI3D, redraw_, save_scripted

    root = tmp_path_factory.mktemp("eval")
    scripted = save_scripted(redraw_(TorchI3D(width_divisor=8), seed=5), root / "i3d_torchscript.pt")
    convert_main(["--detector", "i3d", "--source", str(root / "i3d_torchscript.pt"), "--target",
                  str(root / "i3d.ckpt")])
    rng = np.random.default_rng(0)
    recipe = FVD_METRICS["fvd2048_16f"]
    for v in range(3):  # real: frame folders long enough for 16 frames, every 3rd
        frames = rng.integers(0, 256, size=(recipe.num_frames * recipe.real_subsample + 2, SIZE, SIZE, 3), dtype=np.uint8)
        _write_frame_folder(str(root / "real" / f"video{v}"), frames)
    os.makedirs(root / "fake")
    for v in range(3):  # generated: GIFs of 16 frames
        base = rng.integers(0, 256, size=(1, SIZE, SIZE, 3))
        frames = np.clip(base + rng.integers(-40, 40, size=(recipe.num_frames, SIZE, SIZE, 3)), 0, 255)
        save_video(frames.astype(np.uint8), str(root / "fake" / f"sample{v}.gif"))
    return root, scripted


def _torch_features(scripted, clips, frames_of):
    batch = np.stack([frames_of(c) for c in clips])  # (B, 3, T, H, W) uint8
    with torch.no_grad():
        return scripted(torch.from_numpy(batch), rescale=True, resize=True, return_features=True).numpy()


def test_fvd_end_to_end_matches_torch_and_reuses_the_cache(setup, tmp_path, monkeypatch):
    root, scripted = setup
    args = ["--real_data_path", str(root / "real"), "--fake_data_path", str(root / "fake"), "--metrics",
            "fvd2048_16f", "--i3d_ckpt", str(root / "i3d.ckpt"), "--cache_dir", str(tmp_path / "cache"),
            "--max_items", "2", "--batch_size", "2", "--output", str(tmp_path / "out.json")]
    assert eval_main(args) == 0
    record = json.load(open(tmp_path / "out.json"))["fvd2048_16f"]
    ours = record["results"]["fvd2048_16f"]
    assert (record["num_real_items"], record["num_generated_items"]) == (2, 2)

    # the same clips through the scripted torch I3D, frames read without latte's readers
    recipe = FVD_METRICS["fvd2048_16f"]
    real_clips = plan_clips(list_videos(str(root / "real")), 16, recipe.real_subsample, 2, True, 0, "real")
    fake_clips = plan_clips(list_videos(str(root / "fake")), 16, 1, 2, False, 0, "fake")
    assert all(len(set(np.diff(c.indices))) == 1 and np.diff(c.indices)[0] == 3 for c in real_clips)
    assert all(c.indices == tuple(range(16)) for c in fake_clips)
    real = _torch_features(scripted, real_clips, lambda c: np.stack(
        [np.asarray(Image.open(c.frames[i]).convert("RGB")) for i in c.indices]).transpose(3, 0, 1, 2))
    fake = _torch_features(scripted, fake_clips, lambda c: np.stack(
        [np.asarray(imageio.mimread(c.path)[i])[..., :3] for i in c.indices]).transpose(3, 0, 1, 2))
    stats = [FeatureStats(capture_mean_cov=True) for _ in range(2)]
    stats[0].append(real)
    stats[1].append(fake)
    want = frechet_distance(*stats[1].get_mean_cov(), *stats[0].get_mean_cov())
    assert want > 0 and abs(ours - want) <= 1e-3 * want

    # second run: the real features come from the cache, only the generated clips are read
    assert [p.endswith(".npz") and p.startswith("real-") for p in os.listdir(tmp_path / "cache")] == [True]
    read = []
    original = features_module.read_clips
    monkeypatch.setattr(features_module, "read_clips", lambda clips: read.extend(c.path for c in clips) or original(clips))
    assert eval_main(args) == 0
    assert json.load(open(tmp_path / "out.json"))["fvd2048_16f"]["results"]["fvd2048_16f"] == ours
    assert sorted(read) == sorted(c.path for c in fake_clips)


def test_feature_cache_resumes_after_a_kill(setup, tmp_path):
    root, _ = setup
    clips = plan_clips(list_videos(str(root / "fake")), 16, 1, None, False, 0, "fake")
    calls = {"n": 0}

    def mean_colour(kill_after=None):
        def detector(x):  # (B, 3, T, H, W) -> (B, 3): each clip's mean colour, a cheap stand-in feature
            calls["n"] += 1
            if kill_after is not None and calls["n"] > kill_after:
                raise KeyboardInterrupt
            return _Out(x.asnumpy().astype(np.float64).mean(axis=(2, 3, 4)))
        return lambda hw: detector

    whole = gather_features(clips, mean_colour(), 1, "whole")
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        gather_features(clips, mean_colour(kill_after=2), 1, "killed", str(tmp_path), "tag", save_every=1)
    assert FeatureStats.load(str(tmp_path / "tag.partial.npz")).num_items == 2
    calls["n"] = 0
    resumed = gather_features(clips, mean_colour(), 1, "resumed", str(tmp_path), "tag", save_every=1)
    assert calls["n"] == 1  # only the third clip was read again
    assert sorted(os.listdir(tmp_path)) == ["tag.npz"]
    for a, b in zip(resumed.get_mean_cov(), whole.get_mean_cov()):
        np.testing.assert_allclose(a, b, rtol=1e-12)


class _Out:
    def __init__(self, array):
        self.array = array

    def asnumpy(self):
        return self.array


def test_unported_metric_is_named(setup):
    root, _ = setup
    with pytest.raises(ConfigError, match="kid50k_full: needs the KID formula"):
        eval_main(["--real_data_path", str(root / "real"), "--fake_data_path", str(root / "fake"),
                   "--metrics", "fvd2048_16f,kid50k_full"])
