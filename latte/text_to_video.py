"""Latte-1 text-to-video sampling with diffusers' LattePipeline semantics, in MindSpore.

    prompt_embeds, negative_embeds = encode_prompts(tokenizer, t5, prompts)     # numpy, LattePipeline.encode_prompt
    denoiser = TextGuidedDenoiser(latte, guidance_scale=7.5)                     # one compiled graph per shape
    latents = sample_text_to_video(denoiser, noise, prompt_embeds, negative_embeds, scheduler, 50, seed=0)

What LattePipeline does, and so this module:
- prompts are tokenized to 120 T5 tokens (pad + mask) and the negative prompt ("" by default) to the same length;
- mask_feature: one prompt -> its embeddings and the negative's are cut to the prompt's token count; several
  prompts -> the padded positions of the prompts' embeddings are zeroed (the negative's are left as T5 gives
  them); the transformer gets no attention mask;
- guidance: the batch is [negative; prompt], eps = uncond + s * (text - uncond) on all output channels, then the
  learned-sigma half is dropped unless the scheduler uses it (DDPM with variance_type learned / learned_range);
- the starting noise is scaled by the scheduler's init_noise_sigma (scheduler_sample_loop).
Layout: latents (B, F, C, h, w) as everywhere in latte-ms (LattePipeline's are (B, C, F, h, w)).

The T5 states of the prompts can be computed once and stored (tools/text_embeddings.py, latte.text.embeddings):
prompt_embeddings_from then does with the stored (states, mask) pairs exactly what encode_prompts does with T5.
"""
import functools
import json
import os

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.diffusion.scheduler_loop import scheduler_sample_loop
from latte.diffusion.schedulers import LATTE1_SCHEDULER_CONFIG, create_text_scheduler
from latte.diffusion.schedulers.ddpm import LEARNED_VARIANCE_TYPES
from latte.text.tokenizer import MAX_LENGTH, preprocess_prompt

SCHEDULER_CONFIG_FILE = "scheduler_config.json"  # diffusers' name; a pipeline folder keeps it in scheduler/
SCHEDULER_FOLDER = "scheduler"


# ---------------------------------------------------------------------------------------------------------
# Prompts -> T5 states (LattePipeline.encode_prompt)
# ---------------------------------------------------------------------------------------------------------

def encode_texts(tokenizer, text_encoder, texts, max_length=MAX_LENGTH):
    """Texts -> (T5 states (N, max_length, D) float32, mask (N, max_length) int32), as LattePipeline tokenizes
    and encodes them (lower-cased and stripped, padded to max_length); no mask_feature yet."""
    ids, mask = tokenizer([preprocess_prompt(t) for t in texts], max_length)  # (N, L) each
    states = text_encoder(Tensor(ids.astype(np.int32)), Tensor(mask.astype(np.int32)))  # (N, L, D)
    return states.asnumpy().astype(np.float32), mask.astype(np.int32)


def prepare_prompt_embeddings(embeds, mask, negative_embeds=None, mask_feature=True):
    """LattePipeline's embeddings from the T5 states of the prompts (N, 120, D) with their masks (N, 120) and of
    the negative prompts (N, 120, D) or None: (prompt_embeds, negative_embeds), mask_feature applied."""
    if negative_embeds is not None and negative_embeds.shape != embeds.shape:
        raise ValueError(f"negative prompt embeddings {negative_embeds.shape} do not match the prompts' "
                         f"{embeds.shape}: encode both to the same number of tokens")
    if mask_feature:
        return mask_text_embeddings(embeds, mask, negative_embeds)
    return embeds, negative_embeds


def encode_prompts(tokenizer, text_encoder, prompts, negative_prompt="", guidance=True, mask_feature=True):
    """Prompts -> (prompt_embeds (B, L, D), negative_embeds (B, L, D) or None), float32 numpy.

    tokenizer: latte.text.tokenizer.T5Tokenizer (or any callable (texts, max_length) -> (ids, mask)); text_encoder:
    a callable (ids Tensor, mask Tensor) -> (B, 120, D) Tensor, e.g. latte.models.load_t5(...). L is 120, or the
    prompt's token count when there is one prompt and mask_feature is on.
    """
    source = functools.partial(encode_texts, tokenizer, text_encoder)
    return prompt_embeddings_from(source, prompts, negative_prompt, guidance, mask_feature)


def prompt_embeddings_from(source, prompts, negative_prompt="", guidance=True, mask_feature=True):
    """encode_prompts with the T5 states from `source`, texts -> (states (N, 120, D), mask (N, 120)): the text
    encoder (functools.partial(encode_texts, tokenizer, text_encoder)) or a text embeddings file
    (latte.text.embeddings.TextEmbeddings)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    embeds, mask = source(prompts)
    negative = source(negative_prompts(negative_prompt, len(prompts)))[0] if guidance else None
    return prepare_prompt_embeddings(embeds, mask, negative, mask_feature)


def negative_prompts(negative_prompt, count):
    """One negative prompt per prompt: a string is repeated, a list must have `count` entries."""
    if isinstance(negative_prompt, str):
        return [negative_prompt] * count
    if len(negative_prompt) != count:
        raise ValueError(f"{len(negative_prompt)} negative prompts for {count} prompts: give one string, "
                         "or one per prompt")
    return list(negative_prompt)


def mask_text_embeddings(embeds, mask, negative=None):
    """LattePipeline's mask_feature: one prompt -> both cut to its token count; several -> padding zeroed."""
    if embeds.shape[0] == 1:
        keep = int(mask.sum())
        return embeds[:, :keep], None if negative is None else negative[:, :keep]
    return embeds * mask[:, :, None].astype(embeds.dtype), negative


