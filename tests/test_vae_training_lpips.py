"""LPIPS in MindSpore against a torch LPIPS written here from the paper's recipe, through tools/lpips_converter.py:
same random VGG16 and heads, RGB and grayscale inputs, distances and input gradients; converter errors."""
import json

import mindspore as ms
import numpy as np
import pytest
from mindspore import ops

from latte.vae_training.lpips import load_lpips
from tools import lpips_converter

torch = pytest.importorskip("torch")

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
SLICE_ENDS = (4, 9, 16, 23, 30)  # torchvision features[:4], [4:9], [9:16], [16:23], [23:30]: up to relu1_2 ... relu5_3
CHANNELS = (64, 128, 256, 512, 512)
SHAPE = (2, 3, 32, 48)  # (N, C, H, W): not square, four 2x2 pools leave 2x3
PARITY_TOL = 2e-5  # relative to the distance


class TorchLPIPS(torch.nn.Module):
    """The reference: torchvision's VGG16 `features` layout, the scaling layer, unit-normalised features, squared
    differences, 1x1 heads (after dropout, as lpips names them lin{k}.model.1), spatial mean, sum over layers."""

    def __init__(self):
        super().__init__()
        layers, width = [], 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(torch.nn.MaxPool2d(2, 2))
            else:
                layers += [torch.nn.Conv2d(width, item, 3, padding=1), torch.nn.ReLU()]
                width = item
        self.features = torch.nn.Sequential(*layers)
        self.lins = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Conv2d(c, 1, 1, bias=False))
                                        for c in CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def taps(self, x):
        x = (x.expand(-1, 3, -1, -1) - self.shift) / self.scale
        out, start = [], 0
        for end in SLICE_ENDS:
            x = self.features[start:end](x)
            out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
            start = end
        return out

    def forward(self, x, y):
        return sum(lin((a - b) ** 2).mean(dim=(2, 3)).squeeze(1)
                   for lin, a, b in zip(self.lins, self.taps(x), self.taps(y)))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(torch reference, converted MindSpore LPIPS, folder with the two source files)."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    ref = TorchLPIPS().eval()
    with torch.no_grad():
        for lin in ref.lins:
            lin[1].weight.uniform_(0.0, 0.5)  # released heads are non-negative
    vgg = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    vgg["classifier.6.bias"] = torch.zeros(3)  # a stand-in for torchvision's classifier head (unused by LPIPS)
    torch.save(vgg, folder / "vgg16.pth")
    torch.save({f"lin{k}.model.1.weight": lin[1].weight.detach().clone() for k, lin in enumerate(ref.lins)},
               folder / "vgg.pth")
    target = folder / "lpips_vgg.ckpt"
    assert lpips_converter.main(["--vgg", str(folder / "vgg16.pth"), "--lin", str(folder / "vgg.pth"),
                                 "--target", str(target)]) == 0
    return ref, load_lpips(str(target)), folder


@pytest.mark.parametrize("channels", [3, 1])
def test_distance_and_gradient_parity(converted, channels):
    ref, net, _ = converted
    rng = np.random.default_rng(channels)
    shape = (SHAPE[0], channels) + SHAPE[2:]
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    y = np.clip(x + 0.3 * rng.standard_normal(shape).astype(np.float32), -1, 1)
    tx = torch.from_numpy(x).requires_grad_(True)
    want = ref(tx, torch.from_numpy(y))
    want.sum().backward()

    def distance_sum(a, b):
        return ops.sum(net(a, b))

    got, grad = ops.value_and_grad(distance_sum, 0)(ms.Tensor(x), ms.Tensor(y))
    got_each = net(ms.Tensor(x), ms.Tensor(y)).asnumpy()
    np.testing.assert_allclose(got_each, want.detach().numpy(), rtol=PARITY_TOL)
    assert abs(float(got.asnumpy()) - float(want.sum().detach())) <= PARITY_TOL * float(want.sum().detach())
    g_ref = tx.grad.numpy()
    np.testing.assert_allclose(grad.asnumpy(), g_ref, atol=1e-4 * np.abs(g_ref).max())
    assert float(net(ms.Tensor(x), ms.Tensor(x)).asnumpy().max()) < 1e-6  # identical images: distance 0


def test_converter_records_and_reports(converted, capsys):
    _, _, folder = converted
    meta = json.loads((folder / "lpips_vgg.ckpt.json").read_text())
    assert meta["model"] == "LPIPS-VGG16" and meta["channels"] == list(CHANNELS)
    lpips_converter.main(["--vgg", str(folder / "vgg16.pth"), "--lin", str(folder / "vgg.pth"),
                          "--target", str(folder / "again.ckpt")])
    out = capsys.readouterr().out
    assert "unused VGG classifier head: classifier.6.bias" in out and "[4/4]" in out


def _rewrite(src, dst, change):
    from latte.convert.io import read_state_dict

    state = {k: torch.from_numpy(np.array(v)) for k, v in read_state_dict(str(src)).items()}
    change(state)
    torch.save(state, dst)
    return str(dst)


@pytest.mark.parametrize("change, needle", [
    (lambda s: s.pop("features.28.bias"), "parameters not filled: convs.12.bias"),
    (lambda s: s.update({"features.0.weight": torch.zeros(64, 3, 5, 5)}), "convs.0.weight (64, 3, 5, 5)"),
    (lambda s: s.update({"features.31.weight": torch.zeros(1)}), "source keys not used: --vgg features.31.weight"),
])
def test_converter_errors_are_one_line_and_exit_2(converted, tmp_path, capsys, change, needle):
    _, _, folder = converted
    bad = _rewrite(folder / "vgg16.pth", tmp_path / "bad.pth", change)
    code = lpips_converter.cli_main(lpips_converter.main, ["--vgg", bad, "--lin", str(folder / "vgg.pth"),
                                                           "--target", str(tmp_path / "out.ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.ckpt").exists()


def test_converter_wants_the_heads_file_and_a_ckpt_target(converted, tmp_path, capsys):
    _, _, folder = converted
    args = ["--vgg", str(folder / "vgg16.pth")]
    assert lpips_converter.cli_main(lpips_converter.main, args + ["--lin", str(folder / "vgg16.pth"), "--target",
                                                                  str(tmp_path / "o.ckpt")]) == 2
    assert "--lin features.0.weight" in capsys.readouterr().err  # the VGG file given as heads
    assert lpips_converter.cli_main(lpips_converter.main, args + ["--lin", str(tmp_path / "none.pth"), "--target",
                                                                  str(tmp_path / "o.ckpt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert lpips_converter.cli_main(lpips_converter.main, args + ["--lin", str(folder / "vgg.pth"), "--target",
                                                                  str(tmp_path / "o.pt")]) == 2
