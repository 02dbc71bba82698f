"""Text side of text-to-video: the T5 tokenizer (plain Python, no MindSpore); the encoder is latte.models.t5."""
