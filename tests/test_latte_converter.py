"""tools/latte_converter.py: every source form, the reverse direction, and bad inputs."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mindspore as ms  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from latte.convert.io import read_state_dict  # noqa: E402
from latte.models.latte import Latte  # noqa: E402
from tests.test_latte_parity import TINY  # noqa: E402
from tests.torch_latte import TorchLatte, randomize_  # noqa: E402
from tools import latte_converter  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def official():
    """A random class-conditional official-layout state dict (torch tensors) and a second, different one."""
    sd = randomize_(TorchLatte(condition="class", **TINY), seed=11).state_dict()
    other = randomize_(TorchLatte(condition="class", **TINY), seed=12).state_dict()
    return sd, other


def convert(src, dst, *extra):
    return latte_converter.main(["--source", str(src), "--target", str(dst), *extra])


def loaded(dst):
    net = Latte(condition="class", num_classes=101, **TINY)
    assert ms.load_param_into_net(net, ms.load_checkpoint(str(dst)), strict_load=True) == ([], [])
    return {p.name: p.asnumpy() for p in net.get_parameters()}


def assert_weights(params, sd):
    for key, value in sd.items():
        name = "y_embedder.embedding_table" if key == "y_embedder.embedding_table.weight" else key
        np.testing.assert_array_equal(params[name], value.numpy(), err_msg=key)


@pytest.mark.parametrize("form", ["ema", "model_and_ema", "plain", "compiled_prefix", "safetensors"])
def test_every_source_form(tmp_path, official, form):
    sd, other = official
    src = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "ema":
        torch.save({"ema": sd}, src)
    elif form == "model_and_ema":
        torch.save({"model": other, "ema": sd}, src)  # EMA is preferred by default
    elif form == "plain":
        torch.save(sd, src)
    elif form == "compiled_prefix":
        torch.save({"ema": {f"_orig_mod.{k}": v for k, v in sd.items()}}, src)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    assert convert(src, tmp_path / "out.ckpt") == 0
    assert_weights(loaded(tmp_path / "out.ckpt"), sd)


def test_use_model_entry(tmp_path, official):
    sd, other = official
    torch.save({"model": other, "ema": sd}, tmp_path / "w.pt")
    assert convert(tmp_path / "w.pt", tmp_path / "out.ckpt", "--use", "model") == 0
    assert_weights(loaded(tmp_path / "out.ckpt"), other)


def test_fp16_and_bf16_sources_are_widened(tmp_path, official):
    sd, _ = official
    torch.save({"ema": {k: v.half() for k, v in sd.items()}}, tmp_path / "h.pt")
    assert convert(tmp_path / "h.pt", tmp_path / "h.ckpt") == 0
    params = loaded(tmp_path / "h.ckpt")
    np.testing.assert_array_equal(params["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"].half().float())
    torch.save({"ema": {k: v.bfloat16() for k, v in sd.items()}}, tmp_path / "b.pt")
    assert convert(tmp_path / "b.pt", tmp_path / "b.ckpt") == 0
    params = loaded(tmp_path / "b.ckpt")
    np.testing.assert_array_equal(params["final_layer.linear.weight"],
                                  sd["final_layer.linear.weight"].bfloat16().float())


def test_reverse_round_trip(tmp_path, official):
    sd, _ = official
    torch.save({"ema": sd}, tmp_path / "w.pt")
    assert convert(tmp_path / "w.pt", tmp_path / "ms.ckpt") == 0
    assert convert(tmp_path / "ms.ckpt", tmp_path / "back.pt") == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert set(back) == {"ema"} and set(back["ema"]) == set(sd)
    for key, value in sd.items():
        assert torch.equal(back["ema"][key], value), key
    # the result loads into the official-layout torch model
    TorchLatte(condition="class", **TINY).load_state_dict(back["ema"], strict=True)
    # and .safetensors works without torch on the writing side
    assert convert(tmp_path / "ms.ckpt", tmp_path / "back.safetensors") == 0
    st = read_state_dict(str(tmp_path / "back.safetensors"))
    np.testing.assert_array_equal(st["pos_embed"], sd["pos_embed"].numpy())


def test_reverse_of_linear_patch_embedder(tmp_path, official):
    sd, _ = official
    torch.save({"ema": sd}, tmp_path / "w.pt")
    assert convert(tmp_path / "w.pt", tmp_path / "lin.ckpt", "--patch_embedder", "linear") == 0
    assert convert(tmp_path / "lin.ckpt", tmp_path / "back.pt") == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)["ema"]
    assert torch.equal(back["x_embedder.proj.weight"], sd["x_embedder.proj.weight"])


def run_cli(*args):
    """The converter as a user runs it: from the repo root, as a script."""
    proc = subprocess.run([sys.executable, "tools/latte_converter.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)
    return proc.returncode, proc.stderr.strip()


def test_cli_runs_as_a_script_from_another_directory(tmp_path, official):
    sd, _ = official
    torch.save({"ema": sd}, tmp_path / "w.pt")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "latte_converter.py"), "--source", "w.pt",
                           "--target", "w.ckpt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "detected Latte-T/2" in proc.stdout


def _vae_like(path):
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3),
                               "decoder.conv_in.weight": torch.zeros(8, 4, 3, 3)}}, path)


def _dit_like(path, sd):
    torch.save({k: v for k, v in sd.items() if k != "temp_embed"}, path)


def _truncated(path, sd):
    torch.save({"ema": sd}, path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("random_bytes", "not a torch"),
    ("vae", "VAE checkpoint"),
    ("dit", "image model"),
    ("truncated", "damaged"),
    ("other_model", "not a Latte checkpoint"),
    ("bad_target", "use .ckpt"),
])
def test_bad_inputs_give_one_line_and_exit_2(tmp_path, official, case, needle):
    sd, _ = official
    src, dst = tmp_path / "in.pt", tmp_path / "out.ckpt"
    if case == "random_bytes":
        src.write_bytes(os.urandom(4096))
    elif case == "vae":
        _vae_like(src)
    elif case == "dit":
        _dit_like(src, sd)
    elif case == "truncated":
        _truncated(src, sd)
    elif case == "other_model":
        torch.save({"fc.weight": torch.zeros(2, 2)}, src)
    elif case == "bad_target":
        torch.save({"ema": sd}, src)
        dst = tmp_path / "out.txt"
    code, err = run_cli("--source", src, "--target", dst)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert not os.path.exists(tmp_path / "out.ckpt")
