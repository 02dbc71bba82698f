"""tools/vae_converter.py on every source format users have, proven against diffusers' AutoencoderKL.

The formats are made here from one randomised tiny diffusers model: its own save_pretrained folder, lone
files, legacy attention names, and the CompVis/LDM layout (renamed here independently of the converter and
cross-checked with diffusers' own LDM loader), saved with torch.save / safetensors like users' files.
"""
import json
import os
import re
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from latte.checkpoint_io import meta_path
from latte.convert.io import cli_main
from latte.convert.vae_keys import LAYOUT_DIFFUSERS, LAYOUT_DIFFUSERS_LEGACY, LAYOUT_LDM
from latte.models.vae import AutoencoderKL
from latte.models.vae import load_vae
from tests.test_vae import (DECODE_TOL, MOMENTS_TOL, TINY, max_err, random_images, randomized_torch_vae,
                             torch_reference, torch_state)
from tools.vae_converter import main as convert_main

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

TINY_GROUPS = ["--norm-num-groups", str(TINY["norm_num_groups"])]  # shapes do not reveal GroupNorm groups
LEVELS = len(TINY["block_out_channels"])
LEGACY_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
LDM_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
LDM_EXTRAS = {  # training leftovers of an LDM autoencoder checkpoint: must be ignored
    "loss.logvar": np.zeros(()), "loss.discriminator.main.0.weight": np.ones((4, 3, 4, 4)),
    "model_ema.decay": np.array(0.9999), "model_ema.num_updates": np.array(840000),
}
SD_EXTRAS = {  # the rest of a whole Stable Diffusion checkpoint around first_stage_model.
    "model.diffusion_model.input_blocks.0.0.weight": np.ones((8, 4, 3, 3)),
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": np.ones(8),
}


# ---------------------------------------------------------------------------------------------------------
# Making users' files from the diffusers model
# ---------------------------------------------------------------------------------------------------------

def legacy_names(state):
    out = {}
    for name, value in state.items():
        for new, old in LEGACY_ATTENTION.items():
            name = name.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        out[name] = value
    return out


def ldm_name(name):
    name = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
    for new, old in LDM_ATTENTION.items():
        name = name.replace(f"mid_block.attentions.0.{new}.", f"mid.attn_1.{old}.")
    name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", name)
    name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", name)
    name = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{LEVELS - 1 - int(m[1])}.block.", name)
    name = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                  lambda m: f"decoder.up.{LEVELS - 1 - int(m[1])}.upsample.", name)
    return name.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")


def ldm_state(state):
    """diffusers names -> LDM names; attention projections become 1x1 convs."""
    out = {}
    for name, value in state.items():
        new = ldm_name(name)
        if re.search(r"attn_1\.(q|k|v|proj_out)\.weight$", new):
            value = value[:, :, None, None]  # (C, C) linear -> (C, C, 1, 1) conv
        out[new] = value
    return out


