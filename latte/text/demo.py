"""The built-in text encoder "demo": a tiny T5 with fixed random weights and a sentencepiece model of the demo's
words, so the text-to-video demo needs no download.

    t5_ckpt, tokenizer_path = resolve_text_encoder("demo")   # built on first use, reused afterwards
    t5_ckpt, _ = resolve_text_encoder("models/t5-v1_1-xxl.ckpt")   # any other value is a path, returned as is
    tokenizer_path = resolve_tokenizer("demo")

The files are generated deterministically (the same bytes on every build) into DEMO_FOLDER under the user's
cache folder: $XDG_CACHE_HOME/latte-ms/demo-text-encoder/, ~/.cache/latte-ms/demo-text-encoder/ when
XDG_CACHE_HOME is not set (`cache_dir` overrides the cache root):

    spiece.model          sentencepiece word model (T5's special ids: <pad> 0, </s> 1, <unk> 2), built with
                          sentencepiece's trainer on the caption grammar's words (latte/data/shape_captions.py);
                          other text falls back to bytes, as the T5 tokenizer code path reads it unchanged
    t5-demo.ckpt (+.json) a T5 v1.1 encoder (DEMO_T5) whose every weight is drawn from DEMO_SEED
    manifest.json         the recipe and the sha256 of each file, written last

Every file is written to a temporary name and renamed into place (another process never sees half a file; two
processes building at once write the same bytes). A later call reuses the files when the manifest's recipe is
this module's and every digest matches; otherwise it builds them again.
"""
import hashlib
import io
import json
import os
import shutil
import tempfile

import numpy as np

from latte.data.shape_captions import CAPTION_COLOURS, CAPTION_SHAPES, DIRECTIONS, caption_combinations, shape_caption
from latte.models.t5_config import T5EncoderConfig
from latte.text.tokenizer import MODEL_FILE

DEMO_NAME = "demo"  # the value of text_encoder / tokenizer that names this encoder
DEMO_FOLDER = os.path.join("latte-ms", "demo-text-encoder")
DEMO_SEED = 20240515  # the T5 weights' generator seed
T5_FILE = "t5-demo.ckpt"
MANIFEST_FILE = "manifest.json"
RECIPE_VERSION = 1  # bump when the recipe below changes the files
# T5's sentencepiece layout: ids of the special pieces, no <s>
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
BYTE_PIECES = 256  # byte_fallback pieces: text outside the grammar is spelled in UTF-8 bytes
DEMO_WORDS = ("a", "moving") + tuple(CAPTION_COLOURS) + CAPTION_SHAPES + tuple(DIRECTIONS)
# the T5 architecture; its vocab_size is the piece count of the sentencepiece model (272)
DEMO_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               relative_attention_max_distance=16, feed_forward_proj="gated-gelu")
NORM_WEIGHT_STD = 0.1  # RMSNorm weights: 1 + this * normal
BIAS_TABLE_STD = 0.5  # relative-position bias: this * normal


def default_cache_dir():
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def demo_folder(cache_dir=None):
    """Where the demo encoder's files live."""
    return os.path.join(cache_dir or default_cache_dir(), DEMO_FOLDER)


def resolve_text_encoder(name_or_path, cache_dir=None):
    """(T5 .ckpt, tokenizer path): "demo" -> the demo encoder's files (built on first use); anything else is the
    path of a T5 checkpoint, returned with tokenizer None (it comes from the tokenizer key)."""
    if name_or_path != DEMO_NAME:
        return name_or_path, None
    folder = ensure_demo_encoder(cache_dir)
    return os.path.join(folder, T5_FILE), os.path.join(folder, MODEL_FILE)


def resolve_tokenizer(name_or_path, cache_dir=None):
    """"demo" -> the demo's spiece.model (built on first use); anything else is returned as is."""
    if name_or_path != DEMO_NAME:
        return name_or_path
    return os.path.join(ensure_demo_encoder(cache_dir), MODEL_FILE)


# ---------------------------------------------------------------------------------------------------------
# Building the files
# ---------------------------------------------------------------------------------------------------------

