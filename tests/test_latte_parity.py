"""Latte cells vs an independent torch Latte in the official layout, through tools/latte_converter.py."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mindspore as ms  # noqa: E402

from latte.models.latte import Latte  # noqa: E402
from tests.torch_latte import TorchLatte, randomize_  # noqa: E402
from tools import latte_converter  # noqa: E402

TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=4, num_heads=4, mlp_ratio=4.0,
            num_frames=4)
TOL = 5e-5


def convert_random_model(tmp_path, condition, seed=0, **extra):
    ref = randomize_(TorchLatte(condition=condition, **TINY, **extra), seed).eval()
    src, dst = tmp_path / "official.pt", tmp_path / "latte.ckpt"
    torch.save({"ema": ref.state_dict()}, src)
    assert latte_converter.main(["--source", str(src), "--target", str(dst)]) == 0
    return ref, dst


def load_ms(dst, condition, **extra):
    net = Latte(condition=condition, num_classes=101, **TINY, **extra)
    not_loaded, unused = ms.load_param_into_net(net, ms.load_checkpoint(str(dst)), strict_load=True)
    assert not_loaded == [] and unused == []
    net.set_train(False)
    return net


class CFGCell(ms.nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, t, y, scale):
        return self.net.construct_with_cfg(x, t, y, scale)


def inputs(batch=2, seed=1):
    r = np.random.default_rng(seed)
    x = r.standard_normal((batch, TINY["num_frames"], 4, 8, 8)).astype(np.float32)
    t = np.array([3, 987][:batch], np.int64)
    y = np.array([7, 101][:batch], np.int64)  # a label, then the null class
    return x, t, y




@pytest.mark.parametrize("condition", [None, "class"])
def test_forward_matches_official(tmp_path, mode, condition):
    ref, dst = convert_random_model(tmp_path, condition)
    net = load_ms(dst, condition)
    x, t, y = inputs()
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y) if condition else None).numpy()
    got = net(ms.Tensor(x), ms.Tensor(t.astype(np.int32)),
              ms.Tensor(y.astype(np.int32)) if condition else None).asnumpy()
    assert got.shape == (2, 4, 8, 8, 8)
    assert 0.5 < np.abs(want).max() < 10, "outputs should be of magnitude ~1-4 for a meaningful tolerance"
    err = np.abs(got - want).max()
    print(f"[{mode} {condition}] forward max abs err {err:.2e}")
    assert err <= TOL


def test_cfg_matches_official(tmp_path, mode):
    ref, dst = convert_random_model(tmp_path, "class", seed=3)
    net = load_ms(dst, "class")
    x, t, y = inputs()
    scale = 4.5
    with torch.no_grad():
        want = ref.forward_with_cfg(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y), scale).numpy()
    got = CFGCell(net)(ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(y.astype(np.int32)),
                       ms.Tensor(scale, ms.float32)).asnumpy()
    err = np.abs(got - want).max()
    print(f"[{mode}] cfg max abs err {err:.2e}")
    assert err <= TOL
    np.testing.assert_array_equal(got[0, :, :4], got[1, :, :4])  # guided eps shared by both halves


def test_text_condition_matches_official(tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref, dst = convert_random_model(tmp_path, "text", seed=5)
    net = load_ms(dst, "text")
    x, t, _ = inputs()
    text = np.random.default_rng(2).standard_normal((2, 77, 768)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), text_embedding=torch.from_numpy(text)).numpy()
    got = net(ms.Tensor(x), ms.Tensor(t.astype(np.int32)), None, ms.Tensor(text)).asnumpy()
    assert np.abs(got - want).max() <= TOL


def test_linear_patch_embedder_equals_conv(tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _, conv_ckpt = convert_random_model(tmp_path, None, seed=7)
    lin_ckpt = tmp_path / "linear.ckpt"
    assert latte_converter.main(["--source", str(tmp_path / "official.pt"), "--target", str(lin_ckpt),
                                 "--patch_embedder", "linear"]) == 0
    conv_net = load_ms(conv_ckpt, None)
    lin_net = load_ms(lin_ckpt, None, patch_embedder="linear")
    x, t, _ = inputs()
    a = conv_net(ms.Tensor(x), ms.Tensor(t.astype(np.int32))).asnumpy()
    b = lin_net(ms.Tensor(x), ms.Tensor(t.astype(np.int32))).asnumpy()
    assert np.abs(a - b).max() <= TOL


class WeightedOutput(ms.nn.Cell):
    def __init__(self, net, weight):
        super().__init__()
        self.net, self.weight = net, weight

    def construct(self, x, t, y):
        return (self.net(x, t, y) * self.weight).sum()


@pytest.mark.parametrize("kernels", ["native", "composite", "builtin"])
def test_gradients_match_official(tmp_path, mode, kernels):
    """d(sum(out * w)) / d(every weight) equals torch's autograd of the official model (backward kernels)."""
    ref, dst = convert_random_model(tmp_path, "class", seed=11)
    net = load_ms(dst, "class", kernels=kernels)
    x, t, y = inputs()
    weight = np.random.default_rng(4).standard_normal((2, 4, 8, 8, 8)).astype(np.float32)
    out = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y))
    (out * torch.from_numpy(weight)).sum().backward()
    want = {name: p.grad.numpy() for name, p in ref.named_parameters() if p.requires_grad}
    params = net.trainable_params()
    names = [p.name for p in params]  # before wrapping: the wrapper prefixes them
    grads = ms.grad(WeightedOutput(net, ms.Tensor(weight)), grad_position=None, weights=params)(
        ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(y.astype(np.int32)))
    got = {name: g.asnumpy() for name, g in zip(names, grads)}
    got = {name.replace("y_embedder.embedding_table", "y_embedder.embedding_table.weight"): g
           for name, g in got.items()}
    assert sorted(got) == sorted(want)
    for name, g in got.items():
        assert g.shape == want[name].shape, name
        scale = np.abs(want[name]).max()
        assert scale > 0, name  # every weight receives a gradient: nothing is compared vacuously
        err = np.abs(g - want[name]).max() / scale
        assert err <= 1e-4, f"{name}: relative gradient error {err:.2e}"
