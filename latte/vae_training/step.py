"""The compiled train steps of the autoencoder (generator) and the PatchGAN (discriminator).

Generator loss:  nll + kl_weight * KL [+ d_weight * adv]   with  nll = rec + perceptual_weight * LPIPS
  rec: mean L1 or L2 over pixels; KL: sum over latent elements, mean over frames; adv = -mean D(rec).
  d_weight: disc_weight, or with disc_adaptive disc_weight * |grad_W nll| / (|grad_W adv| + 1e-4) clamped to
  [0, 1e4], W the weight of the decoder's last conv (taming-transformers), treated as a constant.
Discriminator loss: hinge, on the frames and the generator step's reconstructions (as inputs: no gradient
reaches the autoencoder).

The adversarial generator step runs the autoencoder forward once under `ops.vjp`, takes the gradients of
nll and adv with respect to the reconstruction separately (through LPIPS and the discriminator), turns them
into the last layer's two gradients (one small conv backward), and pulls the combined cotangent back
through the autoencoder once: the adaptive weight costs no second backward of the autoencoder.

All state an exact resume needs (weights, Adam moments, accumulated gradients, counters, BatchNorm
statistics) lives in Parameters of these cells.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from latte.vae_training.discriminator import hinge_d_loss, hinge_g_loss

ADAPTIVE_EPS = 1e-4  # added to |grad adv| before dividing (taming-transformers)
ADAPTIVE_MAX = 1e4  # clamp of the adaptive weight


def kl_divergence(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, 1)), summed over (C, h, w), averaged over the batch."""
    per_frame = 0.5 * ops.sum(mean * mean + ops.exp(logvar) - 1.0 - logvar, dim=(1, 2, 3))
    return ops.mean(per_frame)


def _last_conv_dot(weight, features, cotangent):
    """<conv3x3(features; weight), cotangent>: its gradient in `weight` is that layer's weight gradient."""
    out = ops.conv2d(features, weight, pad_mode="pad", padding=1)
    return ops.sum(out * cotangent)


class AutoencoderForward(nn.Cell):
    """(frames, noise) -> (reconstruction of the posterior sample, KL, input of the decoder's last conv).

    Runs the decoder as AutoencoderKL.decode does, stopping one layer early to expose the last conv's input;
    tests check the reconstruction equals vae.decode(z).
    """

    def __init__(self, vae):
        super().__init__(auto_prefix=False)
        self.vae = vae
        self.has_post_quant = vae.post_quant_conv is not None

    def decoder_features(self, z):
        decoder = self.vae.decoder
        if self.has_post_quant:
            z = self.vae.post_quant_conv(z)
        h = decoder.mid_block(decoder.conv_in(z))
        for block in decoder.up_blocks:
            h = block(h)
        return decoder.conv_norm_out(h)  # (N, C0, H, W): the last conv's input

    def construct(self, x, noise):
        mean, logvar = self.vae.encode(x)  # (N, C, H, W) -> 2 x (N, L, h, w)
        z = mean + ops.exp(0.5 * logvar) * noise  # posterior sample
        features = self.decoder_features(z)
        rec = self.vae.decoder.conv_out(features)  # (N, C, H, W)
        return rec, kl_divergence(mean, logvar), features


