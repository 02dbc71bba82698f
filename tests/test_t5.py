"""The T5 text encoder: tools/t5_converter.py on transformers' save formats, load_t5 against transformers'
T5EncoderModel, and the sentencepiece tokenizer against transformers' T5Tokenizer.

The reference is a tiny transformers T5 (T5 v1.1 layout: gated-GELU, no biases) with every weight re-drawn,
saved as users get it: save_pretrained single-file and sharded safetensors, pytorch_model.bin (what
transformers 4 wrote; transformers 5 only writes safetensors) whole and sharded with its index, a whole
T5ForConditionalGeneration (decoder to skip), and bf16 safetensors (read without torch).
"""
import json
import os
import shutil
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from latte.checkpoint_io import CheckpointError, read_meta, save_ms_checkpoint
from latte.convert.io import cli_main
from latte.models import load_t5
from latte.models.t5 import T5EncoderModel, relative_position_bucket
from latte.models.t5_config import T5_ENCODERS, T5EncoderConfig
from latte.text.tokenizer import MAX_LENGTH, T5Tokenizer, preprocess_prompt
from tests.conftest import REPO_ROOT
from tools.t5_converter import main as convert_main

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

TOL = 2e-5  # max abs, last hidden state (values up to ~4)
WEIGHT_STD = 0.2  # re-drawn weights: N(0, 0.2^2); RMSNorm weights 1 + N(0, 0.2^2)
TINY = T5_ENCODERS["t5-tiny"]
PROMPTS = ["A cat wearing sunglasses and working as a lifeguard at a pool.",
           "  Yellow and black tropical fish dart through the sea  ",
           "an epic tornado attacking above a glowing city at night, 4k " * 12,  # longer than 120 tokens
           ""]
SPM_TEXT = """A cat wearing sunglasses and working as a lifeguard at a pool.
Yellow and black tropical fish dart through the sea.
An epic tornado attacking above a glowing city at night.
Slow pan upward of blazing oak fire in an indoor fireplace.
a cute raccoon playing guitar in a boat on the ocean, 4k, high quality!
The quick brown fox jumps over the lazy dog 12345 times."""


# ---------------------------------------------------------------------------------------------------------
# The reference model and users' files
# ---------------------------------------------------------------------------------------------------------

def hf_config(config, **overrides):
    return transformers.T5Config(**{**config.to_dict(), **overrides}, tie_word_embeddings=False)


