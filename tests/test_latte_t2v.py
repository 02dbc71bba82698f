"""LatteT2V (Latte-1's transformer) against diffusers' LatteTransformer3DModel, through tools/latte_converter.py
and load_latte; the converter's LatteT2V sources and refusals; load_latte on a class-conditional checkpoint."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import mindspore as ms  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from latte.checkpoint_io import read_meta  # noqa: E402
from latte.convert.io import cli_main  # noqa: E402
from latte.models import load_latte  # noqa: E402
from latte.models.latte import Latte  # noqa: E402
from latte.models.latte_t2v import LatteT2V  # noqa: E402
from latte.models.registry import t2v_spec  # noqa: E402
from latte.models.t2v_config import T2VConfig  # noqa: E402
from tools import latte_converter  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = t2v_spec("Latte-1-T")  # Latte-1's layout: ada_norm_single, captions, cross-attention, learned sigma
FRAMES = TINY["video_length"]  # diffusers adds its temporal table to exactly video_length frames
LATENT = TINY["sample_size"]
TOL = 5e-5
WEIGHTS = "diffusion_pytorch_model.safetensors"


def random_reference(seed=0, **changes):
    """The diffusers model with every parameter re-drawn (none left at a zero or identity initialisation)."""
    model = diffusers.LatteTransformer3DModel(**dict(TINY, **changes)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
    return model


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    """save_pretrained of the random reference (config.json + safetensors), converted in-process."""
    root = tmp_path_factory.mktemp("t2v")
    ref = random_reference()
    ref.save_pretrained(root / "transformer")
    assert latte_converter.main(["--source", str(root / "transformer"), "--target", str(root / "latte1.ckpt")]) == 0
    return ref, root


def inputs(frames, seed=1):
    r = np.random.default_rng(seed)
    x = r.standard_normal((2, frames, TINY["in_channels"], LATENT, LATENT)).astype(np.float32)  # (B, F, C, H, W)
    t = np.array([17, 931], np.int64)
    text = r.standard_normal((2, 7, TINY["caption_channels"])).astype(np.float32)  # (B, L, caption)
    return x, t, text


def reference_output(ref, x, t, text, temporal=True):
    with torch.no_grad():
        out = ref(torch.from_numpy(x).permute(0, 2, 1, 3, 4),  # (B, F, C, H, W) -> diffusers' (B, C, F, H, W)
                  torch.from_numpy(t), torch.from_numpy(text), enable_temporal_attentions=temporal).sample
    return out.permute(0, 2, 1, 3, 4).numpy()  # (B, C', F, H, W) -> (B, F, C', H, W)


CASES = {"text, 4 frames": (FRAMES, True), "no temporal attention": (FRAMES, False), "1 frame (image)": (1, True)}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_diffusers(pipeline_folder, mode, case):
    ref, root = pipeline_folder
    frames, temporal = CASES[case]
    x, t, text = inputs(frames)
    want = reference_output(ref, x, t, text, temporal)
    net = load_latte(str(root / "latte1.ckpt"))
    assert isinstance(net, LatteT2V)
    got = net(ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(text),
              enable_temporal_attentions=temporal).asnumpy()
    assert got.shape == (2, frames, 2 * TINY["in_channels"], LATENT, LATENT)  # learned sigma: 2C channels
    assert 0.5 < np.abs(want).max() < 10, "outputs should be of magnitude ~1-4 for a meaningful tolerance"
    err = np.abs(got - want).max()
    print(f"[{mode}] {case}: max abs err {err:.2e}")
    assert err <= TOL


PADDED_MASK = np.array([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0]], np.int32)  # (B, L): 4 and 1 padding tokens


def official_bias(mask, frames):
    """The official LatteT2V's conversion of a (B, L) mask: (1 - mask) * -10000 as (B*F, 1, L), frame-repeated.
    diffusers' forward takes that bias as it is (its (B, L) form only works for one frame)."""
    bias = (1.0 - torch.from_numpy(mask).float()) * -10000.0  # (B, L)
    return bias[:, None].repeat_interleave(frames, dim=0)  # (B, L) -> (B*F, 1, L)


MASK_CASES = {"4 frames, the official bias": (FRAMES, official_bias),
              "1 frame, diffusers' own bool mask": (1, lambda mask, frames: torch.from_numpy(mask).bool())}


