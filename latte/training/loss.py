"""The loss network: (frames or cached latents) -> latents -> diffusion loss (loss = mse + vb, with its parts).

All randomness (timesteps, diffusion noise, VAE posterior noise, label or caption dropout) arrives as inputs drawn
on the host from (seed, global sample index) -- see `StepNoise` -- so a resumed run draws exactly what an
uninterrupted run would have drawn, in graph mode as in pynative, with any number of data-parallel ranks.
`LatentEncoder` (the frozen VAE) is shared with the text-to-video loss (latte/training/text_loss.py).
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops

from latte.diffusion import DiffusionLoss
from latte.models.vae_encoder import scaled_posterior_sample
from latte.random_streams import Stream

RANDOM_COLUMNS = ("t", "noise", "latent_noise", "drop")
LOSS_TERMS = ("loss", "mse", "vb")  # what LatteTrainLoss returns (loss = mse + vb), logged by the trainer


class StepNoise:
    """Dataset map: appends the random inputs of every sample to its batch.

    Sample k of rank r (counted from the start of training) is global sample g = k * num_ranks + r, the
    numbering the data shards use (epoch position p goes to rank p % num_ranks), and draws from numpy's
    generator seeded (seed, Stream.TRAIN_STEP, g): its timestep, diffusion noise, VAE posterior noise and
    dropout flag `drop` (1 with probability drop_prob): a class model's label becomes the null id (the official
    `force_drop_ids`, drop_prob = class_dropout_prob), a text model's caption the empty caption (drop_prob =
    caption_dropout_prob); one draw at the same place of the stream serves both. So the draws depend neither on
    how samples are grouped into batches (gradient accumulation sees exactly what a bigger batch sees) nor on how
    many ranks share them (N ranks with batch B see what one process with batch N * B sees), and a resumed
    pipeline (start_step batches already consumed) continues the sequence. Batches must reach it in order (one worker).
    """

    def __init__(self, seed, rank, start_step, batch_size, latent_shape, num_timesteps, sample_latents=True,
                 num_ranks=1, drop_prob=0.0, timestep_power=1.0):
        if not 0 <= rank < num_ranks:
            raise ValueError(f"rank={rank} with num_ranks={num_ranks}: expected 0 <= rank < num_ranks")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob={drop_prob}: expected 0 <= drop_prob < 1 (class_dropout_prob or "
                             "caption_dropout_prob)")
        self.seed, self.rank, self.num_ranks = seed, rank, num_ranks
        self.sample = start_step * batch_size  # samples of this rank already drawn
        self.latent_shape = tuple(latent_shape)  # (F, C, h, w) per sample
        self.num_timesteps = num_timesteps
        self.sample_latents = sample_latents
        self.drop_prob = drop_prob
        if timestep_power < 1.0:
            raise ValueError(f"timestep_power={timestep_power}: expected >= 1 (1: uniform timesteps, the official draw)")
        self.timestep_power = timestep_power

    def draw_timestep(self, rng):
        """Uniform over [0, num_timesteps) (official); with timestep_power p > 1, floor(N * u ** (1 / p)): the
        density grows as t ** (p - 1), so the noisiest timesteps come p times as often as on average."""
        if self.timestep_power == 1.0:
            return rng.integers(0, self.num_timesteps, dtype=np.int32)
        u = rng.random()
        return np.int32(min(int(self.num_timesteps * u ** (1.0 / self.timestep_power)), self.num_timesteps - 1))

    def draw(self, sample):
        rng = np.random.default_rng([self.seed, Stream.TRAIN_STEP, sample * self.num_ranks + self.rank])
        t = self.draw_timestep(rng)
        noise = rng.standard_normal(self.latent_shape, dtype=np.float32)
        latent_noise = (rng.standard_normal(self.latent_shape, dtype=np.float32) if self.sample_latents
                        else np.zeros(self.latent_shape, np.float32))
        drop = np.int32(rng.random(dtype=np.float32) < self.drop_prob)
        return t, noise, latent_noise, drop

    def __call__(self, batch):
        draws = [self.draw(self.sample + i) for i in range(batch.shape[0])]
        self.sample += batch.shape[0]
        t, noise, latent_noise, drop = (np.stack(column) for column in zip(*draws))  # B draws -> 4 (B, ...) arrays
        return batch, t, noise, latent_noise, drop


class LatentEncoder(nn.Cell):
    """The frozen VAE of a train step: frames (B, F, 3, H, W) in [-1, 1] -> scaled posterior samples
    (B, F, C, h, w) (mean + std * latent_noise, times scale_factor), vae_micro_batch frames per encoder call,
    behind stop_gradient."""

    def __init__(self, vae, scale_factor=1.0, vae_micro_batch=8):
        super().__init__()
        self.vae = vae
        for p in vae.get_parameters():
            p.requires_grad = False
        self.scale_factor = scale_factor
        self.micro_batch = vae_micro_batch

    def construct(self, frames, latent_noise):
        b, f, c, h, w = frames.shape
        flat = frames.reshape(b * f, c, h, w)  # (B, F, 3, H, W) -> (B*F, 3, H, W)
        means, logvars = [], []
        for start in range(0, b * f, self.micro_batch):
            mean, logvar = self.vae.encode(flat[start:start + self.micro_batch])
            means.append(mean)
            logvars.append(logvar)
        mean, logvar = ops.cat(means, 0), ops.cat(logvars, 0)  # (B*F, C, h, w)
        latents = scaled_posterior_sample(mean.reshape(latent_noise.shape), logvar.reshape(latent_noise.shape),
                                          latent_noise, self.scale_factor)  # (B*F, C, h, w) -> (B, F, C, h, w)
        return ops.stop_gradient(latents)


def latent_encoder(vae, scale_factor=1.0, vae_micro_batch=8):
    """LatentEncoder of `vae`, or None without one (cached latents, pixel space)."""
    return None if vae is None else LatentEncoder(vae, scale_factor, vae_micro_batch)


class LatteTrainLoss(nn.Cell):
    """construct(x, t, noise, latent_noise, drop[, y]) -> (loss, mse, vb), batch means.

    x is (B, F, 3, H, W) frames in [-1, 1] when `vae` is given (encoded here, frozen, no gradient), or
    (B, F, C, h, w) latents already scaled (embedding cache / pixel-space training) when vae is None.
    Class labels go to the model with drop as force_drop_ids (1: replaced by the null id, the official label
    dropout).
    """

    def __init__(self, latte, diffusion, vae=None, scale_factor=1.0, vae_micro_batch=8, condition=None):
        super().__init__()
        self.diffusion_loss = DiffusionLoss(latte, diffusion)  # t, noise: StepNoise
        self.encoder = latent_encoder(vae, scale_factor, vae_micro_batch)
        self.use_labels = condition == "class"

    def construct(self, x, t, noise, latent_noise, drop, y=None):
        if self.encoder is not None:
            x = self.encoder(x, latent_noise)
        if self.use_labels:
            return self.diffusion_loss(x, y.astype(ms.int32), t, noise, drop)
        return self.diffusion_loss(x, None, t, noise)