def redraw(model, seed):
    """Every parameter re-drawn (transformers initializes RMSNorm weights to ones)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * WEIGHT_STD
                        + (1.0 if "layer_norm" in name else 0.0))
    return model.eval()


def tiny_torch_t5(feed_forward_proj="gated-gelu", seed=0):
    return redraw(transformers.T5EncoderModel(hf_config(TINY, feed_forward_proj=feed_forward_proj)), seed)


def save_bin(model, folder, shards=1):
    """pytorch_model.bin as transformers 4 saved it (tied embedding under both names), or shards + index."""
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    state = model.state_dict()
    if shards == 1:
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
        return folder
    names = list(state)
    weight_map = {}
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {n: state[n] for n in names[i::shards]}
        torch.save(part, os.path.join(folder, file))
        weight_map.update({n: file for n in part})
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return folder


@pytest.fixture(scope="module")
def torch_t5():
    return tiny_torch_t5()


@pytest.fixture(scope="module")
def sources(torch_t5, tmp_path_factory):
    """Folder name -> a transformers folder holding torch_t5's weights in one of users' formats."""
    root = tmp_path_factory.mktemp("t5_sources")
    torch_t5.save_pretrained(root / "single")
    torch_t5.save_pretrained(root / "sharded", max_shard_size="20KB")
    save_bin(torch_t5, root / "bin")
    save_bin(torch_t5, root / "bin_sharded", shards=3)
    whole = redraw(transformers.T5ForConditionalGeneration(hf_config(TINY)), seed=1)
    whole.encoder.load_state_dict(torch_t5.encoder.state_dict())
    whole.save_pretrained(root / "whole_t5")
    return root


def reference(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long())
    return out.last_hidden_state.numpy()


def padded_batch(seed=0, length=24):
    """Token ids (3, length) and a mask with padding in two rows (distances reach the logarithmic buckets)."""
    ids = np.random.default_rng(seed).integers(0, TINY.vocab_size, (3, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, length - 3:] = 0
    return ids, mask


def max_err(net, model, ids, mask):
    out = net(ms.Tensor(ids), ms.Tensor(mask))
    assert out.dtype == ms.float32 and out.shape == (*ids.shape, TINY.d_model)
    return float(np.abs(out.asnumpy() - reference(model, ids, mask)).max())


def convert(source, target, *extra):
    assert convert_main(["--source", str(source), "--target", str(target), *map(str, extra)]) == 0
    return str(target)


# ---------------------------------------------------------------------------------------------------------
# Architecture and relative positions
# ---------------------------------------------------------------------------------------------------------

def test_registry_xxl_is_latte1_text_encoder():
    # google/t5-v1_1-xxl's config.json (Latte-1's text_encoder), read through transformers' T5Config
    facts = transformers.T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                  num_heads=64, feed_forward_proj="gated-gelu", is_encoder_decoder=True)
    assert T5EncoderConfig.from_hf_config(facts.to_dict()) == T5_ENCODERS["t5-v1_1-xxl"]
    xxl = T5_ENCODERS["t5-v1_1-xxl"]
    assert (xxl.relative_attention_num_buckets, xxl.relative_attention_max_distance) == (32, 128)
    assert xxl.layer_norm_epsilon == 1e-6


@pytest.mark.parametrize("feed_forward_proj", ["gated-gelu", "relu"])
def test_parameter_count(feed_forward_proj):
    config = T5EncoderConfig.from_dict({**TINY.to_dict(), "feed_forward_proj": feed_forward_proj})
    model = transformers.T5EncoderModel(hf_config(config))
    assert config.num_parameters == sum(p.numel() for p in model.parameters())  # the tied embedding once


def test_config_round_trip_and_errors():
    assert T5EncoderConfig.from_dict(TINY.to_dict()) == TINY
    assert T5EncoderConfig.from_hf_config(hf_config(TINY).to_dict()) == TINY
    with pytest.raises(ValueError, match="feed_forward_proj='gated-silu' is not supported"):
        T5EncoderConfig.from_hf_config({**TINY.to_dict(), "feed_forward_proj": "gated-silu"})
    with pytest.raises(ValueError, match="'rope_theta'"):
        T5EncoderConfig.from_hf_config({**TINY.to_dict(), "rope_theta": 1e4})
    with pytest.raises(ValueError, match="model_type='umt5'"):
        T5EncoderConfig.from_hf_config({**TINY.to_dict(), "model_type": "umt5"})
    with pytest.raises(ValueError, match="unknown T5 encoder field"):
        T5EncoderConfig.from_dict({**TINY.to_dict(), "dropout_rate": 0.1})


@pytest.mark.parametrize("buckets, max_distance", [(32, 128), (8, 16)])
def test_relative_position_buckets_match_transformers(buckets, max_distance):
    attention = transformers.models.t5.modeling_t5.T5Attention
    distances = torch.arange(-700, 701)
    expected = attention._relative_position_bucket(distances, bidirectional=True, num_buckets=buckets,
                                                   max_distance=max_distance).numpy()
    np.testing.assert_array_equal(relative_position_bucket(distances.numpy(), buckets, max_distance), expected)


def test_parameter_names_are_transformers_names(torch_t5):
    ours = {name: tuple(p.shape) for name, p in T5EncoderModel(TINY).parameters_and_names()}
    theirs = {k: tuple(v.shape) for k, v in torch_t5.state_dict().items() if k != "encoder.embed_tokens.weight"}
    assert ours == theirs


# ---------------------------------------------------------------------------------------------------------
# Converter + load_t5 against transformers
# ---------------------------------------------------------------------------------------------------------

def test_converted_encoder_matches_transformers(sources, torch_t5, tmp_path, mode):
    target = convert(sources / "sharded", tmp_path / "t5.ckpt")
    net = load_t5(target)
    ids, mask = padded_batch()
    assert max_err(net, torch_t5, ids, mask) <= TOL
    meta = read_meta(target)
    assert meta["model"] == "T5EncoderModel" and meta["config"] == TINY.to_dict() and meta["dtype"] == "fp32"
    assert len(meta["source_files"]) > 1  # really sharded


@pytest.mark.parametrize("folder", ["single", "bin", "bin_sharded", "whole_t5"])
def test_every_source_format_converts(sources, torch_t5, tmp_path, folder, capsys):
    target = convert(sources / folder, tmp_path / "t5.ckpt")
    ids, mask = padded_batch(seed=1)
    assert max_err(load_t5(target), torch_t5, ids, mask) <= TOL
    skipped = read_meta(target)["skipped_decoder_tensors"]
    if folder == "whole_t5":
        saved = safetensors_torch.load_file(str(sources / folder / "model.safetensors"))
        assert skipped == len([k for k in saved if k.startswith(("decoder.", "lm_head."))]) > 0
        assert f"skipped {skipped} decoder tensors" in capsys.readouterr().out
    else:
        assert skipped == 0


def test_cli_converts_a_single_file_with_config(sources, torch_t5, tmp_path):
    proc = subprocess.run([sys.executable, "tools/t5_converter.py", "--source",
                           str(sources / "single" / "model.safetensors"), "--config",
                           str(sources / "single" / "config.json"), "--target", str(tmp_path / "t5.ckpt")],
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "[5/5] wrote" in proc.stdout
    ids, mask = padded_batch(seed=2)
    assert max_err(load_t5(str(tmp_path / "t5.ckpt")), torch_t5, ids, mask) <= TOL


def test_v1_0_relu_encoder(tmp_path):
    model = tiny_torch_t5("relu", seed=3)
    model.save_pretrained(tmp_path / "v1_0")
    net = load_t5(convert(tmp_path / "v1_0", tmp_path / "t5.ckpt"))
    ids, mask = padded_batch(seed=3)
    assert max_err(net, model, ids, mask) <= TOL


@pytest.mark.parametrize("source_dtype, storage", [(torch.bfloat16, "bf16"), (torch.float32, "fp16")])
def test_half_precision_files(tmp_path, source_dtype, storage):
    """bf16 safetensors read without torch; fp16/bf16 storage loads into the fp32 encoder unchanged."""
    model = tiny_torch_t5(seed=4)
    rounded = {"bf16": torch.bfloat16, "fp16": torch.float16}[storage]
    with torch.no_grad():  # the weights the file will hold, widened back to fp32 for the reference
        for param in model.parameters():
            param.copy_(param.to(rounded).float())
    model.to(source_dtype).save_pretrained(tmp_path / "src")
    target = convert(tmp_path / "src", tmp_path / "t5.ckpt", "--dtype", storage)
    ids, mask = padded_batch(seed=4)
    assert max_err(load_t5(target), model.float(), ids, mask) <= TOL


def test_fp16_compute_keeps_norms_and_wo_in_fp32(sources, torch_t5, tmp_path):
    """fp16 on CPU is a smoke test (MindSpore's CPU fp16 kernels are slow); parity is checked in fp32."""
    net = load_t5(convert(sources / "single", tmp_path / "t5.ckpt"), dtype="fp16")
    dtypes = {name: p.dtype for name, p in net.parameters_and_names()}
    assert {n for n, d in dtypes.items() if d == ms.float32} == {
        n for n in dtypes if n.endswith(("layer_norm.weight", "DenseReluDense.wo.weight"))}
    ids, mask = padded_batch(seed=5)
    assert max_err(net, torch_t5, ids, mask) <= 0.05  # fp16 rounding of values up to ~4 (measured 0.02)


def test_missing_tensor_is_named(sources, tmp_path, capsys):
    state = safetensors_torch.load_file(str(sources / "single" / "model.safetensors"))
    missing = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight"
    del state[missing]
    os.makedirs(tmp_path / "broken")
    safetensors_torch.save_file(state, str(tmp_path / "broken" / "model.safetensors"))
    with open(sources / "single" / "config.json") as src, open(tmp_path / "broken" / "config.json", "w") as dst:
        dst.write(src.read())
    args = ["--source", str(tmp_path / "broken"), "--target", str(tmp_path / "t5.ckpt")]
    with pytest.raises(CheckpointError, match=f"parameters not filled: {missing}"):
        convert_main(args)
    assert cli_main(convert_main, args) == 2
    assert missing in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "t5.ckpt")


