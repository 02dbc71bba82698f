"""Text in the embedding cache: the T5 states and masks of the captions next to the latents (numpy and
mindrecord), read back by create_cache_dataset(condition="text"), resumed after a crash, refused when missing.

The text encoder is a tiny transformers T5 with every weight re-drawn, converted by tools/t5_converter.py, and a
sentencepiece model trained like Latte-1's tokenizer folder (tests/t2v_support.py)."""
import json
import os

import numpy as np
import pytest

from latte.data import DataConfig, DataError, create_cache_dataset, write_synthetic_dataset
from latte.data import cache_writers
from latte.data.cache import read_cache_index
from tests.cache_support import IMAGE_SIZE, cache_args, load_cached, load_cached_text, run_tool
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)
from tests.t2v_support import train_sentencepiece
from tests.test_t5 import tiny_torch_t5
from tools import t5_converter

N_VIDEOS = 6  # the last one has no caption file: skipped
CAPTIONS = ["A cat wearing sunglasses at a pool.", "Yellow and black tropical fish dart through the sea",
            "An epic tornado attacking above a glowing city at night, 4k, high quality, slow pan upward",
            "a cute raccoon playing guitar in a boat", "The quick brown fox jumps over the lazy dog"]
MAX_LENGTH = 40  # the third caption (51 pieces) is cut, with a warning; the others are padded
WIDTH = 32  # t5-tiny's d_model
LATENT_SHAPE = (4, 4, 4)
TOL = 1e-5  # T5 states: the cache's batches of 3 vs one batch of all captions


