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
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.diffusion.scheduler_loop import scheduler_sample_loop
from latte.diffusion.schedulers.ddpm import LEARNED_VARIANCE_TYPES


def encode_prompts(tokenizer, text_encoder, prompts, negative_prompt="", guidance=True, mask_feature=True):
    """Prompts -> (prompt_embeds (B, L, D), negative_embeds (B, L, D) or None), float32 numpy.

    tokenizer: latte.text.tokenizer.T5Tokenizer (or any callable texts -> (ids, mask)); text_encoder: a callable
    (ids Tensor, mask Tensor) -> (B, 120, D) Tensor, e.g. latte.models.load_t5(...). L is 120, or the prompt's
    token count when there is one prompt and mask_feature is on.
    """
    from latte.text.tokenizer import preprocess_prompt

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    ids, mask = tokenizer([preprocess_prompt(p) for p in prompts])  # (B, 120) each
    embeds = _encode(text_encoder, ids, mask)
    negative = None
    if guidance:
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts: give one string, "
                             "or one per prompt")
        neg_ids, neg_mask = tokenizer([preprocess_prompt(p) for p in negatives], ids.shape[1])
        negative = _encode(text_encoder, neg_ids, neg_mask)
    if mask_feature:
        embeds, negative = mask_text_embeddings(embeds, mask, negative)
    return embeds, negative


def _encode(text_encoder, ids, mask):
    return text_encoder(Tensor(ids.astype(np.int32)), Tensor(mask.astype(np.int32))).asnumpy().astype(np.float32)


def mask_text_embeddings(embeds, mask, negative=None):
    """LattePipeline's mask_feature: one prompt -> both cut to its token count; several -> padding zeroed."""
    if embeds.shape[0] == 1:
        keep = int(mask.sum())
        return embeds[:, :keep], None if negative is None else negative[:, :keep]
    return embeds * mask[:, :, None].astype(embeds.dtype), negative


class TextGuidedDenoiser(nn.Cell):
    """(x (B, F, C, h, w), t (B,), text (2B or B, L, D)) -> the noise prediction for the scheduler's step.

    With guidance_scale > 1, `text` is [negative; prompt] and the model runs once on the doubled batch.
    keep_variance: return all 2C channels (DDPM with a learned variance type), else the first C.
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
        if not self.keep_variance:
            out = out[:, :, : out.shape[2] // 2]  # (B, F, 2C, h, w) -> (B, F, C, h, w): eps
        return out


def keeps_variance(scheduler):
    """Whether the scheduler's step reads the model's variance channels (LattePipeline's learned-sigma rule)."""
    return scheduler.config.get("variance_type") in LEARNED_VARIANCE_TYPES


def sample_text_to_video(denoiser, noise, prompt_embeds, negative_embeds, scheduler, num_inference_steps, seed=0,
                         progress=True, step_times=None):
    """Denoise unit-variance `noise` (B, F, C, h, w) for the prompts; returns the final latents (Tensor).

    negative_embeds is required when the denoiser guides (guidance_scale > 1) and ignored otherwise.
    """
    if denoiser.guided:
        if negative_embeds is None:
            raise ValueError("guidance_scale > 1 needs negative prompt embeddings (encode_prompts(guidance=True))")
        text = np.concatenate([negative_embeds, prompt_embeds], axis=0)  # (2B, L, D): [negative; prompt]
    else:
        text = prompt_embeds
    text = Tensor(np.asarray(text, np.float32))
    return scheduler_sample_loop(lambda x, t: denoiser(x, t, text), noise, scheduler, num_inference_steps,
                                 seed=seed, progress=progress, step_times=step_times, desc="text-to-video")