def as_torch(state):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def make_source(kind, folder, torch_vae):
    """Writes one kind of user file under `folder`; returns (converter args, expected layout)."""
    os.makedirs(folder, exist_ok=True)
    state = torch_state(torch_vae)
    if kind == "diffusers-folder-safetensors":
        torch_vae.save_pretrained(folder, safe_serialization=True)
        return ["--source", folder], LAYOUT_DIFFUSERS
    if kind == "diffusers-folder-bin":
        torch_vae.save_pretrained(folder, safe_serialization=False)
        return ["--source", folder], LAYOUT_DIFFUSERS
    if kind == "lone-safetensors-with-config":
        path = os.path.join(folder, "vae.safetensors")
        safetensors_torch.save_file(as_torch(state), path)
        torch_vae.save_config(os.path.join(folder, "architecture"))
        return ["--source", path, "--config", os.path.join(folder, "architecture", "config.json")], LAYOUT_DIFFUSERS
    if kind == "lone-safetensors":
        path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
        safetensors_torch.save_file(as_torch(state), path)
        return ["--source", path] + TINY_GROUPS, LAYOUT_DIFFUSERS
    if kind == "legacy-attention-bin":
        path = os.path.join(folder, "vae.bin")
        torch.save(as_torch(legacy_names(state)), path)
        return ["--source", path] + TINY_GROUPS, LAYOUT_DIFFUSERS_LEGACY
    if kind == "legacy-attention-folder":
        torch_vae.save_config(folder)
        safetensors_torch.save_file(as_torch(legacy_names(state)),
                                    os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        return ["--source", folder], LAYOUT_DIFFUSERS_LEGACY
    if kind == "ldm-ckpt":
        path = os.path.join(folder, "vae-ft-mse-840000-ema-pruned.ckpt")
        torch.save({"state_dict": as_torch({**ldm_state(state), **LDM_EXTRAS}), "global_step": 840000}, path)
        return ["--source", path] + TINY_GROUPS, LAYOUT_LDM
    if kind == "ldm-inside-sd-checkpoint":
        path = os.path.join(folder, "sd-v1-5.ckpt")
        wrapped = {f"first_stage_model.{k}": v for k, v in {**ldm_state(state), **LDM_EXTRAS}.items()}
        torch.save({"state_dict": as_torch({**wrapped, **SD_EXTRAS})}, path)
        return ["--source", path] + TINY_GROUPS, LAYOUT_LDM
    raise ValueError(kind)


SOURCE_KINDS = ["diffusers-folder-safetensors", "diffusers-folder-bin", "lone-safetensors",
                "lone-safetensors-with-config", "legacy-attention-bin", "legacy-attention-folder", "ldm-ckpt",
                "ldm-inside-sd-checkpoint"]


@pytest.fixture(scope="module")
def reference():
    torch_vae = randomized_torch_vae(seed=3, **TINY)
    images = random_images()
    return torch_vae, images, torch_reference(torch_vae, images)


def convert(tmp_path, kind, torch_vae, *extra):
    args, layout = make_source(kind, str(tmp_path / "source"), torch_vae)
    target = str(tmp_path / "out" / "vae.ckpt")
    assert convert_main(args + ["--target", target, *extra]) == 0
    return target, layout


def read_meta(target):
    with open(meta_path(target)) as f:
        return json.load(f)


def strict_load(target, config):
    """The brief's check: load_param_into_net(strict_load=True) with both returned lists empty."""
    vae = AutoencoderKL(**config)
    not_loaded, unused = ms.load_param_into_net(vae, ms.load_checkpoint(target), strict_load=True)
    assert not_loaded == [] and unused == []
    return vae


def assert_matches_diffusers(vae, images, expected):
    ref_mean, ref_logvar, ref_decoded = expected
    mean, logvar = vae.encode(ms.Tensor(images))
    assert max_err(mean.asnumpy(), ref_mean) < MOMENTS_TOL
    assert max_err(logvar.asnumpy(), ref_logvar) < MOMENTS_TOL
    assert max_err(vae.decode(ms.Tensor(ref_mean)).asnumpy(), ref_decoded) < DECODE_TOL


# ---------------------------------------------------------------------------------------------------------
# Every format converts to a strictly loadable, diffusers-exact VAE
# ---------------------------------------------------------------------------------------------------------

def test_ldm_layout_made_here_is_what_diffusers_reads(reference):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    torch_vae = reference[0]
    state = {k: torch.from_numpy(v) for k, v in torch_state(torch_vae).items()}
    back = convert_ldm_vae_checkpoint(as_torch(ldm_state(torch_state(torch_vae))), dict(torch_vae.config))
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_every_format_converts_to_diffusers_parity(tmp_path, reference, kind, capsys):
    torch_vae, images, expected = reference
    target, layout = convert(tmp_path, kind, torch_vae)
    log = capsys.readouterr().out
    assert f"format: {layout};" in log and "all 124 parameters filled" in log
    if kind.startswith("ldm"):
        assert "ignored" in log and "loss.*" in log and "model_ema.*" in log
    config = read_meta(target)["config"]
    assert config["block_out_channels"] == list(TINY["block_out_channels"]) and config["norm_num_groups"] == 4
    assert_matches_diffusers(strict_load(target, config), images, expected)


@pytest.mark.parametrize("kind", ["diffusers-folder-safetensors", "ldm-ckpt"])
def test_converted_vae_matches_diffusers_in_graph_mode(tmp_path, reference, kind):
    torch_vae, images, expected = reference
    target, _ = convert(tmp_path, kind, torch_vae)
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        assert_matches_diffusers(load_vae(target), images, expected)
    finally:
        ms.set_context(mode=previous)


def test_load_vae_uses_the_record_and_overrides(tmp_path, reference):
    torch_vae, images, expected = reference
    target, _ = convert(tmp_path, "ldm-ckpt", torch_vae, "--dtype", "float16")
    assert read_meta(target)["dtype"] == "float16"
    ref_mean = expected[0]
    fp16_weights = load_vae(target)  # float16 storage is widened on load
    assert max_err(fp16_weights.encode(ms.Tensor(images))[0].asnumpy(), ref_mean) < 1e-2 * np.abs(ref_mean).max()
    assert load_vae(target, dtype=ms.float16).compute_dtype == ms.float16
    os.remove(meta_path(target))  # without the record: shapes give everything but the groups
    assert load_vae(target, norm_num_groups=4).config.block_out_channels == TINY["block_out_channels"]


def test_cli_script_runs_from_the_repository_root(tmp_path, reference, repo_root):
    args, _ = make_source("diffusers-folder-safetensors", str(tmp_path / "source"), reference[0])
    target = str(tmp_path / "vae.ckpt")
    run = subprocess.run([sys.executable, "tools/vae_converter.py", *args, "--target", target],
                         cwd=repo_root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "[5/5] wrote" in run.stdout and os.path.isfile(target) and os.path.isfile(meta_path(target))
    missing = subprocess.run([sys.executable, "tools/vae_converter.py", "--source", str(tmp_path / "nope"),
                              "--target", target], cwd=repo_root, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: no such file or folder"]


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2
# ---------------------------------------------------------------------------------------------------------

def bad_sources(folder, torch_vae):
    """name -> (converter args, expected message fragment)."""
    os.makedirs(folder, exist_ok=True)
    state = torch_state(torch_vae)
    join = lambda name: os.path.join(folder, name)  # noqa: E731
    latte = {"x_embedder.proj.weight": np.ones((8, 4, 2, 2)), "blocks.0.attn.qkv.weight": np.ones((24, 8))}
    torch.save({"ema": as_torch(latte)}, join("latte.pt"))
    safetensors_torch.save_file(as_torch(state), join("full.safetensors"))
    torch.save(as_torch(state), join("full.bin"))
    for name in ("full.safetensors", "full.bin"):
        with open(join(name), "rb") as f:
            data = f.read()
        with open(join("truncated-" + name), "wb") as f:
            f.write(data[: len(data) // 2])
    missing = dict(state)
    del missing["decoder.up_blocks.1.resnets.0.conv_shortcut.weight"]
    torch.save(as_torch(missing), join("missing.bin"))
    torch.save(as_torch({**state, "encoder.extra.weight": np.ones(3)}), join("extra.bin"))
    os.makedirs(join("empty-folder"))
    os.makedirs(join("wrong-config"))
    torch_vae.save_config(join("wrong-config"))
    safetensors_torch.save_file(as_torch(randomized_torch_vae(block_out_channels=(8, 8), norm_num_groups=4,
                                                              layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
                                                              up_block_types=("UpDecoderBlock2D",) * 2).state_dict()),
                                join("wrong-config/diffusion_pytorch_model.safetensors"))
    groups = TINY_GROUPS
    return {
        "missing-file": (["--source", join("nope.ckpt")], "no such file or folder"),
        "latte-checkpoint": (["--source", join("latte.pt")], "Latte transformer checkpoint"),
        "truncated-safetensors": (["--source", join("truncated-full.safetensors")] + groups, "not a readable .safetensors"),
        "truncated-bin": (["--source", join("truncated-full.bin")] + groups, "damaged or truncated torch checkpoint"),
        "missing-tensor": (["--source", join("missing.bin")] + groups,
                           "parameters not filled: decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
        "unknown-tensor": (["--source", join("extra.bin")] + groups, "source keys not used: encoder.extra.weight"),
        "folder-without-weights": (["--source", join("empty-folder")], "folder has none of"),
        "config-json-alone": (["--source", join("wrong-config/config.json")], "config.json holds no weights"),
        "config-not-matching-weights": (["--source", join("wrong-config")], "shape mismatches"),
        "bad-groups": (["--source", join("full.bin"), "--norm-num-groups", "3"], "norm_num_groups=3 does not divide"),
        "target-not-ckpt": (["--source", join("full.bin"), "--target", join("out.pt")], "must end in .ckpt"),
    }


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, reference, capsys):
    cases = bad_sources(str(tmp_path), reference[0])
    for name, (args, fragment) in cases.items():
        if "--target" not in args:
            args = args + ["--target", str(tmp_path / "out.ckpt")]
        assert cli_main(convert_main, args) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, (name, err)
    assert not os.path.exists(tmp_path / "out.ckpt")
