"""Assembling and running an autoencoder training: frames, networks, compiled steps, metrics, grids, checkpoints."""
import logging
import os
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from latte.config import save_config
from latte.env import progress
from latte.io import save_image_grid
from latte.checkpoint_io import VAE_PREFIX, load_strict
from latte.models.vae import AutoencoderKL
from latte.models.vae_config import VAEConfig
from latte.training.optim import split_decay_groups
from latte.training.run_state import (MetricsCSV, RunCheckpoints, check_resume_settings, load_state, log_key_settings,
                                      read_state_record, resolve_resume, state_parameters)
from latte.training.updater import Updater
from latte.vae_training.discriminator import PatchGAN
from latte.vae_training.frames import FrameBatches, list_frame_images, load_frames, split_frames
from latte.vae_training.step import AutoencoderForward, DiscriminatorStep, GeneratorStep, Reconstruct

logger = logging.getLogger(__name__)
ACCUM_KEY = "autoencoder_acc_steps"  # the config key named when the accumulation count is invalid

ADAM_EPS = 1e-8
FINAL_FILE = "vae.ckpt"  # output_path/vae.ckpt: the last weights
BEST_FILE = "vae-best.ckpt"  # output_path/vae-best.ckpt: the weights of the best held-out PSNR at a checkpoint
DISC_PREFIX = "discriminator."
EVAL_NOISE_SEED = 1234  # posterior noise of the latent-scale estimate (independent of training)
PERCEPTUAL_OFF_HINT = (
    "the perceptual (LPIPS) term is OFF: lpips_checkpoint is empty. To use it, convert torchvision's VGG16 "
    "weights (https://download.pytorch.org/models/vgg16-397923af.pth) and the lpips package's linear heads "
    "(pip download --no-deps lpips, then unzip: lpips/weights/v0.1/vgg.pth) with 'python tools/lpips_converter.py "
    "--vgg vgg16-397923af.pth --lin vgg.pth --target models/lpips_vgg.ckpt' and set lpips_checkpoint to it "
    "(or set perceptual_weight: 0 to silence this)")
METRIC_FIELDS = ("step", "epoch", "loss", "rec_loss", "perceptual_loss", "kl_loss", "adv_loss", "d_weight", "d_loss",
                 "logits_real", "logits_fake", "val_psnr_db", "nonfinite_steps", "step_time_s", "frames_per_s")


def psnr_db(mse):
    """PSNR in dB of frames in [-1, 1] (peak-to-peak 2) given their mean squared error."""
    return float(10.0 * np.log10(4.0 / max(float(mse), 1e-20)))


def _adam(params, lr, betas, weight_decay):
    """Adam with bias correction (nn.Adam; the reference trains with torch.optim.Adam). nn.AdamWeightDecay has
    none, which makes its first hundreds of steps up to 1/sqrt(1 - beta2^t) times larger: too rough here."""
    decay, no_decay = split_decay_groups(params)
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return nn.Adam(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=ADAM_EPS)


