"""The 2015 Inception (FID, IS): tools/metrics_converter.py on a scripted torch Inception with the port's module
tree (random weights, every one re-drawn, channels / 8), the MindSpore cell against it on pool3 features and on
the IS probabilities, the TF resize against the port's affine_grid + grid_sample, the .pkl path."""
import pickle

import mindspore as ms
import numpy as np
import pytest

from latte.checkpoint_io import CheckpointError, read_meta
from latte.metrics.detectors import load_detector
from latte.metrics.resize import FrameResize, tf_legacy_matrix
from tools.metrics_converter import main as convert_main

torch = pytest.importorskip("torch")
F = torch.nn.functional

FEATURE_RTOL = 1e-4
TINY_WIDTH = 8  # divides every width (80, 48 ...): the released module tree, 1/64 of the compute
SEED = 12  # the stand-in's seed: narrow random networks can go dead; this one tells images apart (asserted)


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def inception_files(tmp_path_factory):
    from tests.torch_metrics import TorchInception2015, redraw_, save_scripted

    folder = tmp_path_factory.mktemp("inception")
    module = redraw_(TorchInception2015(width_divisor=TINY_WIDTH), seed=SEED)
    scripted = save_scripted(module, folder / "inception-2015-12-05.pt")
    target = str(folder / "inception.ckpt")
    assert convert_main(["--detector", "inception", "--source", str(folder / "inception-2015-12-05.pt"),
                         "--target", target]) == 0
    return scripted, module, target


def test_converter_record(inception_files):
    meta = read_meta(inception_files[2])
    assert meta["detector"] == "inception" and meta["config"] == {"num_classes": 1008, "width_divisor": TINY_WIDTH}


def test_features_and_probabilities_match_scripted_torch(inception_files):
    """StyleGAN-V's calls on uint8 images: return_features=True (FID) and no_output_bias=True (IS)."""
    scripted, _, target = inception_files
    rng = np.random.default_rng(0)
    images = np.clip(np.array([60, 190])[:, None, None, None] + rng.integers(-50, 50, size=(2, 3, 40, 52)), 0, 255)
    images = images.astype(np.uint8)
    with torch.no_grad():
        want_features = scripted(torch.from_numpy(images), return_features=True).numpy()
        want_probs = scripted(torch.from_numpy(images), no_output_bias=True).numpy()
    features = load_detector(target, "inception", input_hw=(40, 52), return_features=True)(ms.Tensor(images))
    probs = load_detector(target, "inception", input_hw=(40, 52), return_features=False,
                          no_output_bias=True)(ms.Tensor(images))
    assert features.shape == (2, 2048 // TINY_WIDTH) and probs.shape == (2, 1008)
    spread = want_features[0] - want_features[1]  # what tells the two images apart
    assert np.linalg.norm(spread) > 0.1 * np.linalg.norm(want_features) and np.abs(want_probs[0] - want_probs[1]).max() > 1e-3
    got = features.asnumpy()
    assert rel_err(got, want_features) <= FEATURE_RTOL
    assert rel_err(got[0] - got[1], spread) <= FEATURE_RTOL
    assert rel_err(probs.asnumpy(), want_probs) <= FEATURE_RTOL


@pytest.mark.parametrize("in_hw", [(20, 28), (400, 333)])
def test_resize_matches_the_ports_grid_sample(in_hw):
    """TF1 resize_bilinear as the port computes it: affine_grid with the shifted theta, border padding."""
    x = np.random.default_rng(1).random((1, 3, *in_hw)).astype(np.float32) * 255
    theta = torch.eye(2, 3)
    theta[0, 2] += 1.0 / in_hw[1] - 1.0 / 299
    theta[1, 2] += 1.0 / in_hw[0] - 1.0 / 299
    grid = F.affine_grid(theta.unsqueeze(0), [1, 3, 299, 299], align_corners=False)
    want = F.grid_sample(torch.from_numpy(x), grid, mode="bilinear", padding_mode="border",
                         align_corners=False).numpy()
    got = FrameResize(in_hw, (299, 299), tf_legacy_matrix)(ms.Tensor(x)).asnumpy()
    assert rel_err(got, want) <= 1e-5


def test_pickled_module_converts_to_the_same_weights(inception_files, tmp_path):
    """The .pkl path (StyleGAN3's inception-2015-12-05.pkl is the network pickled whole)."""
    from latte.checkpoint_io import read_ms_checkpoint

    _, module, target = inception_files
    with open(tmp_path / "inception-2015-12-05.pkl", "wb") as f:
        pickle.dump(module, f)
    assert convert_main(["--detector", "inception", "--source", str(tmp_path / "inception-2015-12-05.pkl"),
                         "--target", str(tmp_path / "from_pkl.ckpt")]) == 0
    from_pkl, _ = read_ms_checkpoint(str(tmp_path / "from_pkl.ckpt"))
    from_pt, _ = read_ms_checkpoint(target)
    assert sorted(from_pkl) == sorted(from_pt)
    assert all(np.array_equal(np.asarray(from_pkl[k]), np.asarray(from_pt[k])) for k in from_pt)


def test_pickle_needing_missing_code_is_one_line(tmp_path):
    (tmp_path / "needs_code.pkl").write_bytes(b"cmissing_torch_utils.persistence\n_reconstruct\n.")
    with pytest.raises(CheckpointError, match="needs the module 'missing_torch_utils'"):
        convert_main(["--detector", "inception", "--source", str(tmp_path / "needs_code.pkl"),
                      "--target", str(tmp_path / "x.ckpt")])
