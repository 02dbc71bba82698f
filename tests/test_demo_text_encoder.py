"""The built-in 'demo' text encoder: byte-identical builds, reuse by digest (a damaged file is rebuilt), the T5
tokenizer reading its sentencepiece model unchanged, and distinct T5 states for distinct prompts."""
import filecmp
import os

import numpy as np
import pytest

from latte.data.shape_captions import caption_combinations, shape_caption
from latte.text import demo
from latte.text.tokenizer import T5Tokenizer


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return demo.resolve_text_encoder("demo", cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_two_builds_are_identical_and_reused(built, tmp_path):
    t5_ckpt, tokenizer = built
    folder = os.path.dirname(t5_ckpt)
    assert folder.endswith(demo.DEMO_FOLDER) and os.path.dirname(tokenizer) == folder
    again, _ = demo.resolve_text_encoder("demo", cache_dir=str(tmp_path))
    names = (demo.MODEL_FILE, demo.T5_FILE, demo.T5_FILE + ".json", demo.MANIFEST_FILE)
    for name in names:
        assert filecmp.cmp(os.path.join(folder, name), os.path.join(os.path.dirname(again), name), shallow=False)
    assert sorted(os.listdir(os.path.dirname(again))) == sorted(names)  # no staging folder left behind
    stamp = os.stat(again).st_mtime_ns
    assert demo.resolve_text_encoder("demo", cache_dir=str(tmp_path))[0] == again
    assert os.stat(again).st_mtime_ns == stamp  # reused, not rebuilt
    with open(again, "r+b") as f:  # a damaged weights file fails its digest and is built again
        f.seek(100)
        f.write(b"\0" * 16)
    assert demo.resolve_text_encoder("demo", cache_dir=str(tmp_path))[0] == again
    assert filecmp.cmp(t5_ckpt, again, shallow=False)


def test_other_values_are_paths(tmp_path):
    assert demo.resolve_text_encoder("models/t5.ckpt", cache_dir=str(tmp_path)) == ("models/t5.ckpt", None)
    assert demo.resolve_tokenizer("models/Latte-1", cache_dir=str(tmp_path)) == "models/Latte-1"
    assert not os.listdir(tmp_path)  # nothing built


def test_tokenizer_round_trips_the_demo_words(built):
    tokenizer = T5Tokenizer(built[1])
    processor = tokenizer.processor
    assert (processor.pad_id(), processor.eos_id(), processor.unk_id(), processor.bos_id()) == (0, 1, 2, -1)
    for word in demo.DEMO_WORDS:  # each word is one piece
        assert len(processor.encode(word)) == 1, word
    captions = [shape_caption(*c) for c in caption_combinations()]
    ids, mask = tokenizer(captions, max_length=8)
    assert (mask.sum(axis=1) == 6).all() and (ids[:, 5] == 1).all() and (ids[:, 6:] == 0).all()  # 5 words, </s>
    assert len({tuple(row) for row in ids}) == len(captions)
    for caption, row in zip(captions, ids):
        assert processor.decode(row[:5].tolist()) == caption
    assert processor.decode(processor.encode("a purple cat")).replace("\u2581", " ").strip() == "a purple cat"


def test_distinct_prompts_get_distinct_states(built):
    from latte.models import load_t5
    from latte.text_to_video import encode_texts

    t5 = load_t5(built[0])
    assert t5.config.d_model == demo.DEMO_T5["d_model"]
    assert t5.config.vocab_size == T5Tokenizer(built[1]).processor.get_piece_size()
    prompts = ["a red square moving left", "a blue square moving left", "a red circle moving left",
               "a red square moving right", ""]
    states, mask = encode_texts(T5Tokenizer(built[1]), t5, prompts, max_length=8)
    assert states.shape == (5, 8, demo.DEMO_T5["d_model"]) and np.isfinite(states).all()
    for i in range(len(prompts)):
        for j in range(i):
            assert np.abs(states[i] - states[j]).max() > 0.1, (prompts[i], prompts[j])
