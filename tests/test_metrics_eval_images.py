"""tools/eval_metrics.py FID (fid50k_full) and IS (is50k) end to end on tiny videos with a converted random 2015
Inception, against the scripted torch Inception on the same frames read without latte's readers; the frame plan
(the official random sample of single frames, mirroring)."""
import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from latte.io import save_video
from latte.metrics.clips import list_videos, plan_frames, read_clip
from latte.metrics.stats import FeatureStats, frechet_distance, inception_score
from tools.eval_metrics import main as eval_main
from tools.metrics_converter import main as convert_main

torch = pytest.importorskip("torch")

SIZE = 20
FRAMES = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.torch_metrics import TorchInception2015, redraw_, save_scripted

    root = tmp_path_factory.mktemp("eval_images")
    # channels / 16 and a seed whose tiny random network tells the frames apart (the IS > 1 check below)
    scripted = save_scripted(redraw_(TorchInception2015(width_divisor=16), seed=12), root / "inception.pt")
    convert_main(["--detector", "inception", "--source", str(root / "inception.pt"), "--target",
                  str(root / "inception.ckpt")])
    rng = np.random.default_rng(0)
    for v in range(2):  # real: frame folders
        os.makedirs(root / "real" / f"video{v}")
        for i in range(FRAMES):
            frame = np.clip(rng.integers(0, 256) + rng.integers(-40, 40, size=(SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(frame).save(root / "real" / f"video{v}" / f"{i:03d}.png")
    os.makedirs(root / "fake")
    for v in range(4):  # generated: GIFs, 20 frames in all
        base = rng.integers(0, 256, size=(5, 1, 1, 1))  # a brightness per frame, noise on top
        frames = np.clip(base + rng.integers(-40, 40, size=(5, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        save_video(frames, str(root / "fake" / f"sample{v}.gif"))
    return root, scripted


def _frame(clip):
    """(3, H, W) uint8 of a one-frame clip, read with PIL / imageio directly."""
    i = clip.indices[0]
    image = np.asarray(Image.open(clip.frames[i]).convert("RGB")) if clip.frames else \
        np.asarray(imageio.mimread(clip.path)[i])[..., :3]
    return image.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def test_fid_and_is_end_to_end_match_torch(setup, tmp_path):
    root, scripted = setup
    assert eval_main(["--real_data_path", str(root / "real"), "--fake_data_path", str(root / "fake"),
                      "--metrics", "fid50k_full,is50k", "--inception_ckpt", str(root / "inception.ckpt"),
                      "--cache_dir", str(tmp_path / "cache"), "--max_items", "20", "--frame_batch_size", "20",
                      "--output", str(tmp_path / "out.json")]) == 0
    records = json.load(open(tmp_path / "out.json"))
    fid = records["fid50k_full"]["results"]["fid50k_full"]
    is_mean = records["is50k"]["results"]["is50k_mean"]
    assert (records["fid50k_full"]["num_real_items"], records["fid50k_full"]["num_generated_items"]) == (4, 20)

    # the same frames (the official seeded sample) through the scripted torch Inception
    real = plan_frames(list_videos(str(root / "real")), 20, seed=0)
    fake = plan_frames(list_videos(str(root / "fake")), 20, seed=0)
    assert len(real) == 4 and len({(c.path, c.indices) for c in fake}) == 20
    with torch.no_grad():
        real_features = scripted(torch.from_numpy(np.stack([_frame(c) for c in real])), return_features=True)
        fake_images = torch.from_numpy(np.stack([_frame(c) for c in fake]))
        fake_features = scripted(fake_images, return_features=True)
        fake_probs = scripted(fake_images, no_output_bias=True).numpy()  # rows in the sampled order
    stats = [FeatureStats(capture_mean_cov=True) for _ in range(2)]
    stats[0].append(real_features.numpy())
    stats[1].append(fake_features.numpy())
    want_fid = frechet_distance(*stats[1].get_mean_cov(), *stats[0].get_mean_cov())
    want_mean, want_std = inception_score(fake_probs, 10)  # 10 splits of 2 rows, in the sampled order
    assert want_fid > 0 and abs(fid - want_fid) <= 1e-3 * want_fid
    assert want_mean > 1.001 and want_std > 0
    assert is_mean == pytest.approx(want_mean, rel=1e-5)
    assert records["is50k"]["results"]["is50k_std"] == pytest.approx(want_std, rel=1e-3)


def test_is_needs_as_many_items_as_splits(setup):
    from latte.config import ConfigError

    root, _ = setup
    with pytest.raises(ConfigError, match="fewer than the IS's 10 splits"):
        eval_main(["--real_data_path", str(root / "real"), "--fake_data_path", str(root / "fake"),
                   "--metrics", "is50k", "--inception_ckpt", str(root / "inception.ckpt"), "--max_items", "4"])


def test_frame_plan_samples_frames_and_mirrors(setup):
    root, _ = setup
    entries = list_videos(str(root / "real"))
    every = plan_frames(entries, None, seed=3)
    assert sorted((c.name, c.indices) for c in every) == sorted(
        (e.name, (i,)) for e in entries for i in range(FRAMES))
    assert [c.indices for c in plan_frames(entries, 4, seed=3)] == [c.indices for c in every[:4]]
    mirrored = plan_frames(entries, None, seed=3, mirror=True)
    assert len(mirrored) == 2 * len(every) and sum(c.flip for c in mirrored) == len(every)
    flipped = next(c for c in mirrored if c.flip)
    plain = next(c for c in mirrored if not c.flip and (c.path, c.indices) == (flipped.path, flipped.indices))
    np.testing.assert_array_equal(read_clip(flipped), read_clip(plain)[..., ::-1])
