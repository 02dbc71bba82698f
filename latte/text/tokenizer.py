"""T5's tokenizer as LattePipeline calls it, on the sentencepiece library (no MindSpore, no transformers).

    tokenizer = T5Tokenizer("Latte-1")                       # a pipeline folder, its tokenizer/, or spiece.model
    ids, mask = tokenizer([preprocess_prompt(p) for p in prompts])   # two (B, 120) int32 arrays

LattePipeline.encode_prompt tokenizes with padding="max_length", max_length=120, truncation=True,
add_special_tokens=True: the pieces of a prompt are cut to 119, the end-of-sequence id `</s>` appended, and the
rest padded with `<pad>` (mask 0). Ids and mask equal transformers' T5Tokenizer for ordinary text; text that
spells a special token ("</s>", "<extra_id_0>") is split into ordinary pieces here, where T5Tokenizer would
map it to the special id.
"""
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

MAX_LENGTH = 120  # LattePipeline.encode_prompt's max_length (Latte-1 was trained on 120 T5 tokens)
MODEL_FILE = "spiece.model"
TOKENIZER_FOLDER = "tokenizer"  # where a diffusers pipeline folder keeps it


def preprocess_prompt(text):
    """LattePipeline's prompt text before tokenizing: lower-cased and stripped.

    That is its `_text_preprocessing` with clean_caption off, which is what runs without the optional bs4 and
    ftfy packages (with both installed, LattePipeline.__call__ defaults to DeepFloyd IF's caption cleaning:
    URLs, HTML, @names, CJK and punctuation runs removed; not done here).
    """
    return text.lower().strip()


def find_model_file(path):
    """spiece.model given directly, inside a tokenizer folder, or under a pipeline folder's tokenizer/."""
    candidates = [path, os.path.join(path, MODEL_FILE), os.path.join(path, TOKENIZER_FOLDER, MODEL_FILE)]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        held = ", ".join(sorted(os.listdir(path))[:8]) if os.path.isdir(path) else "no such file or folder"
        raise FileNotFoundError(f"{path}: no T5 sentencepiece model ({MODEL_FILE}, or {TOKENIZER_FOLDER}/"
                                f"{MODEL_FILE}) there ({held}); give the Latte-1 folder or its tokenizer/")
    return found


class T5Tokenizer:
    """Prompts -> (ids, mask), each (B, max_length) int32: pieces, `</s>`, then `<pad>` to max_length."""

    def __init__(self, path):
        import sentencepiece

        self.model_file = find_model_file(path)
        self.processor = sentencepiece.SentencePieceProcessor(model_file=self.model_file)
        self.eos_id, self.pad_id = self.processor.eos_id(), self.processor.pad_id()
        if self.eos_id < 0 or self.pad_id < 0:
            raise ValueError(f"{self.model_file} defines no </s> or <pad> id (eos_id={self.eos_id}, "
                             f"pad_id={self.pad_id}): not a T5 sentencepiece model")

    def __call__(self, texts, max_length=MAX_LENGTH):
        if isinstance(texts, str):
            texts = [texts]
        if max_length < 1:
            raise ValueError(f"max_length={max_length}: need room for at least the </s> token")
        ids = np.full((len(texts), max_length), self.pad_id, np.int32)
        mask = np.zeros((len(texts), max_length), np.int32)
        for row, text in enumerate(texts):
            pieces = self.processor.encode(text)
            if len(pieces) > max_length - 1:
                logger.warning("prompt truncated to %d T5 tokens, dropped: %r", max_length,
                               self.processor.decode(pieces[max_length - 1:]))
                pieces = pieces[:max_length - 1]
            tokens = pieces + [self.eos_id]
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        return ids, mask
