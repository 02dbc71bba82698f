"""C3D (UCF101, the video IS): tools/metrics_converter.py on a scripted torch C3D with TGANv2's module names
(random weights, every one re-drawn, channels / 16), the MindSpore cell against it on the probabilities, and
isv2048_ucf end to end through tools/eval_metrics.py against the scripted model on the same clips."""
import json
import os

import imageio.v2 as imageio
import mindspore as ms
import numpy as np
import pytest

from latte.checkpoint_io import read_meta
from latte.io import save_video
from latte.metrics.clips import list_videos, plan_clips
from latte.metrics.detectors import load_detector
from latte.metrics.stats import VIDEO_IS_SHUFFLE_SEED, inception_score
from tools.eval_metrics import main as eval_main
from tools.metrics_converter import main as convert_main

torch = pytest.importorskip("torch")

TINY_WIDTH = 16
SIZE = 12


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def c3d_files(tmp_path_factory):
    from tests.torch_metrics import TorchC3D, redraw_, save_scripted

    folder = tmp_path_factory.mktemp("c3d")
    module = redraw_(TorchC3D(width_divisor=TINY_WIDTH), seed=1)
    with torch.no_grad():
        module.mean.copy_(torch.rand(module.mean.shape, generator=torch.Generator().manual_seed(2)) * 40 + 90)
        module.conv1a.weight.mul_(1 / 128)  # the clips enter at pixel scale: keeps the random softmax unsaturated
    scripted = save_scripted(module, folder / "c3d_ucf101.pt")
    target = str(folder / "c3d.ckpt")
    assert convert_main(["--detector", "c3d", "--source", str(folder / "c3d_ucf101.pt"), "--target", target]) == 0
    return scripted, target, folder


def test_converter_record(c3d_files):
    assert read_meta(c3d_files[1])["config"] == {"num_classes": 101, "width_divisor": TINY_WIDTH}


def test_probabilities_match_scripted_torch(c3d_files):
    scripted, target, _ = c3d_files
    rng = np.random.default_rng(0)
    clips = np.clip(np.array([60, 190])[:, None, None, None, None] + rng.integers(-50, 50, (2, 3, 16, 24, 30)),
                    0, 255).astype(np.uint8)
    with torch.no_grad():
        want = scripted(torch.from_numpy(clips)).numpy()
    got = load_detector(target, "c3d", input_hw=(24, 30))(ms.Tensor(clips)).asnumpy()
    assert got.shape == (2, 101) and want.max() < 0.5 and np.abs(want[0] - want[1]).max() > 1e-3
    assert rel_err(got, want) <= 1e-4


def test_video_is_end_to_end_matches_torch(c3d_files, tmp_path):
    scripted, target, folder = c3d_files
    rng = np.random.default_rng(3)
    os.makedirs(tmp_path / "fake")
    for v in range(21):  # one video more than the sample: the random choice of videos matters
        level = rng.integers(0, 256)
        frames = np.clip(level + rng.integers(-40, 40, size=(17, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        save_video(frames, str(tmp_path / "fake" / f"sample{v:02d}.gif"))
    assert eval_main(["--real_data_path", str(tmp_path / "fake"), "--fake_data_path", str(tmp_path / "fake"),
                      "--metrics", "isv2048_ucf", "--c3d_ckpt", target, "--max_items", "20", "--batch_size", "20",
                      "--output", str(tmp_path / "out.json")]) == 0
    results = json.load(open(tmp_path / "out.json"))["isv2048_ucf"]["results"]

    clips = plan_clips(list_videos(str(tmp_path / "fake")), 16, 1, 20, False, 0, "fake")  # the official sample
    assert len(clips) == 20 and all(c.indices == tuple(range(16)) for c in clips)
    batch = np.stack([np.stack([np.asarray(imageio.mimread(c.path)[i])[..., :3] for i in c.indices])
                      for c in clips]).transpose(0, 4, 1, 2, 3)  # (B, T, H, W, 3) -> (B, 3, T, H, W)
    with torch.no_grad():
        probs = scripted(torch.from_numpy(batch)).numpy()
    mean, std = inception_score(probs, 10, shuffle_seed=VIDEO_IS_SHUFFLE_SEED)
    assert mean > 1.001 and std > 0
    assert results["isv2048_ucf_mean"] == pytest.approx(mean, rel=1e-5)
    assert results["isv2048_ucf_std"] == pytest.approx(std, rel=1e-3)
