"""Image-video joint training of a class-conditional Latte (the paper's Latte+IMG, official train_with_img.py),
and the images' condition dropout that text models share (their loss: latte.training.text_loss).

The batch's "video" holds F clip frames then n images (latte.data.joint_images); the model gets them as one
(B, F + n, ...) input, the diffusion loss covers all F + n frames (the official training_losses on the
concatenation: one timestep per sample, every frame's noise and vb), and each image keeps its own label.
Label dropout as the official: the clip's label with StepNoise's `drop`, the n image labels of a sample
together with one more draw, `image_drop` (ImageConditionDrop). An unconditional model needs none of this: plain
LatteTrainLoss on the (B, F + n, ...) input is the joint loss.
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops

from latte.random_streams import Stream
from latte.training.loss import LatteTrainLoss

IMAGE_DROP_COLUMN = "image_drop"  # ImageConditionDrop's draw: a joint batch's images lose their label / caption
IMAGE_COLUMNS = ("image_labels", IMAGE_DROP_COLUMN)  # what a joint class batch adds after "label"


class ImageConditionDrop:
    """Dataset map: image_labels (B, n) -> (image_labels, image_drop (B,) int32), image_drop 1 with probability
    drop_prob (class_dropout_prob); a text model's caption column (B, 1 + n, ...) passes through the same way,
    image_drop then dropping the n images' captions (caption_dropout_prob). Sample k of rank r is global
    sample g = k * num_ranks + r as in StepNoise and draws from numpy's generator seeded (seed,
    Stream.TRAIN_IMAGE_DROP, g): resume, accumulation and data parallelism draw what one uninterrupted process
    with the global batch draws. Batches in order (one worker)."""

    def __init__(self, seed, rank, start_step, batch_size, drop_prob, num_ranks=1):
        self.seed, self.rank, self.num_ranks = seed, rank, num_ranks
        self.sample = start_step * batch_size  # samples of this rank already drawn
        self.drop_prob = drop_prob

    def draw(self, sample):
        rng = np.random.default_rng([self.seed, Stream.TRAIN_IMAGE_DROP, sample * self.num_ranks + self.rank])
        return np.int32(rng.random(dtype=np.float32) < self.drop_prob)

    def __call__(self, conditions):
        drop = np.stack([self.draw(self.sample + i) for i in range(conditions.shape[0])])  # (B,)
        self.sample += conditions.shape[0]
        return conditions, drop


class JointLabels(nn.Cell):
    """A Latte called as the diffusion loss calls a class model, model(x, t, y, force_drop_ids=...), with the
    images' labels packed in: y (B, 1 + n) = the clip's label then the images', force_drop_ids (B, 2) = the
    clip's drop then the images'."""

    def __init__(self, latte):
        super().__init__(auto_prefix=False)  # parameter names stay the model's
        self.latte = latte

    def construct(self, x, t, y, force_drop_ids=None):
        return self.latte(x, t, y[:, 0], force_drop_ids=force_drop_ids[:, 0], image_labels=y[:, 1:],
                          image_drop_ids=force_drop_ids[:, 1])


class JointClassTrainLoss(LatteTrainLoss):
    """construct(x, t, noise, latent_noise, drop, y, image_labels, image_drop) -> (loss, mse, vb), batch means:
    LatteTrainLoss of a class-conditional Latte on clips followed by labelled images."""

    def __init__(self, latte, diffusion, vae=None, scale_factor=1.0, vae_micro_batch=8):
        super().__init__(JointLabels(latte), diffusion, vae, scale_factor, vae_micro_batch, condition="class")

    def construct(self, x, t, noise, latent_noise, drop, y=None, image_labels=None, image_drop=None):
        if self.encoder is not None:
            x = self.encoder(x, latent_noise)  # (B, F+n, 3, H, W) -> (B, F+n, C, h, w)
        labels = ops.cat([y.reshape(-1, 1), image_labels], axis=1).astype(ms.int32)  # (B,), (B, n) -> (B, 1+n)
        drops = ops.stack([drop, image_drop], axis=1)  # 2 x (B,) -> (B, 2)
        return self.diffusion_loss(x, labels, t, noise, drops)