def test_load_t5_refuses_other_checkpoints(tmp_path):
    save_ms_checkpoint({"weight": np.zeros(2, np.float32)}, str(tmp_path / "vae.ckpt"), {"model": "AutoencoderKL"})
    with pytest.raises(CheckpointError, match="holds a AutoencoderKL, not a T5 text encoder"):
        load_t5(str(tmp_path / "vae.ckpt"))
    save_ms_checkpoint({"weight": np.zeros(2, np.float32)}, str(tmp_path / "bare.ckpt"))
    with pytest.raises(CheckpointError, match="no architecture record"):
        load_t5(str(tmp_path / "bare.ckpt"))


def test_wrong_architecture_and_missing_config(sources, tmp_path):
    with open(sources / "single" / "config.json") as f:
        config = json.load(f)
    (tmp_path / "config.json").write_text(json.dumps({**config, "d_kv": 4}))
    args = ["--source", str(sources / "single" / "model.safetensors"), "--target", str(tmp_path / "t5.ckpt")]
    with pytest.raises(CheckpointError, match=r"SelfAttention.q.weight \(32, 32\) != expected \(16, 32\)"):
        convert_main(args[:2] + ["--config", str(tmp_path / "config.json")] + args[2:])
    os.makedirs(tmp_path / "lone")
    shutil.copy(sources / "single" / "model.safetensors", tmp_path / "lone" / "model.safetensors")
    with pytest.raises(CheckpointError, match="--config"):
        convert_main(["--source", str(tmp_path / "lone" / "model.safetensors"), "--target", str(tmp_path / "x.ckpt")])


