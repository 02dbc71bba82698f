"""Text-to-video training: the LatteT2V loss network, the host-side caption tokens, and the null caption.

    tokens = CaptionTokens(T5Tokenizer(path), info.captions, 120)   # dataset map: caption_id -> ids, mask
    null = null_caption(tokenizer, t5, 120)                          # T5 of "" and its mask, once at build
    loss_net = LatteT2VTrainLoss(latte_t2v, diffusion, null, encoder=LatentEncoder(vae), text_encoder=t5)
    loss, mse, vb = loss_net(x, t, noise, latent_noise, drop, text_ids, text_mask)

The diffusion is the class model's (latte.diffusion.create_diffusion("") with learn_sigma): Latte-1's training
scheduler, diffusers' DDPMScheduler with beta_schedule "linear" (1e-4 .. 0.02 over 1000 steps) and variance_type
"learned_range", has exactly the betas of the 'linear' GaussianDiffusion, and learned_range interpolates the log
variance between the clipped posterior variance and beta_t as LEARNED_RANGE does (tests/test_t2v_train.py
compares both tables with diffusers'); loss = mse(eps) + vb with the eps channels frozen in vb, as the official
training_losses.
"""
import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from latte.diffusion import DiffusionLoss
from latte.text.tokenizer import preprocess_prompt

NULL_CAPTION = ""  # a dropped caption becomes this (LattePipeline's default negative prompt)
TEXT_COLUMNS = ("text_ids", "text_mask")  # T5 runs in the step: token ids and mask from CaptionTokens
CACHED_TEXT_COLUMNS = ("text_states", "text_mask")  # an embedding cache with text: T5's states and mask


class CaptionTokens:
    """Dataset map: caption_id (B,) -> (text_ids, text_mask), each (B, max_length) int32: the caption text
    `captions[caption_id]` as LattePipeline tokenizes a prompt (lower-cased, stripped, </s>, padded)."""

    def __init__(self, tokenizer, captions, max_length):
        self.tokenizer = tokenizer
        self.captions = [preprocess_prompt(c) for c in captions]
        self.max_length = max_length

    def __call__(self, caption_id):
        ids, mask = self.tokenizer([self.captions[int(i)] for i in np.asarray(caption_id).reshape(-1)],
                                   self.max_length)  # (B, L) each
        return ids.astype(np.int32), mask.astype(np.int32)


def null_caption(tokenizer, text_encoder, max_length):
    """(states (1, L, D) float32, mask (1, L) int32) of the empty caption: what a dropped caption becomes."""
    from latte.text_to_video import encode_texts

    return encode_texts(tokenizer, text_encoder, [NULL_CAPTION], max_length)


class CaptionConditioned(nn.Cell):
    """A LatteT2V as the diffusion calls its model: (x, t, y) with y = (caption states (B, L, D), mask (B, L))."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x, t, y):
        states, mask = y
        return self.net(x, t, states, mask)  # (B, F, C, h, w) -> (B, F, out_channels, h, w)


class LatteT2VTrainLoss(nn.Cell):
    """construct(x, t, noise, latent_noise, drop, text, text_mask) -> (loss, mse, vb), batch means.

    x: frames (B, F, 3, H, W) in [-1, 1] encoded here when `encoder` (a LatentEncoder) is given, else scaled
    latents (B, F, C, h, w) (embedding cache, pixel space). text: T5 token ids (B, L) int32 when `text_encoder`
    is given (T5 runs frozen here, behind stop_gradient; its parameters are in no optimizer), else T5 states
    (B, L, D) from a cache. text_mask (B, L): 1 on caption tokens. drop (B,): 1 replaces the sample's states and
    mask by the null caption `null` = (states (1, L, D), mask (1, L)) (null_caption).
    """

    def __init__(self, latte_t2v, diffusion, null, encoder=None, text_encoder=None):
        super().__init__()
        self.diffusion_loss = DiffusionLoss(CaptionConditioned(latte_t2v), diffusion)  # t, noise: StepNoise
        self.encoder = encoder
        self.text_encoder = text_encoder
        if text_encoder is not None:
            for p in text_encoder.get_parameters():
                p.requires_grad = False
        null_states, null_mask = null
        self.null_states = Tensor(np.asarray(null_states, np.float32))  # (1, L, D)
        self.null_mask = Tensor(np.asarray(null_mask, np.int32))  # (1, L)

    def captions(self, text, text_mask, drop):
        """(states (B, L, D) float32, mask (B, L) int32) with the dropped samples' replaced by the null caption."""
        if self.text_encoder is not None:
            text = ops.stop_gradient(self.text_encoder(text, text_mask))  # ids (B, L) -> states (B, L, D)
        states, mask = text.astype(ms.float32), text_mask.astype(ms.int32)
        dropped = drop.reshape(-1, 1) == 1  # (B,) -> (B, 1)
        mask = ops.where(dropped, self.null_mask, mask)  # (B, L)
        states = ops.where(dropped.expand_dims(-1), self.null_states, states)  # (B, 1, 1) -> (B, L, D)
        return states, mask

    def construct(self, x, t, noise, latent_noise, drop, text, text_mask):
        if self.encoder is not None:
            x = self.encoder(x, latent_noise)
        return self.diffusion_loss(x, self.captions(text, text_mask, drop), t, noise)
