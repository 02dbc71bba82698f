"""A whole diffusers LattePipeline run against latte.text_to_video on the same tiny random Latte-1 pipeline.

The pipeline folder (tests/t2v_support.py: every weight re-drawn) is converted by the tools; LattePipeline runs
the torch components, ours the converted ones, from the same prompt and the same starting latents, with Latte-1's
DDIM config and with DPM-Solver++ built from it, guidance 4.5, output_type="latent". The final latents agree
within 1e-4 relative L2; the prompt embeddings of one prompt (cut to its tokens) and of two (padding zeroed) are
LattePipeline.encode_prompt's; our temporal VAE decodes the final latents as LattePipeline.decode_latents.
"""
import numpy as np
import pytest

from tests.t2v_support import CHANNELS, FRAMES, IMAGE_SIZE, LATENT, diffusers, tiny_pipeline, torch

import mindspore as ms  # noqa: E402
from latte.models import load_latte, load_t5  # noqa: E402
from latte.models.vae import decode_video, load_vae  # noqa: E402
from latte.text.tokenizer import T5Tokenizer  # noqa: E402
from latte.text_to_video import (TextGuidedDenoiser, create_sampling_scheduler, encode_prompts,  # noqa: E402
                                 keeps_variance, sample_text_to_video)

STEPS = 6
GUIDANCE = 4.5
PARITY = 1e-4  # relative L2 of the final latents
EMBED_TOL = 2e-5  # max abs of the T5 embeddings (tests/test_t5.py's bound)
DECODE_TOL = 5e-5  # max abs of the decoded frames (tests/test_vae_temporal.py's bound)
PROMPTS = ["A cat wearing sunglasses and working as a lifeguard at a pool.",
           "Yellow and black tropical fish dart through the sea."]
DIFFUSERS_SCHEDULERS = {"ddim": diffusers.DDIMScheduler, "dpmsolver++": diffusers.DPMSolverMultistepScheduler}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    ms.set_context(mode=ms.PYNATIVE_MODE)  # the denoiser is compiled (@ms.jit) either way
    return tiny_pipeline(tmp_path_factory.mktemp("t2v_pipeline"))


@pytest.fixture(scope="module")
def ours(pipe):
    """(tokenizer, T5, LatteT2V) from the converted files."""
    return T5Tokenizer(pipe.folder), load_t5(pipe.t5_ckpt), load_latte(pipe.latte_ckpt)


def starting_latents(batch, seed=7):
    """Unit noise in our layout (B, F, C, h, w)."""
    return np.random.default_rng(seed).standard_normal((batch, FRAMES, CHANNELS, LATENT, LATENT)).astype(np.float32)


def to_diffusers_layout(x):
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))  # (B, F, C, h, w) <-> (B, C, F, h, w)


def diffusers_latents(pipe, scheduler_name, prompt, noise):
    folder_config = diffusers.DDIMScheduler.load_config(f"{pipe.folder}/scheduler")
    scheduler = DIFFUSERS_SCHEDULERS[scheduler_name].from_config(folder_config)
    with torch.no_grad():
        out = pipe.diffusers_pipeline(scheduler)(
            prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, video_length=FRAMES, height=IMAGE_SIZE,
            width=IMAGE_SIZE, latents=torch.from_numpy(to_diffusers_layout(noise)), output_type="latent",
            clean_caption=False, mask_feature=True, enable_temporal_attentions=True).frames
    return to_diffusers_layout(out.numpy())


def our_latents(pipe, ours, scheduler_name, prompt, noise):
    tokenizer, t5, latte = ours
    embeds, negative = encode_prompts(tokenizer, t5, prompt)
    scheduler = create_sampling_scheduler(scheduler_name, f"{pipe.folder}/scheduler")
    denoiser = TextGuidedDenoiser(latte, GUIDANCE, keep_variance=keeps_variance(scheduler))
    return sample_text_to_video(denoiser, noise, embeds, negative, scheduler, STEPS, progress=False).asnumpy()


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


CASES = {
    "one prompt, DDIM (Latte-1 config)": ("ddim", PROMPTS[0]),
    "one prompt, DPM-Solver++": ("dpmsolver++", PROMPTS[0]),
    "two prompts, DDIM": ("ddim", PROMPTS),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pipeline_run_matches_diffusers(pipe, ours, case):
    scheduler_name, prompt = CASES[case]
    noise = starting_latents(1 if isinstance(prompt, str) else len(prompt))
    want = diffusers_latents(pipe, scheduler_name, prompt, noise)
    got = our_latents(pipe, ours, scheduler_name, prompt, noise)
    assert got.shape == want.shape == noise.shape
    moved = rel_l2(want, noise)
    error = rel_l2(got, want)
    print(f"{case}: relative L2 {error:.2e} (max abs {np.abs(got - want).max():.2e}; the run moved the latents "
          f"by {moved:.2f} relative)")
    assert moved > 0.1, "the sampling run should change the latents for the comparison to mean anything"
    assert error <= PARITY


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["one prompt: cut", "two prompts: zeroed"])
def test_prompt_embeddings_are_encode_prompts(pipe, ours, prompts):
    """mask_feature's two branches, against LattePipeline.encode_prompt on the torch T5."""
    tokenizer, t5, _ = ours
    with torch.no_grad():
        want, want_negative = pipe.diffusers_pipeline(diffusers.DDIMScheduler()).encode_prompt(
            prompts if len(prompts) > 1 else prompts[0], True, negative_prompt="", device="cpu",
            clean_caption=False, mask_feature=True)
    got, got_negative = encode_prompts(tokenizer, t5, prompts if len(prompts) > 1 else prompts[0])
    assert got.shape == tuple(want.shape) and got_negative.shape == tuple(want_negative.shape)
    if len(prompts) == 1:
        assert got.shape[1] < 120  # cut to the prompt's tokens
    else:
        assert got.shape[1] == 120 and not got[:, -1].any()  # padding zeroed
    errors = np.abs(got - want.numpy()).max(), np.abs(got_negative - want_negative.numpy()).max()
    print(f"{len(prompts)} prompt(s): embeddings max abs {errors[0]:.2e}, negative {errors[1]:.2e}")
    assert max(errors) <= EMBED_TOL


def test_decoded_frames_match_decode_latents(pipe):
    """Our temporal VAE with LattePipeline's 14-frame chunks (decode_chunk_size=14) on two videos."""
    latents = starting_latents(2, seed=9)
    with torch.no_grad():
        want = pipe.diffusers_pipeline(diffusers.DDIMScheduler()).decode_latents(
            torch.from_numpy(to_diffusers_layout(latents)), FRAMES, decode_chunk_size=14)  # (B, 3, F, H, W)
    got = decode_video(load_vae(pipe.vae_ckpt), latents, decode_chunk_size=14).asnumpy()  # (B, F, 3, H, W)
    error = np.abs(got - to_diffusers_layout(want.numpy())).max()
    print(f"decode_latents (14-frame chunks): max abs {error:.2e}")
    assert error <= DECODE_TOL