# ---------------------------------------------------------------------------------------------------------
# Scheduler
# ---------------------------------------------------------------------------------------------------------

def read_scheduler_config(path=""):
    """A diffusers scheduler config: a scheduler_config.json, a folder holding one, or a pipeline folder with
    scheduler/scheduler_config.json; empty: Latte-1's (LATTE1_SCHEDULER_CONFIG)."""
    if not path:
        return dict(LATTE1_SCHEDULER_CONFIG)
    for candidate in (path, os.path.join(path, SCHEDULER_CONFIG_FILE),
                      os.path.join(path, SCHEDULER_FOLDER, SCHEDULER_CONFIG_FILE)):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                try:
                    return json.load(f)
                except json.JSONDecodeError as err:
                    raise ValueError(f"scheduler_config {candidate}: not valid JSON ({err})") from None
    raise FileNotFoundError(f"scheduler_config {path!r}: no {SCHEDULER_CONFIG_FILE} there; give the file, its "
                            f"folder or the pipeline folder (or leave it empty for Latte-1's DDIM config)")


def create_sampling_scheduler(name, config_path="", eta=0.0, config_overrides=None):
    """The text-to-video scheduler `name` from a scheduler config (read_scheduler_config), as the official
    sample_t2x.py builds every scheduler from the pipeline's DDIM config; eta for DDIM; config_overrides: config
    keys that replace the file's (a trained model's beta schedule and prediction type)."""
    overrides = dict(config_overrides or {}, **({"eta": eta} if eta else {}))
    return create_text_scheduler(name, read_scheduler_config(config_path), **overrides)


# ---------------------------------------------------------------------------------------------------------
# Denoising
# ---------------------------------------------------------------------------------------------------------

class TextGuidedDenoiser(nn.Cell):
    """(x (B, F, C, h, w), t (B,), text (2B or B, L, D)) -> the noise prediction for the scheduler's step.

    With guidance_scale > 1, `text` is [negative; prompt] and the model runs once on the doubled batch.
    keep_variance: return all 2C channels (DDPM with a learned variance type), else the first C (a model that
    outputs C channels, without learned sigma, is returned whole).
    """

    def __init__(self, transformer, guidance_scale=7.5, enable_temporal_attentions=True, keep_variance=False):
        super().__init__()
        self.transformer = transformer
        self.guidance_scale = float(guidance_scale)
        self.guided = self.guidance_scale > 1.0
        self.enable_temporal_attentions = bool(enable_temporal_attentions)
        self.keep_variance = bool(keep_variance)

    @ms.jit
    def construct(self, x, t, text):
        if self.guided:
            x = ops.cat([x, x], axis=0)  # (2B, F, C, h, w): [for the negative; for the prompt]
            t = ops.cat([t, t], axis=0)
        out = self.transformer(x, t, encoder_hidden_states=text,
                               enable_temporal_attentions=self.enable_temporal_attentions)  # (., F, 2C, h, w)
        if self.guided:
            uncond, cond = ops.split(out, out.shape[0] // 2, axis=0)
            out = uncond + self.guidance_scale * (cond - uncond)
        if not self.keep_variance and out.shape[2] == 2 * x.shape[2]:  # a model without learned sigma has C
            out = out[:, :, : x.shape[2]]  # (B, F, 2C, h, w) -> (B, F, C, h, w): eps
        return out


def keeps_variance(scheduler):
    """Whether the scheduler's step reads the model's variance channels (LattePipeline's learned-sigma rule)."""
    return scheduler.config.get("variance_type") in LEARNED_VARIANCE_TYPES


def sample_text_to_video(denoiser, noise, prompt_embeds, negative_embeds, scheduler, num_inference_steps, seed=0,
                         progress=True, step_times=None, noise_position=()):
    """Denoise unit-variance `noise` (B, F, C, h, w) for the prompts; returns the final latents (Tensor).

    negative_embeds is required when the denoiser guides (guidance_scale > 1) and ignored otherwise.
    seed, noise_position: the per-step noise stream of stochastic schedulers (scheduler_sample_loop).
    """
    if denoiser.guided:
        if negative_embeds is None:
            raise ValueError("guidance_scale > 1 needs negative prompt embeddings (encode_prompts(guidance=True))")
        text = np.concatenate([negative_embeds, prompt_embeds], axis=0)  # (2B, L, D): [negative; prompt]
    else:
        text = prompt_embeds
    text = Tensor(np.asarray(text, np.float32))
    return scheduler_sample_loop(lambda x, t: denoiser(x, t, text), noise, scheduler, num_inference_steps,
                                 seed=seed, progress=progress, step_times=step_times, desc="text-to-video",
                                 noise_position=noise_position)
