"""Encoding frames with a frozen VAE in micro-batches of one compiled shape (the embedding cache's encoder)."""
import mindspore as ms
import numpy as np
from mindspore import nn, ops


def scaled_posterior_sample(mean, logvar, noise, scale):
    """(mean + std * noise) * scale with std = exp(logvar / 2): the latents the diffusion model sees (zero noise:
    the posterior mean). The one formula of the train loss, the embedding cache and encode_video."""
    return (mean + ops.exp(0.5 * logvar) * noise) * scale


class ScaledPosterior(nn.Cell):
    """(frames (N, in_channels, H, W), noise (N, C, h, w)) -> (mean + std * noise) * scale; zero noise: the mean."""

    def __init__(self, vae, scale):
        super().__init__(auto_prefix=False)
        self.vae = vae
        self.scale = scale

    def construct(self, frames, noise):
        mean, logvar = self.vae.encode(frames)
        return scaled_posterior_sample(mean, logvar, noise, self.scale)


class LatentEncoder:
    """Encodes frames in micro-batches of frames_per_batch with one compiled graph (the tail batch is padded)."""

    def __init__(self, vae, scale, frames_per_batch, latent_shape):
        self.cell = ScaledPosterior(vae, scale)
        self.cell.set_train(False)
        self.frames_per_batch = frames_per_batch
        self.latent_shape = tuple(latent_shape)

    def __call__(self, pixels, noise_rng=None):
        """float32 (k, in_channels, H, W) -> float32 (k, C, h, w); noise_rng (a numpy Generator) draws posterior
        samples in frame order (as latte.models.vae.encode_video does), None takes the mean."""
        size, out = self.frames_per_batch, []
        for start in range(0, len(pixels), size):
            batch = pixels[start:start + size]
            n = len(batch)
            noise = (noise_rng.standard_normal((n,) + self.latent_shape, dtype=np.float32) if noise_rng is not None
                     else np.zeros((n,) + self.latent_shape, np.float32))
            if n < size:  # pad with copies of the last frame: frames are encoded independently
                batch = np.concatenate([batch, np.repeat(batch[-1:], size - n, axis=0)])
                noise = np.concatenate([noise, np.zeros((size - n,) + self.latent_shape, np.float32)])
            latents = self.cell(ms.Tensor(batch), ms.Tensor(noise)).asnumpy()
            out.append(latents[:n])
        return np.concatenate(out)
