"""Assembling and running a Latte training: data, models, compiled step, EMA, logging, checkpoints, samples."""
import functools
import logging
import os
import time

import mindspore as ms
from mindspore import nn

from latte.checkpoint_io import load_checkpoint_into as load_latte_checkpoint
from latte.config import save_config
from latte.data import iterate_batches
from latte.data.transforms import to_channels
from latte.env import progress, resolve_dtype
from latte.io import RGB_CHANNELS
from latte.models.factory import create_latte
from latte.models.precision import apply_amp
from latte.options import DIFFUSION_KEYS
from latte.training.checkpoints import (CheckpointManager, latte_weights, load_resume_state, resolve_resume,
                                       weights_digest)
from latte.training.ema import EMA
from latte.training.loss import RANDOM_COLUMNS, LatteTrainLoss, StepNoise
from latte.training.metrics import MetricsLog, plot_loss_curve
from latte.training.optim import create_optimizer, lr_schedule
from latte.training.samples import CheckpointSamples
from latte.training.step import TrainStep

logger = logging.getLogger(__name__)

TRAINING_RESPACING = ""  # training uses every one of the 1000 diffusion steps (official create_diffusion(""))


class StepWithEMA(nn.Cell):
    """The train step followed by the EMA update when the weights changed: one graph, also when sinking."""

    def __init__(self, train_step, ema):
        super().__init__(auto_prefix=False)
        self.train_step = train_step
        self.ema = ema

    def construct(self, *inputs):
        loss, finite, scale, updated = self.train_step(*inputs)
        if self.ema is not None and updated:
            self.ema()
        return loss, finite, scale, updated