def recipe():
    """What decides the files' bytes (a manifest with another recipe is rebuilt)."""
    import sentencepiece

    return {"version": RECIPE_VERSION, "seed": DEMO_SEED, "words": list(DEMO_WORDS), "t5": DEMO_T5,
            "sentencepiece": sentencepiece.__version__}


def build_sentencepiece_model():
    """The serialized sentencepiece word model of DEMO_WORDS (bytes), trained on every caption of the grammar."""
    import sentencepiece

    sentences = [shape_caption(*c) for c in caption_combinations()]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="word",
        vocab_size=3 + BYTE_PIECES + len(DEMO_WORDS), hard_vocab_limit=False, byte_fallback=True,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, character_coverage=1.0, num_threads=1,
        minloglevel=2)
    return model.getvalue()


def demo_t5_config(vocab_size):
    return T5EncoderConfig(vocab_size=vocab_size, **DEMO_T5)


def draw_t5_weights(config, seed=DEMO_SEED):
    """name -> float32 array for every parameter of T5EncoderModel(config), drawn in name order from `seed`:
    embeddings N(0, 1), linear weights N(0, 1 / fan_in), RMSNorm weights 1 + 0.1 N(0, 1), the relative-position
    bias 0.5 N(0, 1)."""
    from mindspore.nn.utils import no_init_parameters

    from latte.models.t5 import T5EncoderModel

    with no_init_parameters():
        net = T5EncoderModel(config)
    shapes = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    rng = np.random.default_rng(seed)
    params = {}
    for name in sorted(shapes):
        noise = rng.standard_normal(shapes[name]).astype(np.float32)
        if "layer_norm" in name:
            params[name] = 1.0 + NORM_WEIGHT_STD * noise
        elif "relative_attention_bias" in name:
            params[name] = BIAS_TABLE_STD * noise
        elif "shared" in name or "embed" in name:
            params[name] = noise
        else:  # (out, in) linear weight
            params[name] = noise / np.sqrt(shapes[name][-1])
    return params


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read_manifest(folder):
    try:
        with open(os.path.join(folder, MANIFEST_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_complete(folder):
    manifest = _read_manifest(folder)
    if not manifest or manifest.get("recipe") != recipe():
        return False
    files = manifest.get("files", {})
    return set(files) == {MODEL_FILE, T5_FILE, T5_FILE + ".json"} and all(
        os.path.isfile(os.path.join(folder, name)) and _sha256(os.path.join(folder, name)) == digest
        for name, digest in files.items())


def build_demo_files(folder):
    """Writes spiece.model and t5-demo.ckpt(+.json) into `folder` (not atomically: a fresh private folder)."""
    from latte.checkpoint_io import save_ms_checkpoint
    from latte.models.t5 import MODEL_NAME
    from latte.text.tokenizer import T5Tokenizer

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, MODEL_FILE), "wb") as f:
        f.write(build_sentencepiece_model())
    vocab_size = T5Tokenizer(folder).processor.get_piece_size()
    config = demo_t5_config(vocab_size)
    meta = {"model": MODEL_NAME, "config": config.to_dict(), "source": "latte.text.demo (random weights, seed "
            f"{DEMO_SEED})"}
    save_ms_checkpoint(draw_t5_weights(config), os.path.join(folder, T5_FILE), meta)


def ensure_demo_encoder(cache_dir=None):
    """The folder of the demo encoder's files, built there first unless a complete build is present."""
    folder = demo_folder(cache_dir)
    if _is_complete(folder):
        return folder
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".build-", dir=folder)
    try:
        build_demo_files(staging)
        names = (MODEL_FILE, T5_FILE + ".json", T5_FILE)
        manifest = {"recipe": recipe(), "files": {n: _sha256(os.path.join(staging, n)) for n in names}}
        with open(os.path.join(staging, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        for name in names + (MANIFEST_FILE,):  # each rename is atomic; the manifest goes last
            os.replace(os.path.join(staging, name), os.path.join(folder, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
