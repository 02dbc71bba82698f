"""A tiny random Latte-1 pipeline folder for the text-to-video tests: diffusers / transformers components with
every weight re-drawn, saved as Latte-1 is laid out (transformer/, text_encoder/, tokenizer/,
vae_temporal_decoder/, scheduler/), and converted by the tools in-process.

    pipe = tiny_pipeline(tmp_path)   # .folder, .transformer, .text_encoder, .tokenizer, .vae (torch), .ckpt paths
"""
import dataclasses
import os

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from latte.diffusion.schedulers import LATTE1_SCHEDULER_CONFIG  # noqa: E402
from latte.models.t5_config import T5_ENCODERS  # noqa: E402
from tests.test_latte_t2v import TINY as TINY_TRANSFORMER, random_reference  # noqa: E402
from tests.test_t5 import SPM_TEXT, hf_config, redraw  # noqa: E402
from tests.test_vae_temporal import TINY as TINY_VAE, randomized_temporal_vae  # noqa: E402
from tools import latte_converter, t5_converter, vae_converter  # noqa: E402

FRAMES = TINY_TRANSFORMER["video_length"]  # 4: diffusers adds its temporal table to exactly video_length frames
LATENT = TINY_TRANSFORMER["sample_size"]  # 8x8 latents
VAE_DOWNSAMPLE = 2 ** (len(TINY_VAE["block_out_channels"]) - 1)  # 2: the tiny VAE has two levels
IMAGE_SIZE = LATENT * VAE_DOWNSAMPLE  # 16x16 frames
CHANNELS = TINY_TRANSFORMER["in_channels"]
T5_TINY = hf_config(T5_ENCODERS["t5-tiny"], d_model=TINY_TRANSFORMER["caption_channels"])  # T5 width = captions


@dataclasses.dataclass
class TinyPipeline:
    folder: str  # the diffusers pipeline folder
    transformer: object  # torch modules, eval mode
    text_encoder: object
    vae: object
    tokenizer: object  # transformers' T5Tokenizer on the folder's spiece.model
    latte_ckpt: str  # the converted checkpoints
    t5_ckpt: str
    vae_ckpt: str

    def diffusers_pipeline(self, scheduler):
        return diffusers.LattePipeline(tokenizer=self.tokenizer, text_encoder=self.text_encoder, vae=self.vae,
                                       transformer=self.transformer, scheduler=scheduler)


def train_sentencepiece(folder):
    """folder/spiece.model: a tiny unigram sentencepiece model with T5's special ids (pad 0, </s> 1, unk 2)."""
    import sentencepiece

    os.makedirs(folder, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_TEXT.splitlines() * 10), model_prefix=os.path.join(folder, "spiece"),
        vocab_size=90, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        minloglevel=2)


def tiny_pipeline(root):
    """Writes the pipeline folder under `root`, converts transformer, T5 and VAE with the tools' main()."""
    root = str(root)
    folder = os.path.join(root, "Latte-1-tiny")
    transformer = random_reference(seed=0)
    text_encoder = redraw(transformers.T5EncoderModel(T5_TINY), seed=1)
    vae = randomized_temporal_vae(seed=2, **TINY_VAE)
    transformer.save_pretrained(os.path.join(folder, "transformer"))
    text_encoder.save_pretrained(os.path.join(folder, "text_encoder"))
    vae.save_pretrained(os.path.join(folder, "vae_temporal_decoder"))
    diffusers.DDIMScheduler(**LATTE1_SCHEDULER_CONFIG).save_config(os.path.join(folder, "scheduler"))
    train_sentencepiece(os.path.join(folder, "tokenizer"))
    tokenizer = transformers.T5Tokenizer.from_pretrained(os.path.join(folder, "tokenizer"))

    ckpts = {name: os.path.join(root, f"{name}.ckpt") for name in ("latte", "t5", "vae")}
    for tool, source, target in ((latte_converter, "transformer", ckpts["latte"]),
                                 (t5_converter, "text_encoder", ckpts["t5"]),
                                 (vae_converter, "vae_temporal_decoder", ckpts["vae"])):
        assert tool.main(["--source", os.path.join(folder, source), "--target", target]) == 0
    return TinyPipeline(folder, transformer, text_encoder, vae, tokenizer, ckpts["latte"], ckpts["t5"],
                        ckpts["vae"])