class VAETrainer:
    def __init__(self, cfg, ctx):
        self.cfg, self.ctx = cfg, ctx
        self.out = cfg.output_path
        self.ckpt = RunCheckpoints(os.path.join(self.out, "ckpt"), VAE_PREFIX, cfg.ckpt_max_keep)
        self.resume_path = resolve_resume(cfg.resume, self.ckpt, self.out)
        record = read_state_record(self.resume_path) if self.resume_path else {"step": 0}
        if self.resume_path:
            check_resume_settings(record, {"seed": cfg.seed}, self.resume_path)
        self.step = record["step"]  # where the run continues, read before anything is built

    # ---- setup -------------------------------------------------------------------------------------------
    def build(self):
        cfg = self.cfg
        # Frames: training batches and the held-out frames (PSNR, grids)
        paths = list_frame_images(cfg.frame_folder)
        train_paths, val_paths = split_frames(paths, cfg.val_frames, cfg.seed)
        if len(train_paths) < cfg.autoencoder_batch_size:
            raise ValueError(f"{len(train_paths)} training frames in {cfg.frame_folder} (after holding out "
                             f"{len(val_paths)}), fewer than autoencoder_batch_size={cfg.autoencoder_batch_size}: "
                             "capture more frames (ae_frame_sample_prob) or lower the batch size")
        latent_shape = (cfg.latent_channels,) + cfg.latent_size
        self.frames = FrameBatches(train_paths, cfg.autoencoder_batch_size, cfg.frame_size, cfg.frame_channels,
                                   latent_shape, cfg.seed, cfg.num_workers)
        self.val = load_frames(val_paths or train_paths[:cfg.sample_count], cfg.frame_size, cfg.frame_channels)
        self.num_val = len(val_paths)
        self.eval_set = "held-out" if val_paths else "training-frame"  # val_frames: 0 evaluates training frames
        self.steps_per_epoch = max(self.frames.micro_batches_per_epoch() // cfg.autoencoder_acc_steps, 1)
        budget = cfg.autoencoder_epochs * self.steps_per_epoch
        self.total_steps = min(budget, cfg.max_steps) if cfg.max_steps else budget

        # Networks: the autoencoder, the frozen LPIPS (optional), the discriminator (when it will ever train)
        self.vae = AutoencoderKL(**cfg.vae_config())
        if cfg.pretrained_vae:
            from latte.checkpoint_io import read_ms_checkpoint

            load_strict(self.vae, read_ms_checkpoint(cfg.pretrained_vae)[0], what=cfg.pretrained_vae)
            logger.info("initialized the autoencoder from %s", cfg.pretrained_vae)
        elif cfg.posterior_logvar_init:
            set_posterior_logvar(self.vae, cfg.posterior_logvar_init)
        self.vae.set_train(True)
        lpips = self._build_lpips()
        disc = None
        if cfg.disc_enabled:
            disc = PatchGAN(cfg.frame_channels, cfg.disc_channels, cfg.disc_layers)
            for p in disc.get_parameters():
                p.name = DISC_PREFIX + p.name
            disc.set_train(True)
        self.disc = disc

        # Compiled steps: the generator before and after disc_start, the discriminator; eval
        betas = tuple(cfg.betas)
        g_updater = Updater(_adam(self.vae.trainable_params(), cfg.autoencoder_lr, betas, cfg.weight_decay),
                            cfg.autoencoder_acc_steps, cfg.clip_grad, cfg.max_grad_norm, prefix="ae",
                            accum_key=ACCUM_KEY)
        forward = AutoencoderForward(self.vae)
        common = dict(reconstruction_loss=cfg.reconstruction_loss, kl_weight=cfg.kl_weight, lpips=lpips,
                      perceptual_weight=cfg.perceptual_weight)
        self.g_plain = GeneratorStep(forward, g_updater, **common)
        cells = [self.g_plain]
        self.g_adv = self.d_step = None
        if disc is not None:
            self.g_adv = GeneratorStep(forward, g_updater, discriminator=disc, disc_weight=cfg.disc_weight,
                                       disc_adaptive=cfg.disc_adaptive, **common)
            d_opt = _adam(disc.trainable_params(), cfg.disc_lr or cfg.autoencoder_lr, betas, cfg.weight_decay)
            for p in d_opt.get_parameters():
                if DISC_PREFIX not in p.name:  # global_step, beta powers ...: unique next to the autoencoder's
                    p.name = DISC_PREFIX + p.name
            self.d_step = DiscriminatorStep(disc, Updater(d_opt, cfg.autoencoder_acc_steps, cfg.clip_grad,
                                                          cfg.max_grad_norm, prefix="disc", accum_key=ACCUM_KEY))
            cells += [self.g_adv, self.d_step]
        self.reconstruct = Reconstruct(self.vae)
        frozen = lpips.get_parameters() if lpips is not None else ()  # loaded from lpips_checkpoint, not saved
        self.state = state_parameters(cells, exclude=frozen)

        if self.resume_path:
            load_state(self.resume_path, self.state)
            logger.info("resumed from %s at optimizer step %d", self.resume_path, self.step)
        return self

    def _build_lpips(self):
        cfg = self.cfg
        if cfg.perceptual_weight <= 0:
            logger.info("perceptual term off (perceptual_weight 0)")
            return None
        if not cfg.lpips_checkpoint:
            logger.warning(PERCEPTUAL_OFF_HINT)
            return None
        from latte.checkpoint_io import CheckpointError
        from latte.vae_training.lpips import load_lpips

        if not os.path.isfile(cfg.lpips_checkpoint):
            raise ValueError(f"lpips_checkpoint={cfg.lpips_checkpoint!r} does not exist: write it with "
                             "tools/lpips_converter.py, or set lpips_checkpoint: '' to train without LPIPS")

        try:
            lpips = load_lpips(cfg.lpips_checkpoint)
        except CheckpointError as err:
            raise ValueError(f"lpips_checkpoint: {err}") from None
        logger.info("perceptual term: LPIPS from %s (channels %s), weight %g", cfg.lpips_checkpoint,
                    list(lpips.channels), cfg.perceptual_weight)
        return lpips

    # ---- running -----------------------------------------------------------------------------------------
    def key_settings(self):
        c = self.cfg
        params = sum(p.size for p in self.vae.trainable_params()) / 1e6
        disc = (f"PatchGAN {c.disc_layers} layers x {c.disc_channels}, hinge, from step {c.disc_start}, weight "
                f"{c.disc_weight:g} ({'adaptive' if c.disc_adaptive else 'fixed'})" if self.disc is not None
                else f"off (disc_start {c.disc_start} >= max_steps {c.max_steps})")
        rows = [("autoencoder", f"AutoencoderKL {params:.2f}M, widths {list(c.block_out_channels)}, "
                                f"{c.layers_per_block} resnet(s)/level, latent {c.latent_channels} x "
                                f"{c.latent_size[0]}x{c.latent_size[1]} for {c.frame_channels}x{c.frame_height}x"
                                f"{c.frame_width} frames (downsampling {c.downsample_factor})"),
                ("frames", f"{len(self.frames)} training + {self.num_val} held-out from {c.frame_folder}, "
                           f"{self.steps_per_epoch} optimizer steps per epoch"),
                ("batch", f"{c.autoencoder_batch_size} frames x {c.autoencoder_acc_steps} accumulation"),
                ("losses", f"{c.reconstruction_loss} + KL x {c.kl_weight:g} + LPIPS x "
                           f"{c.perceptual_weight if self.g_plain.use_lpips else 0:g}"),
                ("discriminator", disc),
                ("optimizer", f"Adam lr {c.autoencoder_lr:g} (disc {c.disc_lr or c.autoencoder_lr:g}), betas "
                              f"{list(c.betas)}, wd {c.weight_decay:g}, "
                              f"clip {c.max_grad_norm if c.clip_grad else 'off'}"),
                ("schedule", f"{self.total_steps} optimizer steps (epochs {c.autoencoder_epochs}, max_steps "
                             f"{c.max_steps}), starting at {self.step}")]
        return rows

    def fit(self):
        cfg = self.cfg
        save_config(cfg, os.path.join(self.out, "config.yaml"))
        log_key_settings(self.key_settings())
        metrics = MetricsCSV(os.path.join(self.out, "metrics.csv"), METRIC_FIELDS,
                             self.step if self.resume_path else None)
        acc = cfg.autoencoder_acc_steps
        batches = self.frames.iterate(self.step * acc)
        skipped = 0  # optimizer steps (autoencoder or discriminator) skipped for non-finite gradients
        bar = progress(total=self.total_steps, initial=self.step, desc="train_vae", unit="step")
        if self.step == 0:
            self.write_samples(0)
        last_save = self.step
        while self.step < self.total_steps:
            adversarial = self.d_step is not None and self.step >= cfg.disc_start
            g_step = self.g_adv if adversarial else self.g_plain
            start = time.perf_counter()
            sums = {}
            for _ in range(acc):
                frames, noise = next(batches)
                x, noise = ms.Tensor(frames), ms.Tensor(noise)
                loss, rec_loss, perceptual, kl, adv, d_weight, rec, boundary, applied = g_step(x, noise)
                values = dict(loss=loss, rec_loss=rec_loss, perceptual_loss=perceptual, kl_loss=kl)
                skipped += int(bool(boundary.asnumpy()) and not bool(applied.asnumpy()))
                if adversarial:
                    d_loss, real, fake, boundary, applied = self.d_step(x, rec)
                    skipped += int(bool(boundary.asnumpy()) and not bool(applied.asnumpy()))
                    values.update(adv_loss=adv, d_weight=d_weight, d_loss=d_loss, logits_real=real, logits_fake=fake)
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + float(v.asnumpy()) / acc
            elapsed = time.perf_counter() - start
            self.step += 1
            bar.update(1)
            bar.set_postfix({k: f"{sums[k]:.4f}" for k in ("rec_loss", "d_loss") if k in sums}, refresh=False)
            psnr = None
            if self.step % cfg.autoencoder_img_save_steps == 0:
                psnr = self.write_samples(self.step)
            if self.step % cfg.log_interval == 0 or psnr is not None:
                row = {k: f"{v:.6g}" for k, v in sums.items()}
                row.update(step=self.step, epoch=(self.step - 1) // self.steps_per_epoch,
                           nonfinite_steps=skipped, step_time_s=f"{elapsed:.4f}",
                           frames_per_s=f"{cfg.autoencoder_batch_size * acc / elapsed:.2f}",
                           val_psnr_db="" if psnr is None else f"{psnr:.3f}")
                metrics.append(row)
            if self.step % cfg.ckpt_save_interval == 0 or self.step >= self.total_steps:
                self.save()
                last_save = self.step
        bar.close()
        if last_save != self.step:
            self.save()
        return self.finish(skipped)

    # ---- evaluation, grids, checkpoints --------------------------------------------------------------------
    def evaluate(self, frames=None):
        """(PSNR in dB of posterior-mean reconstructions, reconstructions, std of posterior samples) on frames."""
        frames = self.val if frames is None else frames
        size = self.cfg.autoencoder_batch_size
        recs, latents = [], []
        noise_rng = np.random.default_rng(EVAL_NOISE_SEED)
        for start in range(0, len(frames), size):
            batch = frames[start:start + size]
            n = len(batch)
            if n < size:  # one compiled shape: pad with copies of the last frame
                batch = np.concatenate([batch, np.repeat(batch[-1:], size - n, axis=0)])
            rec, mean, logvar = self.reconstruct(ms.Tensor(batch))
            recs.append(np.clip(rec.asnumpy()[:n], -1.0, 1.0))
            mean, logvar = mean.asnumpy()[:n], logvar.asnumpy()[:n]
            latents.append(mean + np.exp(0.5 * logvar) * noise_rng.standard_normal(mean.shape).astype(np.float32))
        recs = np.concatenate(recs)
        mse = float(np.mean((recs - frames) ** 2))
        return psnr_db(mse), recs, float(np.concatenate(latents).std())

    def write_samples(self, step):
        """Writes samples/step-XXXXXXX.png (held-out inputs above their reconstructions); returns the PSNR."""
        psnr, recs, _ = self.evaluate()
        count = min(self.cfg.sample_count, len(self.val))
        path = os.path.join(self.out, "samples", f"step-{step:07d}.png")
        save_image_grid(np.concatenate([self.val[:count], recs[:count]]), path, nrow=count)
        logger.info("step %d: %s PSNR %.2f dB; wrote %s", step, self.eval_set, psnr, path)
        return psnr

    def weights_meta(self, psnr, latent_std):
        cfg = self.cfg
        config = VAEConfig.from_dict(dict(cfg.vae_config(), scaling_factor=round(1.0 / max(latent_std, 1e-6), 5)))
        return {"model": "AutoencoderKL", "config": config.to_dict(), "trained_by": "tools/train_vae.py",
                "step": self.step, "frame_size": [cfg.frame_height, cfg.frame_width],
                "frame_channels": cfg.frame_channels, "val_psnr_db": round(psnr, 3), "latent_std": latent_std,
                "run": os.path.abspath(self.out)}

    def save(self):
        psnr, _, latent_std = self.evaluate()
        self.last_eval = (psnr, latent_std)
        weights = {name: p.asnumpy() for name, p in self.vae.parameters_and_names()}
        meta = self.weights_meta(psnr, latent_std)
        self.keep_if_best(weights, meta)  # before the resume state: a kill between the two repeats this save
        path = self.ckpt.save(self.step, self.state, weights, meta, epoch=self.step // self.steps_per_epoch,
                              seed=self.cfg.seed)
        logger.info("saved %s (%s PSNR %.2f dB) and the resume state", path, self.eval_set, psnr)

    def keep_if_best(self, weights, meta):
        """Writes vae-best.ckpt when these weights have the highest held-out PSNR of the run so far (the record of
        the one on disk is the best so far, so a resumed run keeps comparing against it). The PSNR can fall once
        the discriminator starts: vae.ckpt is always the last weights, vae-best.ckpt the best ones."""
        from latte.checkpoint_io import read_meta, save_ms_checkpoint

        path = os.path.join(self.out, BEST_FILE)
        best = read_meta(path).get("val_psnr_db") if os.path.isfile(path) else None
        if best is None or meta["val_psnr_db"] > best:
            save_ms_checkpoint(weights, path, meta)
            logger.info("step %d: best %s PSNR so far (%.2f dB): wrote %s", self.step, self.eval_set,
                        meta["val_psnr_db"], path)

    def finish(self, skipped):
        from latte.checkpoint_io import read_meta, save_ms_checkpoint

        if not hasattr(self, "last_eval"):  # resumed at the end: nothing ran
            psnr, _, latent_std = self.evaluate()
        else:
            psnr, latent_std = self.last_eval
        meta = self.weights_meta(psnr, latent_std)
        final = os.path.join(self.out, FINAL_FILE)
        save_ms_checkpoint({n: p.asnumpy() for n, p in self.vae.parameters_and_names()}, final, meta)
        best = read_meta(os.path.join(self.out, BEST_FILE)).get("val_psnr_db")
        logger.info("finished at optimizer step %d (%d updates skipped for non-finite gradients): %s PSNR %.2f dB "
                    "on %d frames (best %s dB at step %s, in %s). Wrote %s; use it in Latte configs as vae_checkpoint (latent std %.4f: "
                    "sd_scale_factor %.5f gives unit-variance latents)", self.step, skipped, self.eval_set, psnr,
                    len(self.val), best, read_meta(os.path.join(self.out, BEST_FILE)).get("step"), BEST_FILE, final,
                    latent_std, meta["config"]["scaling_factor"])
        return {"step": self.step, "psnr_db": psnr, "vae_checkpoint": final, "latent_std": latent_std,
                "best_psnr_db": best, "best_checkpoint": os.path.join(self.out, BEST_FILE)}