class GeneratorStep(nn.Cell):
    """One autoencoder micro-step: construct(frames, noise) -> (loss, rec, perceptual, kl, adv, d_weight,
    reconstruction, boundary, applied): boundary when it ended an accumulation window, applied when that
    window's update ran (see latte.training.updater.Updater).

    discriminator=None: the step before disc_start (adv and d_weight are 0 and the discriminator never runs).
    lpips=None: no perceptual term (reported as 0).
    """

    def __init__(self, forward, updater, reconstruction_loss="l1", kl_weight=0.0, lpips=None,
                 perceptual_weight=0.0, discriminator=None, disc_weight=0.0, disc_adaptive=True):
        super().__init__(auto_prefix=False)
        self.forward = forward
        self.updater = updater
        self.weights = updater.weights
        self.use_l1 = reconstruction_loss == "l1"
        self.kl_weight = kl_weight
        self.lpips = lpips
        self.use_lpips = lpips is not None
        self.perceptual_weight = perceptual_weight
        self.discriminator = discriminator
        self.adversarial = discriminator is not None
        self.disc_weight = disc_weight
        self.adaptive = disc_adaptive
        if self.adversarial:
            self.last_weight = forward.vae.decoder.conv_out.weight
            self.nll_grad = ops.value_and_grad(self._nll, 0, None, has_aux=True)
            self.adv_grad = ops.value_and_grad(self._adv, 0)
            self.last_grad = ops.grad(_last_conv_dot, 0)
        else:
            self.grad_fn = ops.value_and_grad(self._plain_loss, None, self.weights, has_aux=True)

    def _nll(self, rec, x):
        """(rec + perceptual_weight * LPIPS, rec, LPIPS) of a reconstruction."""
        diff = rec - x
        rec_loss = ops.mean(ops.abs(diff)) if self.use_l1 else ops.mean(diff * diff)
        perceptual = ops.mean(self.lpips(rec, x)) if self.use_lpips else ops.zeros((), ms.float32)
        return rec_loss + self.perceptual_weight * perceptual, rec_loss, perceptual

    def _adv(self, rec):
        return hinge_g_loss(self.discriminator(rec))

    def _plain_loss(self, x, noise):
        rec, kl, _ = self.forward(x, noise)
        nll, rec_loss, perceptual = self._nll(rec, x)
        return nll + self.kl_weight * kl, rec_loss, perceptual, kl, rec

    def _adaptive_weight(self, features, g_nll, g_adv):
        if not self.adaptive:
            return ops.full((), self.disc_weight, dtype=ms.float32)
        nll_norm = ops.norm(self.last_grad(self.last_weight, features, g_nll))
        adv_norm = ops.norm(self.last_grad(self.last_weight, features, g_adv))
        weight = ops.clamp(nll_norm / (adv_norm + ADAPTIVE_EPS), 0.0, ADAPTIVE_MAX) * self.disc_weight
        return ops.stop_gradient(weight)

    def construct(self, x, noise):
        zero = ops.zeros((), ms.float32)
        if not self.adversarial:
            (loss, rec_loss, perceptual, kl, rec), grads = self.grad_fn(x, noise)
            boundary, applied, _ = self.updater(grads)
            return loss, rec_loss, perceptual, kl, zero, zero, rec, boundary, applied
        (rec, kl, features), pullback = ops.vjp(self.forward, x, noise, weights=self.weights)
        (nll, rec_loss, perceptual), g_nll = self.nll_grad(rec, x)  # gradients w.r.t. the reconstruction
        adv, g_adv = self.adv_grad(rec)
        d_weight = self._adaptive_weight(features, g_nll, g_adv)
        cotangents = (g_nll + d_weight * g_adv, ops.full_like(kl, self.kl_weight), ops.zeros_like(features))
        grads = pullback(cotangents)[1]  # (input gradients, weight gradients)
        loss = nll + self.kl_weight * kl + d_weight * adv
        boundary, applied, _ = self.updater(grads)
        return loss, rec_loss, perceptual, kl, adv, d_weight, rec, boundary, applied


class DiscriminatorStep(nn.Cell):
    """One discriminator micro-step: construct(frames, reconstructions) -> (loss, mean logit real, mean logit
    fake, boundary, applied), as GeneratorStep."""

    def __init__(self, discriminator, updater):
        super().__init__(auto_prefix=False)
        self.discriminator = discriminator
        self.updater = updater
        self.grad_fn = ops.value_and_grad(self._loss, None, updater.weights, has_aux=True)

    def _loss(self, x, rec):
        logits_real = self.discriminator(x)
        logits_fake = self.discriminator(rec)
        return hinge_d_loss(logits_real, logits_fake), ops.mean(logits_real), ops.mean(logits_fake)

    def construct(self, x, rec):
        (loss, real, fake), grads = self.grad_fn(x, rec)
        boundary, applied, _ = self.updater(grads)
        return loss, real, fake, boundary, applied


class Reconstruct(nn.Cell):
    """frames -> (reconstruction through the posterior mean, posterior mean, posterior logvar), no gradients."""

    def __init__(self, vae):
        super().__init__(auto_prefix=False)
        self.vae = vae

    def construct(self, x):
        mean, logvar = self.vae.encode(x)
        return self.vae.decode(mean), mean, logvar
