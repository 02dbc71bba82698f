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
    `captions[caption_id]` as LattePipeline tokenizes a prompt (lower-cased, stripped, </s>, padded). Joint
    training's caption_id (B, 1 + n) (the clip's, then each image's) gives (B, 1 + n, max_length)."""

    def __init__(self, tokenizer, captions, max_length):
        self.tokenizer = tokenizer
        self.captions = [preprocess_prompt(c) for c in captions]
        self.max_length = max_length

    def __call__(self, caption_id):
        caption_id = np.asarray(caption_id)
        ids, mask = self.tokenizer([self.captions[int(i)] for i in caption_id.reshape(-1)],
                                   self.max_length)  # (B*(1+n), L) each
        shape = caption_id.shape + (self.max_length,)  # (B, L) or (B, 1+n, L)
        return ids.astype(np.int32).reshape(shape), mask.astype(np.int32).reshape(shape)


def null_caption(tokenizer, text_encoder, max_length):
    """(states (1, L, D) float32, mask (1, L) int32) of the empty caption: what a dropped caption becomes."""
    from latte.text_to_video import encode_texts

    return encode_texts(tokenizer, text_encoder, [NULL_CAPTION], max_length)


class CaptionConditioned(nn.Cell):
    """A LatteT2V as the diffusion calls its model: (x, t, y) with y = (caption states (B, L, D), mask (B, L)),
    or in joint training ((B, 1+n, L, D), (B, 1+n, L)): the clip's caption, then each image's."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x, t, y):
        states, mask = y
        return self.net(x, t, states, mask)  # (B, F, C, h, w) -> (B, F, out_channels, h, w)


class LatteT2VTrainLoss(nn.Cell):
    """construct(x, t, noise, latent_noise, drop, text, text_mask, image_drop=None) -> (loss, mse, vb), batch means.

    x: frames (B, F, 3, H, W) in [-1, 1] encoded here when `encoder` (a LatentEncoder) is given, else scaled
    latents (B, F, C, h, w) (embedding cache, pixel space). text: T5 token ids (B, L) int32 when `text_encoder`
    is given (T5 runs frozen here, behind stop_gradient; its parameters are in no optimizer), else T5 states
    (B, L, D) from a cache. text_mask (B, L): 1 on caption tokens. drop (B,): 1 replaces the sample's states and
    mask by the null caption `null` = (states (1, L, D), mask (1, L)) (null_caption).

    Image-video joint training (n images after the F clip frames, x (B, F + n, ...)): text (B, 1 + n, L) ids or
    (B, 1 + n, L, D) states and text_mask (B, 1 + n, L), the clip's caption then each image's; drop (B,) drops
    the clip's caption, image_drop (B,) the n images' captions of a sample together (training.joint
    ImageConditionDrop, as the official drops the images' labels). The loss covers all F + n frames.
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

    def encode(self, text, text_mask):
        """T5 states float32 of ids (..., L) when T5 runs in the step, else the cached states (..., L, D)."""
        if self.text_encoder is not None:
            lead, length = text.shape[:-1], text.shape[-1]
            states = self.text_encoder(text.reshape(-1, length), text_mask.reshape(-1, length))  # (N, L, D)
            text = ops.stop_gradient(states).reshape(lead + states.shape[-2:])  # (N, L, D) -> (..., L, D)
        return text.astype(ms.float32)

    def captions(self, text, text_mask, drop, image_drop=None):
        """(states float32, mask int32) with the dropped captions replaced by the null caption: (B, L, D), (B, L);
        joint ((B, 1+n, L, D), (B, 1+n, L)) with drop on the clip's caption and image_drop on the images'."""
        states, mask = self.encode(text, text_mask), text_mask.astype(ms.int32)
        if image_drop is None:
            dropped = drop.reshape(-1, 1) == 1  # (B,) -> (B, 1)
        else:
            images = text_mask.shape[1] - 1
            dropped = ops.cat([drop.reshape(-1, 1), ops.tile(image_drop.reshape(-1, 1), (1, images))], axis=1)
            dropped = dropped.expand_dims(-1) == 1  # (B, 1) + (B, n) -> (B, 1+n) -> (B, 1+n, 1)
        mask = ops.where(dropped, self.null_mask, mask)  # (B, L) or (B, 1+n, L)
        states = ops.where(dropped.expand_dims(-1), self.null_states, states)  # (..., 1, 1) -> (..., L, D)
        return states, mask

    def construct(self, x, t, noise, latent_noise, drop, text, text_mask, image_drop=None):
        if self.encoder is not None:
            x = self.encoder(x, latent_noise)
        return self.diffusion_loss(x, self.captions(text, text_mask, drop, image_drop), t, noise)
