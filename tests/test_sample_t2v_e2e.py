"""sample.py text-to-video end to end on a tiny Latte-1 pipeline folder converted by the tools (transformer, T5,
tokenizer, temporal VAE): prompts in, MP4/GIF out, PNG for video_length 1; tools/text_embeddings.py then
sample.py without the text encoder gives the same image; the config's wrong combinations are one-line errors."""
import os

import imageio.v3 as iio
import numpy as np
import pytest

from tests.t2v_support import FRAMES, IMAGE_SIZE, tiny_pipeline

import sample  # noqa: E402
from latte.config import ConfigError, load_config  # noqa: E402
from latte.options import SampleConfig  # noqa: E402
from latte.t2v_options import TextToVideoSampleConfig, sample_config_class  # noqa: E402
from tools import text_embeddings  # noqa: E402

CAT = "A cat, wearing sunglasses"  # a comma: still one prompt on the command line
FISH = "Yellow and black tropical fish dart through the sea."


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("t2v_e2e"))


def model_args(pipe, *, t5=True):
    args = ["--checkpoint", pipe.latte_ckpt, "--vae_checkpoint", pipe.vae_ckpt]
    return args + (["--text_encoder", pipe.t5_ckpt, "--tokenizer", pipe.folder] if t5 else [])


def run_args(pipe, out, *extra, t5=True):
    return [str(a) for a in ["-c", "configs/inference/t2v.yaml", *model_args(pipe, t5=t5), "--device_target", "CPU",
                             "--mode", 1, "--image_size", IMAGE_SIZE, "--video_length", FRAMES, "--sampling_steps", 3,
                             "--guidance_scale", 4.5, "--seed", 3, "--output_path", out, *extra]]


def test_prompts_to_videos(pipe, tmp_path):
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text(f"\n{FISH}\n\n")
    out = sample.main(run_args(pipe, tmp_path / "out", "--prompt", CAT, "--prompts_file", prompts_file,
                               "--save_format", "both", "--scheduler", "DPMSolverMultistep", "--fps", 4))
    names = sorted(n for n in os.listdir(out) if not n.endswith(".yaml"))
    assert names == ["000_a_cat_wearing_sunglasses.gif", "000_a_cat_wearing_sunglasses.mp4",
                     "001_yellow_and_black_tropical_fish_dart_through_the_sea.gif",
                     "001_yellow_and_black_tropical_fish_dart_through_the_sea.mp4"]
    cat = iio.imread(os.path.join(out, names[0]), index=None)
    fish = iio.imread(os.path.join(out, names[2]), index=None)
    assert cat.shape[:3] == fish.shape[:3] == (FRAMES, IMAGE_SIZE, IMAGE_SIZE)
    assert iio.imread(os.path.join(out, names[1]), index=None).shape[0] == FRAMES
    assert not np.array_equal(cat, fish)  # other prompt, other noise
    assert cat.std() > 1  # not a flat image


def test_text_embeddings_replace_the_text_encoder(pipe, tmp_path):
    """video_length 1 writes a PNG (lossless), so the two routes can be compared exactly."""
    embeddings = str(tmp_path / "prompts.npz")
    assert text_embeddings.main(model_args(pipe)[4:] + ["--prompt", CAT, "--output", embeddings,
                                                        "--device_target", "CPU", "--mode", "1"]) == 0
    assert text_embeddings.main(model_args(pipe)[4:] + ["--prompt", FISH, "--output", embeddings,
                                                        "--device_target", "CPU", "--mode", "1"]) == 0  # appended
    stored = np.load(embeddings)
    assert list(stored["texts"]) == [CAT, "", FISH] and stored["states"].shape[:2] == (3, 120)

    image = ["--prompt", CAT, "--video_length", 1, "--num_samples_per_prompt", 2]
    with_t5 = sample.main(run_args(pipe, tmp_path / "t5", *image))
    without = sample.main(run_args(pipe, tmp_path / "npz", *image, "--text_encoder", "", "--text_embeddings",
                                   embeddings, t5=False))
    names = sorted(n for n in os.listdir(with_t5) if n.endswith(".png"))
    assert names == ["000_a_cat_wearing_sunglasses_0.png", "000_a_cat_wearing_sunglasses_1.png"]
    for name in names:
        a, b = iio.imread(os.path.join(with_t5, name)), iio.imread(os.path.join(without, name))
        assert a.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        np.testing.assert_array_equal(a, b)
    first, second = (iio.imread(os.path.join(with_t5, n)) for n in names)
    assert not np.array_equal(first, second)  # each sample its own noise


def config_error(pipe, tmp_path, *extra, t5=True):
    argv = run_args(pipe, tmp_path, *extra, t5=t5)
    with pytest.raises(ConfigError) as err:
        load_config(sample_config_class(argv), argv)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_wrong_combinations_are_one_line_errors(pipe, tmp_path):
    argv = run_args(pipe, tmp_path, "--prompt", CAT)
    assert sample_config_class(argv) is TextToVideoSampleConfig
    assert load_config(TextToVideoSampleConfig, argv).prompts() == [CAT]
    assert "no prompts" in config_error(pipe, tmp_path)
    assert "text_encoder is empty" in config_error(pipe, tmp_path, "--prompt", CAT, "--text_encoder", "", t5=False)
    assert "tokenizer is empty" in config_error(pipe, tmp_path, "--prompt", CAT, "--tokenizer", "")
    assert "video_length <= 4" in config_error(pipe, tmp_path, "--prompt", CAT, "--video_length", 16)
    assert "multiples of 4" in config_error(pipe, tmp_path, "--prompt", CAT, "--image_size", 18)
    assert "option of scheduler ddim" in config_error(pipe, tmp_path, "--prompt", CAT, "--scheduler", "euler",
                                                      "--ddim_eta", 0.5)
    assert "not found" in config_error(pipe, tmp_path, "--prompt", CAT, "--text_embeddings", tmp_path / "no.npz")
    assert "unknown config key 'num_frames'" in config_error(pipe, tmp_path, "--prompt", CAT, "--num_frames", 4)
    # a class / unconditional checkpoint keeps sample.py's other keys; text-to-video keys are refused for it
    other = tmp_path / "class.ckpt"
    other.write_bytes(b"")
    (tmp_path / "class.ckpt.json").write_text('{"kind": "latte"}')
    assert sample_config_class(["--checkpoint", str(other)]) is SampleConfig
    with pytest.raises(ConfigError, match="'prompt' is a text-to-video key .* kind='latte'"):
        sample_config_class(["--checkpoint", str(other), "--prompt", CAT])


def test_prompt_missing_from_embeddings_file(pipe, tmp_path):
    from latte.text.embeddings import save_text_embeddings

    path = str(tmp_path / "one.npz")
    save_text_embeddings(path, [CAT], np.zeros((1, 120, 24), np.float32), np.ones((1, 120), np.int32))
    message = config_error(pipe, tmp_path, "--prompt", CAT, "--text_embeddings", path)
    assert "holds no embeddings for ''" in message  # the negative prompt of guidance
    argv = run_args(pipe, tmp_path, "--prompt", CAT, "--text_embeddings", path, "--guidance_scale", 1)
    assert load_config(TextToVideoSampleConfig, argv).text_embeddings == path  # no guidance: no negative needed
