"""sample.py text-to-video in pixel space (no VAE: a LatteT2V on RGB frames in [-1, 1], the demo's setup) with the
built-in 'demo' text encoder: the written image equals the pipeline run by hand (a 3-channel model, no learned
sigma); a learned-sigma model writes its video; a latent model without its VAE is a one-line error."""
import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

import sample
from latte.checkpoint_io import save_ms_checkpoint
from latte.config import ConfigError, load_config
from latte.models.registry import KIND_T2V, t2v_spec
from latte.t2v_options import TextToVideoSampleConfig
from latte.random_streams import Stream
from latte.text.demo import DEMO_T5

SIZE, FRAMES, SEED, STEPS, GUIDANCE, SCALE = 8, 4, 3, 2, 3.0, 2
PROMPT = "a red square moving left"


def tiny_pixel_model(path, out_channels):
    """A LatteT2V on 3-channel 8x8 frames taking the demo T5's states, every weight drawn, saved with its record."""
    from mindspore.nn.utils import no_init_parameters

    from latte.models.latte_t2v import LatteT2V

    config = dict(t2v_spec("Latte-1-T"), in_channels=3, out_channels=out_channels,
                  caption_channels=DEMO_T5["d_model"], sample_size=SIZE, video_length=FRAMES)
    with no_init_parameters():
        net = LatteT2V(**config)
    rng = np.random.default_rng(out_channels)
    params = {name: (rng.standard_normal(p.shape) * 0.2).astype(np.float32) for name, p in net.parameters_and_names()}
    save_ms_checkpoint(params, str(path), {"kind": KIND_T2V, "config": config})
    return str(path)


def args(ckpt, out, *extra):
    return [str(a) for a in ["--checkpoint", ckpt, "--vae_checkpoint", "", "--text_encoder", "demo", "--tokenizer",
                             "demo", "--prompt", PROMPT, "--device_target", "CPU", "--mode", 1, "--image_size", SIZE,
                             "--sampling_steps", STEPS, "--guidance_scale", GUIDANCE, "--seed", SEED,
                             "--scheduler", "ddim", "--display_scale", SCALE, "--output_path", out, *extra]]


def by_hand(ckpt, video_length):
    """The pipeline's pieces called directly: demo T5 -> guided DDIM on pixels -> uint8 frames (F, H, W, 3)."""
    from latte.io import video_to_uint8
    from latte.models import load_latte, load_t5
    from latte.text.demo import resolve_text_encoder
    from latte.text.tokenizer import T5Tokenizer
    from latte.text_to_video import (TextGuidedDenoiser, create_sampling_scheduler, encode_prompts,
                                     sample_text_to_video)

    t5_ckpt, tokenizer = resolve_text_encoder("demo")
    embeds, negative = encode_prompts(T5Tokenizer(tokenizer), load_t5(t5_ckpt), [PROMPT])
    denoiser = TextGuidedDenoiser(load_latte(ckpt, latent_size=SIZE), GUIDANCE)
    rng = np.random.default_rng([SEED, Stream.T2V_LATENTS, 0, 0])
    noise = rng.standard_normal((1, video_length, 3, SIZE, SIZE), dtype=np.float32)
    latents = sample_text_to_video(denoiser, noise, embeds, negative, create_sampling_scheduler("ddim"), STEPS,
                                   seed=SEED, progress=False)
    return video_to_uint8(latents.asnumpy())[0]


@pytest.fixture(autouse=True)
def demo_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


def test_pixel_space_image_equals_the_pipeline_by_hand(tmp_path):
    ckpt = tiny_pixel_model(tmp_path / "t2v.ckpt", 3)  # fixed variance: the demo's model outputs 3 channels
    out = sample.main(args(ckpt, tmp_path / "out", "--video_length", 1))
    image = iio.imread(os.path.join(out, "000_a_red_square_moving_left.png"))
    assert image.shape == (SIZE * SCALE, SIZE * SCALE, 3)
    expected = np.repeat(np.repeat(by_hand(ckpt, 1)[0], SCALE, axis=0), SCALE, axis=1)
    np.testing.assert_array_equal(image, expected)
    assert image.std() > 1


def test_pixel_space_video_of_a_learned_sigma_model(tmp_path):
    ckpt = tiny_pixel_model(tmp_path / "t2v.ckpt", 6)  # Latte-1's layout: 2 x 3 output channels
    out = sample.main(args(ckpt, tmp_path / "out", "--video_length", FRAMES, "--save_format", "gif"))
    video = iio.imread(os.path.join(out, "000_a_red_square_moving_left.gif"), index=None)
    assert video.shape[1:3] == (SIZE * SCALE, SIZE * SCALE) and 1 <= video.shape[0] <= FRAMES
    assert video.std() > 1


def test_latent_model_without_vae_is_an_error(tmp_path):
    ckpt = tmp_path / "latent.ckpt"
    ckpt.write_bytes(b"")
    (tmp_path / "latent.ckpt.json").write_text(json.dumps({"kind": KIND_T2V, "config": t2v_spec("Latte-1-T")}))
    with pytest.raises(ConfigError) as err:
        load_config(TextToVideoSampleConfig, args(str(ckpt), tmp_path, "--video_length", FRAMES))
    assert "vae_checkpoint is empty (pixel space: 3 channels)" in str(err.value) and "\n" not in str(err.value)


def test_demo_inference_config_reads(tmp_path):
    """configs/inference/demo_t2v.yaml against a checkpoint record of the demo variant: every key known, pixel
    space, the 16 prompts in the caption grammar with each colour and direction four times."""
    from collections import Counter

    from latte.data.shape_captions import parse_shape_caption

    ckpt = tmp_path / "demo.ckpt"
    ckpt.write_bytes(b"")
    (tmp_path / "demo.ckpt.json").write_text(json.dumps({"kind": KIND_T2V, "config": t2v_spec("Latte-1-demo")}))
    cfg = load_config(TextToVideoSampleConfig, ["-c", "configs/inference/demo_t2v.yaml", "--checkpoint", str(ckpt)])
    assert cfg.pixel_space and cfg.latent_channels == 3 and cfg.latent_hw == (16, 16)
    parsed = [parse_shape_caption(p) for p in cfg.prompts()]
    assert len(parsed) == len(set(parsed)) == 16
    assert set(Counter(p.colour for p in parsed).values()) == set(Counter(p.direction for p in parsed).values()) == {4}
