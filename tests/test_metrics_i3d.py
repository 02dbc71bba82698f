"""The I3D FVD detector: tools/metrics_converter.py on a scripted torch I3D with the port's module tree (random
weights, every one re-drawn), the MindSpore cell against it on features, and the resize step against torch."""
import mindspore as ms
import numpy as np
import pytest

from latte.checkpoint_io import CheckpointError, read_meta
from latte.metrics.detectors import load_detector
from latte.metrics.recipes import I3D_MIN_FRAMES
from latte.metrics.resize import FrameResize
from tools.metrics_converter import main as convert_main

torch = pytest.importorskip("torch")
F = torch.nn.functional

FEATURE_RTOL = 1e-4
TINY_WIDTH = 8  # every channel count / 8 (the largest divisor of all): the released module tree, 1/64 of the compute


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def i3d_files(tmp_path_factory):
    from tests.torch_metrics import TorchI3D, redraw_, save_scripted

    folder = tmp_path_factory.mktemp("i3d")
    scripted = save_scripted(redraw_(TorchI3D(width_divisor=TINY_WIDTH), seed=3), folder / "i3d_torchscript.pt")
    target = str(folder / "i3d.ckpt")
    assert convert_main(["--detector", "i3d", "--source", str(folder / "i3d_torchscript.pt"),
                         "--target", target]) == 0
    return scripted, target


def test_converter_record(i3d_files):
    _, target = i3d_files
    meta = read_meta(target)
    assert meta["detector"] == "i3d" and meta["config"] == {"num_classes": 400, "width_divisor": TINY_WIDTH}


def test_features_match_scripted_torch(i3d_files):
    """StyleGAN-V's call: uint8-range clips, rescale=True, resize=True, return_features=True."""
    scripted, target = i3d_files
    clips = np.random.default_rng(0).integers(0, 256, size=(2, 3, I3D_MIN_FRAMES, 24, 30)).astype(np.uint8)
    with torch.no_grad():
        want = scripted(torch.from_numpy(clips), rescale=True, resize=True, return_features=True).numpy()
    net = load_detector(target, "i3d", input_hw=(24, 30))
    got = net(ms.Tensor(clips)).asnumpy()
    assert got.shape == (2, 400)
    assert want.std() > 0.1 and np.abs(want[0] - want[1]).max() > 1e-3  # features are not degenerate
    assert rel_err(got, want) <= FEATURE_RTOL


@pytest.mark.parametrize("in_hw", [(20, 28), (300, 250)])
def test_resize_matches_torch_interpolate(in_hw):
    """The resize alone (up- and downsampling): torch's trilinear with the frame count kept."""
    x = np.random.default_rng(1).random((1, 3, 2, *in_hw)).astype(np.float32) * 255
    want = F.interpolate(torch.from_numpy(x), size=(2, 224, 224), mode="trilinear", align_corners=False).numpy()
    got = FrameResize(in_hw, (224, 224))(ms.Tensor(x)).asnumpy()
    assert rel_err(got, want) <= 1e-6


def test_converter_refuses_other_files(tmp_path):
    other = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 4)))
    other.save(str(tmp_path / "other.pt"))
    with pytest.raises(CheckpointError, match="not a i3d detector file"):
        convert_main(["--detector", "i3d", "--source", str(tmp_path / "other.pt"),
                      "--target", str(tmp_path / "x.ckpt")])


def test_detector_name_is_checked(i3d_files, tmp_path):
    import json
    import shutil

    _, target = i3d_files
    copy = str(tmp_path / "renamed.ckpt")
    shutil.copy(target, copy)
    meta = read_meta(target)
    meta["detector"] = "inception"
    with open(copy + ".json", "w") as f:
        json.dump(meta, f)
    with pytest.raises(CheckpointError, match="needs 'i3d'"):
        load_detector(copy, "i3d")