@pytest.mark.parametrize("case", list(MASK_CASES))
def test_encoder_attention_mask_matches_diffusers(pipeline_folder, mode, case):
    """A (B, L) 1/0 mask with padding: the spatial cross-attention ignores the padded caption tokens."""
    ref, root = pipeline_folder
    frames, reference_mask = MASK_CASES[case]
    x, t, text = inputs(frames, seed=7)
    with torch.no_grad():
        want = ref(torch.from_numpy(x).permute(0, 2, 1, 3, 4), torch.from_numpy(t), torch.from_numpy(text),
                   encoder_attention_mask=reference_mask(PADDED_MASK, frames)).sample.permute(0, 2, 1, 3, 4).numpy()
    net = load_latte(str(root / "latte1.ckpt"))
    t32, mask = ms.Tensor(t.astype(np.int32)), ms.Tensor(PADDED_MASK)
    got = net(ms.Tensor(x), t32, ms.Tensor(text), mask).asnumpy()
    err = np.abs(got - want).max()
    print(f"[{mode}] {case}: max abs err {err:.2e}")
    assert err <= TOL
    unmasked = net(ms.Tensor(x), t32, ms.Tensor(text)).asnumpy()
    assert np.abs(unmasked - got).max() > 1e-2  # the padding tokens do change an unmasked output
    other = text.copy()
    other[PADDED_MASK == 0] = 5.0  # what the padded positions hold no longer matters
    np.testing.assert_allclose(net(ms.Tensor(x), t32, ms.Tensor(other), mask).asnumpy(), got, rtol=0, atol=1e-6)


def test_fewer_frames_use_the_first_rows_of_the_temporal_table(pipeline_folder):
    """2 frames with video_length 4 equals the official LatteT2V built with video_length=2 (sample_t2x.py)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref, root = pipeline_folder
    short = random_reference(video_length=2)
    short.load_state_dict(ref.state_dict())
    x, t, text = inputs(2, seed=4)
    got = load_latte(str(root / "latte1.ckpt"))(ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(text))
    assert np.abs(got.asnumpy() - reference_output(short, x, t, text)).max() <= TOL


def test_other_latent_sizes_get_scaled_positions(pipeline_folder):
    """A 12x8 latent on a model of sample_size 8: positions scaled to the base grid, as diffusers' PatchEmbed."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref, root = pipeline_folder
    r = np.random.default_rng(6)
    x = r.standard_normal((2, FRAMES, TINY["in_channels"], 12, 8)).astype(np.float32)
    _, t, text = inputs(FRAMES)
    net = load_latte(str(root / "latte1.ckpt"), latent_size=(12, 8))
    got = net(ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(text)).asnumpy()
    assert np.abs(got - reference_output(ref, x, t, text)).max() <= TOL


def test_fp16_stays_close(pipeline_folder):
    """AMP O2 fp16 (norms, softmax and the timestep sinusoid in fp32): within 5e-3 of the fp32 reference, as
    diffusers' own fp16 (1.3e-3 here); an fp16 sinusoid of t = 931 was 3e-2 off."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref, root = pipeline_folder
    x, t, text = inputs(FRAMES, seed=5)
    want = reference_output(ref, x, t, text)
    got = load_latte(str(root / "latte1.ckpt"), dtype="fp16")(
        ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(text)).asnumpy()
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"fp16 relative error {err:.2e}")
    assert err < 5e-3


def test_record_and_weights_are_diffusers_state_dict(pipeline_folder):
    ref, root = pipeline_folder
    meta = read_meta(str(root / "latte1.ckpt"))
    assert meta["kind"] == "latte_t2v" and meta["model_name"] == "Latte-1-T"
    assert T2VConfig.from_dict(meta["config"]) == T2VConfig.from_dict(dict(ref.config))
    params = {k: v.asnumpy() for k, v in ms.load_checkpoint(str(root / "latte1.ckpt")).items()}
    sd = ref.state_dict()
    assert set(params) == set(sd)
    for key, value in sd.items():
        np.testing.assert_array_equal(params[key], value.numpy(), err_msg=key)


def test_cli_converts_a_sharded_folder(pipeline_folder, tmp_path):
    ref, root = pipeline_folder
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / f"{WEIGHTS}.index.json").is_file() and not (tmp_path / "sharded" / WEIGHTS).exists()
    proc = subprocess.run([sys.executable, "tools/latte_converter.py", "--source", str(tmp_path / "sharded"),
                           "--target", str(tmp_path / "sharded.ckpt")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "LatteT2V Latte-1-T" in proc.stdout
    a, b = ms.load_checkpoint(str(tmp_path / "sharded.ckpt")), ms.load_checkpoint(str(root / "latte1.ckpt"))
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key].asnumpy(), b[key].asnumpy(), err_msg=key)
    assert read_meta(str(tmp_path / "sharded.ckpt"))["config"] == read_meta(str(root / "latte1.ckpt"))["config"]


def test_single_file_architecture_from_shapes(pipeline_folder, tmp_path):
    _, root = pipeline_folder
    target = tmp_path / "file.ckpt"
    assert latte_converter.main(["--source", str(root / "transformer" / WEIGHTS), "--target", str(target)]) == 0
    meta = read_meta(str(target))
    assert meta["config"] == read_meta(str(root / "latte1.ckpt"))["config"]
    assert meta["architecture_from"].startswith("weight shapes")


def test_unregistered_shapes_need_num_heads(pipeline_folder, tmp_path, capsys):
    """One layer of the tiny model (no registered variant): --num_heads is required, then it converts."""
    _, root = pipeline_folder
    state = {k: v for k, v in load_file(str(root / "transformer" / WEIGHTS)).items()
             if not k.startswith(("transformer_blocks.1.", "temporal_transformer_blocks.1."))}
    save_file(state, str(tmp_path / "one_layer.safetensors"))
    argv = ["--source", str(tmp_path / "one_layer.safetensors"), "--target", str(tmp_path / "one.ckpt")]
    assert cli_main(latte_converter.main, argv) == 2
    assert "pass --num_heads" in capsys.readouterr().err
    assert latte_converter.main(argv + ["--num_heads", "2"]) == 0
    config = read_meta(str(tmp_path / "one.ckpt"))["config"]
    assert config["num_layers"] == 1 and config["attention_head_dim"] == TINY["attention_head_dim"]


def test_official_torch_file_with_fixed_tables(pipeline_folder, tmp_path, capsys):
    """A torch {"ema": sd} file of the official LatteT2V that carries the sin-cos buffers: they are checked
    against the config's tables and dropped; a table of another configuration is refused."""
    ref, root = pipeline_folder
    sd = dict(ref.state_dict())
    sd["pos_embed.pos_embed"] = ref.pos_embed.pos_embed.clone()
    sd["temp_pos_embed"] = ref.temp_pos_embed.clone()
    torch.save({"ema": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "t2v.pt")
    assert latte_converter.main(["--source", str(tmp_path / "t2v.pt"), "--target", str(tmp_path / "pt.ckpt")]) == 0
    assert set(ms.load_checkpoint(str(tmp_path / "pt.ckpt"))) == set(ref.state_dict())
    sd["temp_pos_embed"] = sd["temp_pos_embed"][:, :2]  # a video_length-2 table
    torch.save({"ema": sd}, tmp_path / "other.pt")
    assert cli_main(latte_converter.main, ["--source", str(tmp_path / "other.pt"), "--target",
                                           str(tmp_path / "other.ckpt")]) == 2
    assert "temp_pos_embed table" in capsys.readouterr().err


def _missing_key(folder):
    state = load_file(str(folder / WEIGHTS))
    del state["transformer_blocks.1.attn2.to_v.bias"]
    save_file(state, str(folder / WEIGHTS))
    return "transformer_blocks.1.attn2.to_v.bias"


def _unknown_field(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, rope_scaling_type="linear")))
    return "rope_scaling_type"