# ---------------------------------------------------------------------------------------------------------
# Tokenizer, and prompts through both encoders
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    """A pipeline folder's tokenizer/spiece.model: a tiny sentencepiece model with T5's special ids."""
    import sentencepiece

    folder = tmp_path_factory.mktemp("pipeline")
    os.makedirs(folder / "tokenizer")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_TEXT.splitlines() * 10), model_prefix=str(folder / "tokenizer" / "spiece"),
        vocab_size=90, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        minloglevel=2)
    return folder


def test_tokenizer_matches_transformers(pipeline_folder):
    ours = T5Tokenizer(str(pipeline_folder))
    theirs = transformers.T5Tokenizer.from_pretrained(str(pipeline_folder / "tokenizer"))
    texts = PROMPTS + ["Zebra QX ~ é 漢字 (unknown pieces)", "two  spaces\tand a tab"]
    for max_length in (MAX_LENGTH, 12):
        ids, mask = ours(texts, max_length=max_length)
        expected = theirs(texts, padding="max_length", max_length=max_length, truncation=True,
                          add_special_tokens=True, return_attention_mask=True)
        assert ids.dtype == mask.dtype == np.int32 and ids.shape == (len(texts), max_length)
        np.testing.assert_array_equal(ids, np.array(expected["input_ids"]))
        np.testing.assert_array_equal(mask, np.array(expected["attention_mask"]))
    ids, mask = ours(PROMPTS[2], max_length=12)  # truncated: 11 pieces, then </s>
    assert ids[0, -1] == theirs.eos_token_id == 1 and mask.all()
    assert ours([""])[0][0, :2].tolist() == [1, theirs.pad_token_id]


def test_prompt_preprocessing_is_latte_pipelines():
    from diffusers import LattePipeline

    # LattePipeline's path without bs4/ftfy (or with clean_caption=False); `self` is not used on it
    assert [preprocess_prompt(p) for p in PROMPTS] == LattePipeline._text_preprocessing(None, PROMPTS, False)


def test_prompts_through_tokenizer_and_encoder(pipeline_folder, sources, torch_t5, tmp_path):
    ids, mask = T5Tokenizer(str(pipeline_folder))([preprocess_prompt(p) for p in PROMPTS])
    net = load_t5(convert(sources / "single", tmp_path / "t5.ckpt"))
    assert max_err(net, torch_t5, ids, mask) <= TOL
