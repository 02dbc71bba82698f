"""Write the T5 states of prompts to a text embeddings file, so sample.py can run Latte-1 without T5 (19 GB).

    python tools/text_embeddings.py --text_encoder models/t5-v1_1-xxl.ckpt --tokenizer models/Latte-1 \
        --prompts_file prompts.txt --output models/prompt_embeddings.npz
    python sample.py -c configs/inference/t2v.yaml --prompts_file prompts.txt \
        --text_embeddings models/prompt_embeddings.npz

The negative prompt (negative_prompt, "" by default) is stored with the prompts. An existing output file keeps its
texts and gains the new ones (from the same text encoder). The format: latte/text/embeddings.py.
"""
import logging
import os
import sys

import numpy as np

from latte.cli import run_cli
from latte.config import ConfigError, load_config
from latte.env import setup_context_from, setup_logging
from latte.t2v_options import TextEmbeddingsConfig
from latte.text.options import DEMO_TEXT_ENCODER
from latte.text.embeddings import TextEmbeddings, save_text_embeddings

logger = logging.getLogger("text_embeddings")


def main(argv=None):
    # 1. Config, device, the texts not stored yet
    cfg = load_config(TextEmbeddingsConfig, argv, __doc__)
    setup_logging()
    ctx = setup_context_from(cfg)
    encoder = cfg.text_encoder if cfg.text_encoder == DEMO_TEXT_ENCODER else os.path.abspath(cfg.text_encoder)
    texts, states, masks = [], [], []
    if os.path.isfile(cfg.output):
        stored = TextEmbeddings(cfg.output)
        if stored.text_encoder != encoder:
            raise ConfigError(f"{cfg.output} holds states of {stored.text_encoder}, not {encoder}: write a new file")
        texts = list(stored.texts)
        states, masks = map(list, stored(texts))
    wanted = list(dict.fromkeys(cfg.prompts() + [cfg.negative_prompt]))  # in order, each once
    new = [t for t in wanted if t not in texts]

    # 2. T5 and the tokenizer (MindSpore from here on)
    from latte.env import resolve_dtype
    from latte.models import load_t5
    from latte.text.tokenizer import T5Tokenizer
    from latte.text_to_video import encode_texts

    t5_ckpt, tokenizer_path = cfg.text_encoder_files()  # 'demo': the built-in one, built on first use
    tokenizer = T5Tokenizer(tokenizer_path)
    t5 = load_t5(t5_ckpt, dtype=resolve_dtype(cfg.dtype, ctx.device_target))

    # 3. Encode, one text at a time (one compiled shape), and write
    for text in new:
        state, mask = encode_texts(tokenizer, t5, [text])  # (1, 120, D), (1, 120)
        texts.append(text)
        states.append(state[0])
        masks.append(mask[0])
    save_text_embeddings(cfg.output, texts, np.stack(states), np.stack(masks), text_encoder=encoder)
    print(f"wrote {cfg.output}: {len(new)} new text(s), {len(texts)} in all ({len(wanted) - len(new)} of the "
          f"{len(wanted)} asked for were stored already)")
    return 0


def cli(argv=None):
    """main() with user errors (config, data, checkpoints, missing files) as one `error:` line and exit code 2."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
