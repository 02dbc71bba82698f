"""The config keys of the T5 text encoder: which files (sample.py, tools/text_embeddings.py, train.py) and how
train.py feeds captions through it. Plain Python (no MindSpore); the configs that hold these keys are in
latte/options.py (TrainConfig) and latte/t2v_options.py (the text-to-video sampling configs).

    TextEncoderOptions     text_encoder, tokenizer
    CaptionEncoderOptions  + text_encoder_dtype, max_text_length (tools/embedding_cache.py, condition 'text')
    CaptionOptions         + caption_dropout_prob (train.py, condition 'text')
"""
import dataclasses
import os
from typing import Optional

from latte.config import ConfigError, field
from latte.env import DTYPES
from latte.text.demo import DEMO_NAME, resolve_text_encoder
from latte.text.tokenizer import MAX_LENGTH

# Latte-1 / PixArt-alpha: a caption is replaced by the empty one this often (classifier-free guidance)
CAPTION_DROPOUT_PROB = 0.1
DEMO_TEXT_ENCODER = DEMO_NAME  # the built-in tiny T5 and tokenizer (latte.text.demo), generated on first use


@dataclasses.dataclass
class TextEncoderOptions:
    text_encoder: str = field("", "T5 encoder .ckpt from tools/t5_converter.py (Latte-1's text_encoder/)")
    tokenizer: str = field("", "T5's sentencepiece model: the Latte-1 pipeline folder, its tokenizer/ folder, or "
                               "spiece.model")

    def validate_text_encoder(self, why="encode the prompts"):
        if self.text_encoder == DEMO_TEXT_ENCODER:
            if self.tokenizer not in ("", DEMO_TEXT_ENCODER):
                raise ConfigError(f"text_encoder 'demo' brings its own tokenizer, but tokenizer={self.tokenizer!r}: "
                                  "leave tokenizer empty or set it to 'demo'")
            return
        if not self.text_encoder:
            raise ConfigError(f"text_encoder is empty: give the T5 .ckpt from tools/t5_converter.py to {why}")
        if not self.tokenizer:
            raise ConfigError("tokenizer is empty: give T5's sentencepiece model (the Latte-1 folder, its "
                              "tokenizer/ or spiece.model) with the text_encoder")
        for key in ("text_encoder", "tokenizer"):
            if not os.path.exists(getattr(self, key)):
                raise ConfigError(f"{key} {getattr(self, key)!r} not found")

    def text_encoder_files(self):
        """(T5 .ckpt, tokenizer path): the keys as given, or the built-in demo's files for 'demo'."""
        if self.text_encoder != DEMO_TEXT_ENCODER:
            return self.text_encoder, self.tokenizer
        return resolve_text_encoder(DEMO_TEXT_ENCODER)


@dataclasses.dataclass
class CaptionEncoderOptions(TextEncoderOptions):
    """T5 on the captions of training videos: the encoder, its compute dtype and the token count
    (tools/embedding_cache.py, train.py)."""
    text_encoder_dtype: Optional[str] = field(None, "T5 compute dtype: fp32, fp16 or bf16 (empty: fp32 on CPU, "
                                                    "fp16 on Ascend/GPU)", choices=(None,) + DTYPES)
    max_text_length: int = field(MAX_LENGTH, "T5 tokens per caption (padded; longer captions are cut, with a "
                                             "warning): Latte-1 uses 120", minimum=1)

    def check_text_keys(self, condition):
        """The text encoder keys are read only for condition 'text': there they are required, elsewhere errors."""
        if condition == "text":
            self.validate_text_encoder("encode the captions")
            return
        given = [f.name for f in dataclasses.fields(CaptionEncoderOptions) if getattr(self, f.name) != f.default]
        if given:
            raise ConfigError(f"{given[0]} is read only with condition 'text' (condition is {condition!r}): remove "
                              "it, or set condition: text")


@dataclasses.dataclass
class CaptionOptions(CaptionEncoderOptions):
    """train.py with condition 'text': T5 runs frozen inside the train step (or its states come from the cache)."""
    caption_dropout_prob: float = field(CAPTION_DROPOUT_PROB, "condition 'text': a caption is replaced by the empty "
                                                              "caption with this probability, drawn per sample from "
                                                              "the seed (classifier-free guidance; Latte-1 / "
                                                              "PixArt: 0.1)", minimum=0.0)

    def caption_keys_given(self):
        """The caption keys set to other than their defaults (an error without condition 'text')."""
        return [f.name for f in dataclasses.fields(CaptionOptions) if getattr(self, f.name) != f.default]
