"""Image-video joint LatteT2V (captions (B, 1 + n, L, D): the video's, then each image's) against a torch reference
of the official LatteT2V forward with use_image_num (tests/torch_latte_t2v_joint.py, on diffusers' modules with
every weight re-drawn); n = 0 is the plain forward; the video frames never see the images."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import mindspore as ms  # noqa: E402

from latte.checkpoint_io import load_strict  # noqa: E402
from latte.models.latte_t2v import LatteT2V  # noqa: E402
from tests.cache_support import restore_mindspore_mode  # noqa: E402,F401  (autouse fixture)
from tests.test_latte_t2v import FRAMES, LATENT, TINY, TOL, random_reference  # noqa: E402
from tests.torch_latte_t2v_joint import official_joint_forward  # noqa: E402

NUM_IMAGES = 2
LENGTH = 7  # caption tokens
# (B, 1+n, L): the video's caption, then each image's, with 0..4 padding tokens
JOINT_MASK = np.array([[[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]],
                       [[1, 1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0]]], np.int32)


@pytest.fixture(scope="module")
def models():
    ref = random_reference(seed=11)
    net = LatteT2V(**TINY)
    load_strict(net, {k: v.numpy() for k, v in ref.state_dict().items()})
    return ref, net


def joint_inputs(seed=2):
    r = np.random.default_rng(seed)
    x = r.standard_normal((2, FRAMES + NUM_IMAGES, TINY["in_channels"], LATENT, LATENT)).astype(np.float32)
    t = np.array([29, 811], np.int32)
    captions = r.standard_normal((2, 1 + NUM_IMAGES, LENGTH, TINY["caption_channels"])).astype(np.float32)
    return x, t, captions


def test_joint_forward_matches_official(models, mode):
    ref, net = models
    x, t, captions = joint_inputs()
    want = official_joint_forward(ref, torch.from_numpy(x), torch.from_numpy(t.astype(np.int64)),
                                  torch.from_numpy(captions), torch.from_numpy(JOINT_MASK), NUM_IMAGES).numpy()
    got = net(ms.Tensor(x), ms.Tensor(t), ms.Tensor(captions), ms.Tensor(JOINT_MASK)).asnumpy()
    assert got.shape == (2, FRAMES + NUM_IMAGES, 2 * TINY["in_channels"], LATENT, LATENT)
    assert 0.5 < np.abs(want).max() < 10, "outputs should be of magnitude ~1-4 for a meaningful tolerance"
    err = np.abs(got - want).max()
    print(f"[{mode}] joint T2V n={NUM_IMAGES} forward max abs err {err:.2e}")
    assert err <= TOL
    other = captions.copy()
    other[:, 2] = other[:, 1]  # image 2 gets image 1's caption: only image 2's output changes
    changed = np.abs(net(ms.Tensor(x), ms.Tensor(t), ms.Tensor(other), ms.Tensor(JOINT_MASK)).asnumpy() - got)
    changed = changed.max(axis=(2, 3, 4))  # (B, F+n)
    assert changed[:, :FRAMES + 1].max() == 0 and changed[:, -1].min() > 1e-3


def test_frames_and_images_are_separate(models):
    """The video frames' outputs are the plain forward of the clip with the video's caption; image j's is that
    image alone as a 1-frame input with its caption and no temporal block. One caption in the joint layout
    (B, 1, L, D) is the plain forward bit for bit."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _, net = models
    x, t, captions = joint_inputs(seed=5)
    mask = ms.Tensor(JOINT_MASK)
    got = net(ms.Tensor(x), ms.Tensor(t), ms.Tensor(captions), mask).asnumpy()
    clip = net(ms.Tensor(x[:, :FRAMES]), ms.Tensor(t), ms.Tensor(captions[:, 0]), mask[:, 0]).asnumpy()
    np.testing.assert_allclose(got[:, :FRAMES], clip, rtol=0, atol=1e-5)
    for j in range(NUM_IMAGES):
        image = net(ms.Tensor(x[:, FRAMES + j:FRAMES + j + 1]), ms.Tensor(t), ms.Tensor(captions[:, 1 + j]),
                    mask[:, 1 + j], enable_temporal_attentions=False).asnumpy()
        np.testing.assert_allclose(got[:, FRAMES + j:FRAMES + j + 1], image, rtol=0, atol=1e-5)
    one = net(ms.Tensor(x[:, :FRAMES]), ms.Tensor(t), ms.Tensor(captions[:, :1]), mask[:, :1]).asnumpy()
    np.testing.assert_array_equal(one, clip)


def test_mask_of_the_wrong_layout_is_refused(models):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _, net = models
    x, t, captions = joint_inputs()
    with pytest.raises(ValueError, match=r"encoder_attention_mask \(B, 1 \+ n, L\)"):
        net(ms.Tensor(x), ms.Tensor(t), ms.Tensor(captions), ms.Tensor(JOINT_MASK[:, 0]))