def _other_norm(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, norm_type="ada_norm_zero")))
    return "norm_type='ada_norm_zero'"


@pytest.mark.parametrize("damage", [_missing_key, _unknown_field, _other_norm])
def test_converter_refuses_in_one_line_naming_the_problem(pipeline_folder, tmp_path, capsys, damage):
    _, root = pipeline_folder
    folder = tmp_path / "transformer"
    shutil.copytree(root / "transformer", folder)
    needle = damage(folder)
    assert cli_main(latte_converter.main, ["--source", str(folder), "--target", str(tmp_path / "x.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.ckpt").exists()


def test_latte1_config_builds_diffusers_parameter_shapes():
    """The registered Latte-1 builds exactly diffusers' parameters (names and shapes; no weights allocated)."""
    from mindspore.nn.utils import no_init_parameters

    spec = t2v_spec("Latte-1")
    with torch.device("meta"):
        ref = diffusers.LatteTransformer3DModel(**spec)
    with no_init_parameters():
        net = LatteT2V(**spec)
    assert {p.name: tuple(p.shape) for p in net.get_parameters()} == {
        k: tuple(v.shape) for k, v in ref.state_dict().items()}


def test_load_latte_builds_a_class_conditional_checkpoint(tmp_path):
    from tests.test_latte_parity import TINY as CLASS_TINY
    from tests.torch_latte import TorchLatte, randomize_

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref = randomize_(TorchLatte(condition="class", **CLASS_TINY), seed=3).eval()
    torch.save({"ema": ref.state_dict()}, tmp_path / "class.pt")
    assert latte_converter.main(["--source", str(tmp_path / "class.pt"), "--target", str(tmp_path / "c.ckpt")]) == 0
    net = load_latte(str(tmp_path / "c.ckpt"))
    assert isinstance(net, Latte) and net.condition == "class"
    r = np.random.default_rng(0)
    x = r.standard_normal((2, CLASS_TINY["num_frames"], 4, 8, 8)).astype(np.float32)
    t, y = np.array([3, 500]), np.array([7, 100])
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)).numpy()
    got = net(ms.Tensor(x), ms.Tensor(t.astype(np.int32)), ms.Tensor(y.astype(np.int32))).asnumpy()
    assert np.abs(got - want).max() <= TOL


def test_load_latte_without_a_record(pipeline_folder, tmp_path):
    """A LatteT2V .ckpt without its .json: refused naming the fix, or built from model_name."""
    from latte.checkpoint_io import CheckpointError

    _, root = pipeline_folder
    shutil.copy(root / "latte1.ckpt", tmp_path / "bare.ckpt")
    with pytest.raises(CheckpointError, match="no architecture record"):
        load_latte(str(tmp_path / "bare.ckpt"))
    assert isinstance(load_latte(str(tmp_path / "bare.ckpt"), model_name="Latte-1-T"), LatteT2V)