def create_training_dataset(cfg, ctx, start_step, num_timesteps):
    """The batched dataset with the step randomness appended; returns (dataset, info)."""
    from latte.data import create_cache_dataset, create_video_dataset

    common = dict(condition=cfg.condition, shard_id=ctx.rank, num_shards=ctx.group_size, seed=cfg.seed,
                  start_step=start_step)
    if cfg.trains_on_cache:  # "video" holds scaled latents (B, F, C, h, w)
        dataset, info = create_cache_dataset(
            cfg.data_config, cfg.image_size, cfg.num_frames, cfg.train_batch_size,
            latent_shape=(cfg.latent_channels, cfg.latent_size, cfg.latent_size),
            scale_factor=cfg.latent_scale, vae_checkpoint=cfg.vae_checkpoint, **common)
    else:
        dataset, info = create_video_dataset(cfg.data_config, cfg.image_size, cfg.num_frames,
                                             cfg.train_batch_size, **common)
        if not cfg.pixel_space and cfg.frame_channels != RGB_CHANNELS:  # e.g. a grayscale VAE from train_vae.py
            to_vae_channels = functools.partial(to_channels, channels=cfg.frame_channels, axis=-3)  # RGB -> luma
            dataset = dataset.map(operations=to_vae_channels, input_columns=["video"],
                                  num_parallel_workers=1, python_multiprocessing=False)
    latent_shape = (cfg.num_frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    noise = StepNoise(cfg.seed, ctx.rank, start_step, cfg.train_batch_size, latent_shape, num_timesteps,
                      sample_latents=cfg.vae_sample and not cfg.pixel_space and not cfg.trains_on_cache,
                      num_ranks=ctx.group_size)
    dataset = dataset.map(operations=noise, input_columns=["video"], output_columns=["video", *RANDOM_COLUMNS],
                          num_parallel_workers=1, python_multiprocessing=False)
    columns = ["video", *RANDOM_COLUMNS] + (["label"] if cfg.condition == "class" else [])
    return dataset.project(columns), info


class Trainer:
    def __init__(self, cfg, ctx):
        self.cfg, self.ctx = cfg, ctx
        self.out = cfg.output_path
        self.ckpt = CheckpointManager(os.path.join(self.out, "ckpt"), cfg.ckpt_max_keep, meta=self._weights_meta())
        self.resume_path = resolve_resume(cfg.resume, self.ckpt, self.out, refuse_existing=ctx.is_main)
        self.diffusion = cfg.create_diffusion(TRAINING_RESPACING)
        self._samples = None

    # ---- setup -------------------------------------------------------------------------------------------
    def _weights_meta(self):
        c = self.cfg
        return {"kind": "latte", "model_name": c.model_name,
                "config": dict(c.latte_kwargs(), **{k: v for k, v in _spec(c.model_name).items()}),
                "image_size": c.image_size, "pixel_space": c.pixel_space, "vae_checkpoint": c.vae_checkpoint,
                "diffusion": {k: getattr(c, k) for k in DIFFUSION_KEYS}}

    def build(self):
        cfg, ctx = self.cfg, self.ctx
        # Models: Latte (trainable), the frozen VAE unless pixel space
        self.latte = create_latte(cfg.model_name, **cfg.latte_kwargs())
        if cfg.pretrained_model_path:
            load_latte_checkpoint(self.latte, cfg.pretrained_model_path, f"{cfg.model_name} (pretrained)")
            logger.info("initialized Latte from %s", cfg.pretrained_model_path)
        dtype = resolve_dtype(cfg.dtype, ctx.device_target)
        self.latte.set_train(True)
        amp_latte = apply_amp(self.latte, dtype)
        vae = None
        if not cfg.pixel_space and not cfg.trains_on_cache:
            from latte.models.vae import load_vae

            vae = load_vae(cfg.vae_checkpoint, dtype=dtype)
            vae.set_train(False)
        loss_net = LatteTrainLoss(amp_latte, self.diffusion, vae, cfg.latent_scale,
                                  cfg.vae_micro_batch, cfg.condition, cfg.num_classes, cfg.class_dropout_prob)

        # Step, optimizer, EMA, and the resume state
        self.meta = {"step": 0, "epoch": 0, "seed": cfg.seed}
        self.ema = EMA(self.latte.trainable_params(), cfg.ema_decay) if cfg.use_ema else None
        self.total_steps = None  # known once the data is indexed
        self._build_data(start_step=0)
        lrs = lr_schedule(self.total_steps, cfg.start_learning_rate, cfg.scheduler, cfg.warmup_steps,
                          cfg.end_learning_rate, cfg.decay_steps)
        optimizer = create_optimizer(self.latte.trainable_params(), lrs, tuple(cfg.betas), cfg.optim_eps,
                                     cfg.weight_decay)
        reducer = (nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=ctx.group_size)
                   if ctx.group_size > 1 else None)
        self.train_step = TrainStep(loss_net, optimizer, cfg.loss_scaler_type, cfg.init_loss_scale,
                                    cfg.loss_scale_factor, cfg.scale_window, cfg.gradient_accumulation_steps,
                                    cfg.clip_grad, cfg.max_grad_norm, reducer, num_ranks=ctx.group_size)
        self.step_cell = StepWithEMA(self.train_step, self.ema)
        self.lrs = lrs
        if self.resume_path:
            self.meta = load_resume_state(self.resume_path, self.train_step, self.ema)
            logger.info("resumed from %s at optimizer step %d", self.resume_path, self.meta["step"])
            self._build_data(start_step=self.meta["step"] * cfg.gradient_accumulation_steps)
        return self

    def _build_data(self, start_step):
        cfg = self.cfg
        self.dataset, self.info = create_training_dataset(cfg, self.ctx, start_step, self.diffusion.num_timesteps)
        steps_per_epoch = max(self.info.steps_per_epoch // cfg.gradient_accumulation_steps, 1)
        budget = cfg.epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = min(budget, cfg.max_steps) if cfg.max_steps else budget

    # ---- running -----------------------------------------------------------------------------------------
    def log_key_settings(self):
        c, ctx = self.cfg, self.ctx
        global_batch = c.train_batch_size * c.gradient_accumulation_steps * ctx.group_size
        rows = [("model", f"{c.model_name} ({sum(p.size for p in self.latte.trainable_params()) / 1e6:.1f}M "
                          f"trainable), condition {c.condition}, {c.num_frames}x{c.image_size}x{c.image_size}"
                          + (" pixel space" if c.pixel_space else " from cached latents" if c.trains_on_cache
                             else f", VAE {c.vae_checkpoint}")),
                ("data", f"{self.info.num_videos} videos ({c.data_config.train_data_type}), "
                         f"{self.steps_per_epoch} optimizer steps per epoch, shard {ctx.rank}/{ctx.group_size}"),
                ("batch", f"{c.train_batch_size} per micro-batch x {c.gradient_accumulation_steps} accumulation x "
                          f"{ctx.group_size} process(es) = global batch {global_batch}"),
                ("optimizer", f"AdamW lr {c.start_learning_rate:g} ({c.scheduler}, warm-up {c.warmup_steps}), "
                              f"betas {c.betas}, eps {c.optim_eps:g}, wd {c.weight_decay:g}, clip "
                              f"{c.max_grad_norm if c.clip_grad else 'off'}"),
                ("precision", f"dtype {c.dtype or ('fp32' if ctx.device_target == 'CPU' else 'fp16')}, "
                              f"loss scale {c.loss_scaler_type} {c.init_loss_scale:g}, EMA "
                              f"{c.ema_decay if c.use_ema else 'off'}, recompute {c.use_recompute}"),
                ("schedule", f"{self.total_steps} optimizer steps (epochs {c.epochs}, max_steps {c.max_steps}), "
                             f"starting at {self.meta['step']}")]
        logger.info("key settings:\n%s", "\n".join(f"  {k:<10} {v}" for k, v in rows))

    def _sink_or_loop(self):
        cfg = self.cfg
        if cfg.dataset_sink_mode and self.ctx.device_target == "CPU":
            logger.info("dataset_sink_mode: MindSpore cannot sink data on CPU; feeding step by step instead")
        if cfg.dataset_sink_mode and self.ctx.device_target != "CPU":
            sink = self.info.steps_per_epoch if cfg.sink_size == -1 else cfg.sink_size
            return ms.data_sink(self.step_cell, self.dataset, sink_size=sink), sink
        return None, 1

    def fit(self):
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            save_config(cfg, os.path.join(self.out, "config.yaml"))
        self.log_key_settings()
        metrics = MetricsLog(os.path.join(self.out, "metrics.csv"), self.meta["step"] if self.resume_path else None) \
            if ctx.is_main else None
        step, accum = self.meta["step"], cfg.gradient_accumulation_steps
        micro, overflows = step * accum, 0
        sink_fn, per_call = self._sink_or_loop()
        batches = None if sink_fn else iterate_batches(self.dataset)  # epoch after epoch
        bar = progress(total=self.total_steps, initial=step, desc="train", disable=not ctx.is_main, unit="step")
        last_save = step
        while step < self.total_steps:
            start = time.perf_counter()
            loss, finite, scale, updated = sink_fn() if sink_fn else self.step_cell(*next(batches))
            loss = float(loss.asnumpy())
            elapsed = time.perf_counter() - start
            micro += per_call
            overflows += 0 if bool(finite.asnumpy()) else 1
            new_step = micro // accum
            if new_step == step:
                continue
            step = new_step
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if metrics and step % cfg.log_interval == 0:
                metrics.append(step=step, epoch=(step - 1) // self.steps_per_epoch, loss=f"{loss:.6f}",
                               lr=f"{self.lrs[min(step - 1, len(self.lrs) - 1)]:.3e}",
                               loss_scale=f"{float(scale.asnumpy()):g}", overflow_steps=overflows,
                               step_time_s=f"{elapsed:.4f}",
                               images_per_s=f"{cfg.train_batch_size * cfg.num_frames * per_call / elapsed:.2f}")
            if self._should_save(step) or step >= self.total_steps:
                self.save(step)
                last_save = step
        bar.close()
        if last_save != step:
            self.save(step)
        logger.info("finished at optimizer step %d (%d overflowed micro-steps skipped)", step, overflows)
        self.log_weights_digest(step)
        return step

    def log_weights_digest(self, step):
        """Every rank logs a digest of its weights: data-parallel ranks must hold bit-identical weights (and EMA),
        and rank 0's equal those of its checkpoint of this step (checkpoints.weights_digest of the file)."""
        raw, averaged = latte_weights(self.latte, self.ema)
        logger.info("weights digest at step %d, rank %d/%d: raw %s%s", step, self.ctx.rank, self.ctx.group_size,
                    weights_digest(raw), f", EMA {weights_digest(averaged)}" if averaged is not None else "")

    def _should_save(self, step):
        cfg = self.cfg
        if cfg.step_mode:
            return step % cfg.ckpt_save_interval == 0
        return step % self.steps_per_epoch == 0 and (step // self.steps_per_epoch) % cfg.ckpt_save_interval == 0

    def save(self, step):
        if not self.ctx.is_main:
            return
        weights = self.ckpt.save(step, self.latte, self.train_step, self.ema, epoch=step // self.steps_per_epoch,
                                 seed=self.cfg.seed)
        logger.info("saved %s and the resume state", weights)
        plot_loss_curve(os.path.join(self.out, "metrics.csv"), os.path.join(self.out, "loss_curve.png"))
        if self.cfg.sample_at_checkpoint:
            self.sample(step, weights)

    def sample(self, step, weights):
        if self._samples is None:
            self._samples = CheckpointSamples(self.cfg, self.ctx)
        self._samples.write(step, weights, os.path.join(self.out, "samples"))


def _spec(model_name):
    from latte.models.registry import model_spec

    return model_spec(model_name)
