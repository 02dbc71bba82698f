"""Image-video joint Latte (use_image_num = n images after the F video frames) vs the official LatteIMG forward
(tests/torch_latte.py mirrors models/latte_img.py), tiny random weights in the official layout."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mindspore as ms  # noqa: E402

from tests.test_latte_parity import TINY, TOL, convert_random_model, load_ms  # noqa: E402

NUM_IMAGES = 2
NULL = 101  # num_classes: the null label


def joint_inputs(seed=1):
    r = np.random.default_rng(seed)
    x = r.standard_normal((2, TINY["num_frames"] + NUM_IMAGES, 4, 8, 8)).astype(np.float32)
    t = np.array([3, 987], np.int32)
    y = np.array([7, 55], np.int32)
    image_labels = np.array([[12, 90], [7, 33]], np.int32)
    return x, t, y, image_labels


@pytest.mark.parametrize("condition", [None, "class"])
def test_joint_forward_matches_official(tmp_path, mode, condition):
    ref, dst = convert_random_model(tmp_path, condition)
    net = load_ms(dst, condition)
    x, t, y, image_labels = joint_inputs()
    drop = np.array([1, 0], np.int32)  # the first video's label dropped (the official force_drop_ids)
    image_drop = np.array([0, 1], np.int32)  # the second sample's images all dropped (one draw per sample)
    ref_y = np.where(drop == 1, NULL, y)
    ref_images = np.where(image_drop[:, None] == 1, NULL, image_labels)
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t.astype(np.int64)),
                   torch.from_numpy(ref_y.astype(np.int64)) if condition else None,
                   y_image=torch.from_numpy(ref_images.astype(np.int64)) if condition else None,
                   use_image_num=NUM_IMAGES).numpy()
    kwargs = {}
    if condition:
        kwargs = dict(y=ms.Tensor(y), force_drop_ids=ms.Tensor(drop), image_labels=ms.Tensor(image_labels),
                      image_drop_ids=ms.Tensor(image_drop))
    got = net(ms.Tensor(x), ms.Tensor(t), **kwargs).asnumpy()
    assert got.shape == (2, TINY["num_frames"] + NUM_IMAGES, 8, 8, 8)
    assert 0.5 < np.abs(want).max() < 10, "outputs should be of magnitude ~1-4 for a meaningful tolerance"
    err = np.abs(got - want).max()
    print(f"[{mode} {condition}] joint n={NUM_IMAGES} forward max abs err {err:.2e}")
    assert err <= TOL
    if condition:  # the image labels matter: other labels, other image outputs (video frames unchanged)
        other = net(ms.Tensor(x), ms.Tensor(t), y=ms.Tensor(y), force_drop_ids=ms.Tensor(drop),
                    image_labels=ms.Tensor(image_labels[:, ::-1].copy()), image_drop_ids=ms.Tensor(image_drop))
        changed = np.abs(other.asnumpy() - got).max(axis=(2, 3, 4))  # (B, F+n)
        assert changed[0, TINY["num_frames"]:].min() > 1e-3 and changed[1].max() == 0  # sample 1's images: null


def test_images_do_not_touch_the_video_frames(tmp_path):
    """The video frames' outputs with n images equal the plain (n = 0) forward: images never meet the video in
    attention; each image's output is that of the image alone as a one-frame batch row through spatial blocks."""
    ref, dst = convert_random_model(tmp_path, "class", seed=5)
    net = load_ms(dst, "class")
    x, t, y, image_labels = joint_inputs(seed=2)
    frames = TINY["num_frames"]
    joint = net(ms.Tensor(x), ms.Tensor(t), ms.Tensor(y), image_labels=ms.Tensor(image_labels)).asnumpy()
    plain = net(ms.Tensor(x[:, :frames].copy()), ms.Tensor(t), ms.Tensor(y)).asnumpy()
    assert np.abs(joint[:, :frames] - plain).max() <= 1e-5
    with torch.no_grad():  # n = 0 is the plain official Latte
        want = ref(torch.from_numpy(x[:, :frames].copy()), torch.from_numpy(t.astype(np.int64)),
                   torch.from_numpy(y.astype(np.int64))).numpy()
    assert np.abs(plain - want).max() <= TOL


def test_too_few_frames_is_refused(tmp_path):
    _, dst = convert_random_model(tmp_path, None)
    net = load_ms(dst, None)
    x = np.zeros((1, TINY["num_frames"] - 1, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="num_frames=4"):
        net(ms.Tensor(x), ms.Tensor(np.array([1], np.int32)))