@pytest.fixture(scope="module")
def text_encoder(tmp_path_factory):
    """(T5 .ckpt, tokenizer folder)."""
    root = tmp_path_factory.mktemp("t5")
    tiny_torch_t5(seed=4).save_pretrained(root / "text_encoder")
    ckpt = str(root / "t5.ckpt")
    assert t5_converter.main(["--source", str(root / "text_encoder"), "--target", ckpt]) == 0
    train_sentencepiece(str(root / "tokenizer"))
    return ckpt, str(root / "tokenizer")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Frame folders with a caption file beside each but the last."""
    folder = str(tmp_path_factory.mktemp("frames"))
    paths = write_synthetic_dataset(folder, n_videos=N_VIDEOS, n_frames=6, size=IMAGE_SIZE, layout="frame_folder")
    for path, caption in zip(paths, CAPTIONS):
        with open(path + ".txt", "w", encoding="utf-8") as f:
            f.write(caption)
    return folder


def captions_by_name(videos):
    """video name -> its caption, as the fixture wrote them."""
    names = sorted(os.path.relpath(os.path.join(root, d), videos) for root, dirs, _ in os.walk(videos) for d in dirs
                   if os.path.isfile(os.path.join(root, d) + ".txt"))
    out = {}
    for name in names:
        with open(os.path.join(videos, name) + ".txt", encoding="utf-8") as f:
            out[name] = f.read()
    return out


def text_args(videos, cache, vae_path, text_encoder, file_type, *extra):
    return [*cache_args(videos, cache, vae_path, "frame_folder", "--condition", "text", "--cache_file_type",
                        file_type, "--text_encoder", text_encoder[0], "--tokenizer", text_encoder[1],
                        "--max_text_length", MAX_LENGTH, "--text_batch_size", 3, "--segment_frames", 4,
                        "--videos_per_file", 2, "--mode", 1), *map(str, extra)]  # tiny models: pynative is faster


def expected_text(text_encoder):
    """caption -> (states, mask): encode_texts on all captions at once."""
    import mindspore as ms

    from latte.models import load_t5
    from latte.text.tokenizer import T5Tokenizer
    from latte.text_to_video import encode_texts

    ms.set_context(mode=ms.PYNATIVE_MODE)  # restored after the test (restore_mindspore_mode)
    states, mask = encode_texts(T5Tokenizer(text_encoder[1]), load_t5(text_encoder[0]), CAPTIONS, MAX_LENGTH)
    return {c: (s, m) for c, s, m in zip(CAPTIONS, states, mask)}


def cached_files(cache):
    """name -> (latents, states, mask) of every cached video, read straight from the files."""
    index = read_cache_index(str(cache))
    return {v["name"]: (load_cached(cache, v),) + tuple(load_cached_text(cache, v)) for v in index.videos}


@pytest.fixture(scope="module", params=["numpy", "mindrecord"])
def text_cache(request, tmp_path_factory, vae_path, videos, text_encoder):
    cache = tmp_path_factory.mktemp(request.param) / "cache"
    assert run_tool(*text_args(videos, cache, vae_path, text_encoder, request.param)) == 0
    return request.param, cache


def test_cached_states_are_encode_texts_of_the_captions(text_cache, text_encoder, videos):
    file_type, cache = text_cache
    index = read_cache_index(str(cache))
    assert index.header["text"] == {"text_encoder": os.path.abspath(text_encoder[0]), "width": WIDTH,
                                    "max_length": MAX_LENGTH}
    assert index.header["condition"] == "text" and index.header["source"]["num_videos"] == len(CAPTIONS)
    assert {v["name"]: v["caption"] for v in index.videos} == captions_by_name(videos)
    expected = expected_text(text_encoder)
    assert expected[CAPTIONS[2]][1].all() and not expected[CAPTIONS[0]][1].all()  # cut; padded
    for video in index.videos:
        states, mask = load_cached_text(cache, video)
        assert states.shape == (MAX_LENGTH, WIDTH) and states.dtype == np.float32 and mask.dtype == np.int32
        want_states, want_mask = expected[video["caption"]]
        np.testing.assert_array_equal(mask, want_mask)
        np.testing.assert_allclose(states, want_states, rtol=0, atol=TOL)


def test_text_cache_dataset_yields_each_videos_caption_states(text_cache, text_encoder, videos):
    file_type, cache = text_cache
    data_config = DataConfig(data_folder=str(cache), train_data_type=file_type, sample_stride=1,
                             num_parallel_workers=1)
    dataset, info = create_cache_dataset(data_config, IMAGE_SIZE, 3, 2, latent_shape=LATENT_SHAPE,
                                         condition="text", seed=1, num_shards=2, shard_id=1)
    index = read_cache_index(str(cache))
    assert info.text_encoder == index.header["text"] and info.captions == [v["caption"] for v in index.videos]
    files = cached_files(cache)
    shown = []
    for batch in dataset.create_dict_iterator(num_epochs=1, output_numpy=True):
        assert sorted(batch) == ["text_mask", "text_states", "video"]
        assert batch["text_states"].shape == (2, MAX_LENGTH, WIDTH) and batch["text_states"].dtype == np.float32
        assert batch["text_mask"].shape == (2, MAX_LENGTH) and batch["text_mask"].dtype == np.int32
        for clip, states, mask in zip(batch["video"], batch["text_states"], batch["text_mask"]):
            # the video whose latents hold this clip carries exactly these caption states
            name = next(n for n, (latents, _, _) in files.items()
                        if any(np.array_equal(clip, latents[s:s + 3]) for s in range(len(latents) - 2)))
            np.testing.assert_array_equal(states, files[name][1])
            np.testing.assert_array_equal(mask, files[name][2])
            shown.append(name)
    assert len(shown) == 2 and len(set(shown)) == 2  # 5 videos over 2 shards: 2 each

    unconditional, info = create_cache_dataset(data_config, IMAGE_SIZE, 3, 2, condition=None)
    assert info.text_encoder["width"] == WIDTH
    assert sorted(next(unconditional.create_dict_iterator(num_epochs=1, output_numpy=True))) == ["video"]


def test_crash_and_resume_give_the_files_of_an_uninterrupted_run(text_cache, tmp_path, vae_path, videos,
                                                                 text_encoder, monkeypatch, capsys):
    file_type, reference = text_cache
    cache = tmp_path / "cache"
    args = text_args(videos, cache, vae_path, text_encoder, file_type)
    writer_class = {"numpy": cache_writers.NumpyCacheWriter, "mindrecord": cache_writers.MindRecordCacheWriter}
    original, added = writer_class[file_type].add, []

    def add_then_crash(self, video_id, *rest):
        if video_id == 4:  # inside the second group of captions
            raise KeyboardInterrupt
        added.append(video_id)
        return original(self, video_id, *rest)

    monkeypatch.setattr(writer_class[file_type], "add", add_then_crash)
    assert run_tool(*args) == 1
    assert "continue with --resume_cache_index 4" in capsys.readouterr().err
    assert [v["id"] for v in read_cache_index(str(cache)).videos] == [0, 1, 2, 3]
    with open(cache / "manifest.rank0.jsonl", "a") as f:  # what a kill while appending leaves
        f.write('{"caption": "The quick brown fox jumps over the lazy dog", "fil')

    monkeypatch.setattr(writer_class[file_type], "add", original)
    assert run_tool(*args) == 0
    lines = (cache / "manifest.rank0.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    got, want = cached_files(cache), cached_files(reference)
    assert list(got) == list(want)
    for name in want:
        for g, w in zip(got[name], want[name]):
            np.testing.assert_array_equal(g, w)  # bit for bit: captions are encoded in the same groups


def test_text_settings_and_condition_mismatches_are_one_line_errors(text_cache, vae_path, videos, text_encoder,
                                                                   tmp_path, capsys):
    file_type, cache = text_cache
    args = text_args(videos, cache, vae_path, text_encoder, file_type)
    assert run_tool(*args, "--max_text_length", MAX_LENGTH + 1) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "written with other settings (text.max_length: 40 vs 41" in errors[0]

    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--text_encoder", text_encoder[0])) == 2
    assert "text_encoder is read only with condition 'text'" in capsys.readouterr().err
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--condition", "text")) == 2
    assert "text_encoder is empty" in capsys.readouterr().err

    plain = tmp_path / "plain"
    assert run_tool(*cache_args(videos, plain, vae_path, "frame_folder", "--cache_file_type", file_type,
                                "--max_videos", 1, "--mode", 1)) == 0
    data_config = DataConfig(data_folder=str(plain), train_data_type=file_type, sample_stride=1,
                             num_parallel_workers=1)
    with pytest.raises(DataError, match="written for condition None: rebuild it with .*--condition text"):
        create_cache_dataset(data_config, IMAGE_SIZE, 3, 1, condition="text")
    dataset, info = create_cache_dataset(data_config, IMAGE_SIZE, 3, 1)
    assert info.text_encoder == {} and info.captions == []


def test_train_from_the_text_cache(text_cache, text_encoder, vae_path, tmp_path):
    """2 steps of a tiny LatteT2V on the cached latents and caption states (no VAE, no T5 in the step), then the
    same cache with another token count is refused in one line."""
    import train
    from latte.checkpoint_io import read_meta
    from latte.config import ConfigError

    file_type, cache = text_cache
    out = tmp_path / "run"
    args = ["--model_name", "Latte-1-T", "--condition", "text", "--image_size", IMAGE_SIZE, "--num_frames", 2,
            "--device_target", "CPU", "--mode", 1, "--vae_checkpoint", vae_path, "--text_encoder", text_encoder[0],
            "--tokenizer", text_encoder[1], "--max_text_length", MAX_LENGTH, "--train_batch_size", 2,
            "--max_steps", 2, "--step_mode", True, "--ckpt_save_interval", 2, "--data_config.train_data_type",
            file_type, "--data_config.data_folder", cache, "--data_config.sample_stride", 1,
            "--data_config.num_parallel_workers", 1, "--output_path", out]
    assert train.main([str(a) for a in args]) == 2
    meta = read_meta(str(out / "ckpt" / "latte-0000002-ema.ckpt"))
    assert meta["kind"] == "latte_t2v" and meta["config"]["caption_channels"] == WIDTH
    with pytest.raises(ConfigError, match=f"holds {MAX_LENGTH} T5 tokens per caption: set max_text_length"):
        train.main([str(a) for a in args[:-1]] + [str(tmp_path / "other"), "--max_text_length", "41"])
