"""Assembling and running a Latte training: data, models, compiled step, EMA, logging, checkpoints, samples.

A class / unconditional Latte, or with condition 'text' a LatteT2V (Latte-1) on captions: T5 frozen in the step
(or T5 states from an embedding cache), caption dropout to the empty caption, checkpoints of kind latte_t2v
that sample.py and tools/latte_converter.py read.
"""
import itertools
import logging
import os
import time

import numpy as np

import mindspore as ms

from latte.allocator import compile_and_release
from latte.checkpoint_io import LATTE_PREFIX, CheckpointError, load_checkpoint_into, read_meta
from latte.config import save_config, to_dict
from latte.data import iterate_batches
from latte.env import progress, resolve_dtype
from latte.graph_cache import graph_cache
from latte.models.factory import create_latte
from latte.models.precision import apply_amp
from latte.models.registry import KIND_CLASS, KIND_T2V, T2V_SHAPE_FIELDS
from latte.options import DIFFUSION_KEYS
from latte.training.data import create_training_dataset
from latte.training.ema import EMA, named_weights
from latte.training.joint import JointClassTrainLoss
from latte.training.loss import LOSS_TERMS, LatteTrainLoss, latent_encoder
from latte.training.text_loss import LatteT2VTrainLoss, null_caption
from latte.training.optim import create_optimizer, lr_schedule
from latte.training.run_state import (RESUME_KEYS, MetricsCSV, RunCheckpoints, check_resume_settings, load_state,
                                      log_key_settings, plot_loss_curve, read_state_record, resolve_resume,
                                      state_parameters, weights_digest)
from latte.training.samples import CheckpointSampler, CheckpointSamples
from latte.training.step import StepWithEMA, TrainStep

logger = logging.getLogger(__name__)

TRAINING_RESPACING = ""  # training uses every one of the 1000 diffusion steps (official create_diffusion(""))
METRIC_FIELDS = ("step", "epoch", *LOSS_TERMS, "lr", "loss_scale", "overflow_steps", "step_time_s", "images_per_s")
CHECKPOINT_FIELDS = ("fvd",)  # metrics.csv columns filled at checkpoints (with fvd_at_checkpoint)


class Trainer:
    def __init__(self, cfg, ctx):
        self.cfg, self.ctx = cfg, ctx
        self.out = cfg.output_path
        self.ckpt = RunCheckpoints(os.path.join(self.out, "ckpt"), LATTE_PREFIX, cfg.ckpt_max_keep)
        self.resume_path = resolve_resume(cfg.resume, self.ckpt, self.out, refuse_existing=ctx.is_main)
        # where the run continues, read before anything is built (the data pipeline starts there)
        self.meta = read_state_record(self.resume_path) if self.resume_path else {"step": 0, "epoch": 0,
                                                                                   "seed": cfg.seed}
        if self.resume_path:
            check_resume_settings(self.meta, self.resume_settings(), self.resume_path)
        self.diffusion = cfg.create_diffusion(TRAINING_RESPACING)
        self._sampler = None
        self.fvd = None

    # ---- setup -------------------------------------------------------------------------------------------
    def resume_settings(self):
        """The run_state.RESUME_KEYS of this run: a resume must keep them (recorded with every state)."""
        return {k: getattr(self.cfg, k) for k in RESUME_KEYS}

    def _weights_meta(self):
        """The record saved next to the weights: what built the model and what sample.py needs to sample it."""
        c = self.cfg
        common = {"image_size": c.image_size, "pixel_space": c.pixel_space, "vae_checkpoint": c.vae_checkpoint,
                  "sd_scale_factor": c.sd_scale_factor, "diffusion": {k: getattr(c, k) for k in DIFFUSION_KEYS}}
        if c.is_text_model:  # load_latte builds LatteT2V(**config); sample.py reads the text encoder from here
            text_encoder = c.text_encoder or self.info.text_encoder.get("text_encoder", "")
            return dict(common, kind=KIND_T2V, model_name=c.model_name, config=dict(self.model_config),
                        text_encoder=text_encoder, tokenizer=c.tokenizer, max_text_length=c.max_text_length,
                        caption_dropout_prob=c.caption_dropout_prob)
        return dict(common, kind=KIND_CLASS, model_name=c.model_name,
                    config=dict(c.latte_kwargs(), **{k: v for k, v in _spec(c.model_name).items()}))

    def build(self):
        cfg, ctx = self.cfg, self.ctx
        # The checkpoint FVD's held-out features (computed once, then from the cache), before any training work
        if cfg.fvd_at_checkpoint and ctx.is_main:
            from latte.training.checkpoint_fvd import CheckpointFVD

            self.fvd = CheckpointFVD(cfg, self.out)

        # Data, from the resumed position (one pass over the video index); a text cache says T5's width
        self._build_data(start_step=self.meta["step"] * cfg.gradient_accumulation_steps)

        # Models: Latte or LatteT2V (trainable), the frozen VAE unless pixel space or cached, T5 for captions
        dtype = resolve_dtype(cfg.dtype, ctx.device_target)
        text = self._text_encoder(ctx) if cfg.is_text_model else None
        self.latte = self._create_model(text)
        if cfg.pretrained_model_path:
            self._check_pretrained(cfg.pretrained_model_path)
            load_checkpoint_into(self.latte, cfg.pretrained_model_path, f"{cfg.model_name} (pretrained)")
            logger.info("initialized %s from %s", cfg.model_name, cfg.pretrained_model_path)
        self.latte.set_train(True)
        amp_latte = apply_amp(self.latte, dtype)
        vae = None
        if not cfg.pixel_space and not cfg.trains_on_cache:
            from latte.models.vae import load_vae

            vae = load_vae(cfg.vae_checkpoint, dtype=dtype)
            vae.set_train(False)
        if text is None and cfg.data_config.use_image_num and cfg.condition == "class":
            loss_net = JointClassTrainLoss(amp_latte, self.diffusion, vae, cfg.latent_scale, cfg.vae_micro_batch)
        elif text is None:
            loss_net = LatteTrainLoss(amp_latte, self.diffusion, vae, cfg.latent_scale, cfg.vae_micro_batch,
                                      cfg.condition)
        else:
            encoder = latent_encoder(vae, cfg.latent_scale, cfg.vae_micro_batch)
            loss_net = LatteT2VTrainLoss(amp_latte, self.diffusion, text["null"], encoder, text["in_step"])

        # Step, optimizer, EMA, and the resume state
        self.ema = EMA(self.latte.trainable_params(), cfg.ema_decay, cfg.ema_warmup) if cfg.use_ema else None
        lrs = lr_schedule(self.total_steps, cfg.start_learning_rate, cfg.scheduler, cfg.warmup_steps,
                          cfg.end_learning_rate, cfg.decay_steps)
        optimizer = create_optimizer(self.latte.trainable_params(), lrs, tuple(cfg.betas), cfg.optim_eps,
                                     cfg.weight_decay)
        self.train_step = TrainStep(loss_net, optimizer, cfg.loss_scaler_type, cfg.init_loss_scale,
                                    cfg.loss_scale_factor, cfg.scale_window, cfg.gradient_accumulation_steps,
                                    cfg.clip_grad, cfg.max_grad_norm, num_ranks=ctx.group_size,
                                    num_terms=len(LOSS_TERMS) - 1)
        self.step_cell = StepWithEMA(self.train_step, self.ema)
        self.lrs = lrs
        frozen_t5 = text["in_step"].get_parameters() if text and text["in_step"] is not None else ()
        self.state = state_parameters([self.train_step] + ([self.ema] if self.ema is not None else []),
                                      exclude=frozen_t5)  # T5 is loaded from its own file
        if self.resume_path:
            load_state(self.resume_path, self.state)
            logger.info("resumed from %s at optimizer step %d", self.resume_path, self.meta["step"])
        return self

    def _text_encoder(self, ctx):
        """T5's width, the null caption (T5 states and mask of ""), and T5 itself when it runs in the step
        (captions from videos; a cache holds the states, then T5 only encodes "" and is released)."""
        from latte.text.tokenizer import T5Tokenizer

        cfg = self.cfg
        width = self.info.text_encoder.get("width")
        length = cfg.max_text_length
        if not cfg.needs_text_encoder:  # cached states, no dropout: the null caption is never used
            unused = (np.zeros((1, length, width), np.float32), np.zeros((1, length), np.int32))
            return {"width": width, "null": unused, "in_step": None}
        from latte.models import load_t5

        t5_path, tokenizer_path = cfg.text_encoder_files()
        t5 = load_t5(t5_path, dtype=resolve_dtype(cfg.text_encoder_dtype or cfg.dtype, ctx.device_target))
        if width is not None and width != t5.config.d_model:
            raise ValueError(f"text_encoder {t5_path} is {t5.config.d_model} wide but the cache in "
                             f"{cfg.data_config.data_folder!r} holds {width}-wide T5 states: give the text encoder "
                             "the cache was written with")
        null = null_caption(T5Tokenizer(tokenizer_path), t5, length)
        logger.info("text encoder %s (width %d), %d tokens per caption, caption dropout %g to the empty caption",
                    t5_path, t5.config.d_model, length, cfg.caption_dropout_prob)
        return {"width": t5.config.d_model, "null": null, "in_step": None if cfg.trains_on_cache else t5}

    def _create_model(self, text):
        cfg = self.cfg
        if text is None:
            return create_latte(cfg.model_name, **cfg.latte_kwargs())
        from latte.models.latte_t2v import LatteT2V

        self.model_config = cfg.t2v_config(text["width"])  # the record's "config": LatteT2V(**config)
        return LatteT2V(enable_flash_attention=cfg.enable_flash_attention, **self.model_config)

    def _check_pretrained(self, path):
        """A converted or trained checkpoint of another kind or architecture is refused in one line."""
        cfg = self.cfg
        meta = read_meta(path)
        kind, wanted = meta.get("kind"), KIND_T2V if cfg.is_text_model else KIND_CLASS
        if kind is not None and kind != wanted:
            raise CheckpointError(f"pretrained_model_path {path} holds a {kind!r} model but model_name "
                                  f"{cfg.model_name} is a {wanted!r}: give a checkpoint of that kind")
        if kind == KIND_T2V:
            recorded = meta.get("config", {})
            wrong = [f"{k}={recorded[k]} (this run: {self.model_config[k]})" for k in T2V_SHAPE_FIELDS
                     if k in recorded and recorded[k] != self.model_config[k]]
            if wrong:
                raise CheckpointError(f"pretrained_model_path {path} has {', '.join(wrong)}: caption_channels is "
                                      "the text encoder's width, in/out_channels the VAE's latent channels (x2 with "
                                      "learn_sigma), num_layers/patch_size the model_name's")

    def _build_data(self, start_step):
        cfg = self.cfg
        self.dataset, self.info = create_training_dataset(cfg, self.ctx, start_step, self.diffusion.num_timesteps)
        # an epoch is info.steps_per_epoch micro-batches; an optimizer step takes gradient_accumulation_steps of
        # them, so an epoch need not end on an optimizer step: epochs are counted in micro-batches
        self.micro_per_epoch = self.info.steps_per_epoch
        budget = max(cfg.epochs * self.micro_per_epoch // cfg.gradient_accumulation_steps, 1)
        self.total_steps = min(budget, cfg.max_steps) if cfg.max_steps else budget

    # ---- running -----------------------------------------------------------------------------------------
    def key_settings(self):
        c, ctx = self.cfg, self.ctx
        global_batch = c.train_batch_size * c.gradient_accumulation_steps * ctx.group_size
        rows = [("model", f"{c.model_name} ({sum(p.size for p in self.latte.trainable_params()) / 1e6:.1f}M "
                          f"trainable), condition {c.condition}, {c.num_frames}x{c.image_size}x{c.image_size}"
                          + (" pixel space" if c.pixel_space else " from cached latents" if c.trains_on_cache
                             else f", VAE {c.vae_checkpoint}")),
                *([("text", f"{self.model_config['caption_channels']}-wide T5 states "
                            + ("from the cache" if c.trains_on_cache else f"of {c.text_encoder}, frozen in the step")
                            + f", {c.max_text_length} tokens, caption dropout {c.caption_dropout_prob:g}")]
                  if c.is_text_model else []),
                ("data", f"{self.info.num_videos} videos ({c.data_config.train_data_type}"
                         + (f", {c.data_config.use_image_num} images of random videos after each clip"
                            if c.data_config.use_image_num else "") + "), "
                         f"{self.micro_per_epoch / c.gradient_accumulation_steps:g} optimizer steps per epoch, shard {ctx.rank}/{ctx.group_size}"),
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
        if self.fvd:
            rows.append(("fvd", f"at each checkpoint: {c.fvd_num_videos} generated videos ({c.sample_steps} "
                                f"{'DDIM' if c.sample_ddim else 'DDPM'} steps) against {self.fvd.real.num_items} "
                                f"held-out clips of {c.num_frames} frames, every {c.fvd_subsample}-th, of "
                                f"{c.fvd_real_data_path}"))
        return rows

    def _sink_or_loop(self):
        cfg = self.cfg
        if cfg.dataset_sink_mode and self.ctx.device_target == "CPU":
            logger.info("dataset_sink_mode: MindSpore cannot sink data on CPU; feeding step by step instead")
        if cfg.dataset_sink_mode and self.ctx.device_target != "CPU":
            accum = cfg.gradient_accumulation_steps
            sink = max(self.micro_per_epoch // accum, 1) * accum if cfg.sink_size == -1 else cfg.sink_size
            if sink % accum:
                raise ValueError(f"sink_size={sink} is not a multiple of gradient_accumulation_steps={accum}: each "
                                 "sunk call must end an optimizer step; choose a multiple")
            return ms.data_sink(self.step_cell, self.dataset, sink_size=sink), sink
        return None, 1

    def fit(self):
        """Trains to total_steps (the compiled graphs reused from an earlier run of these settings when cached)."""
        cfg = self.cfg
        settings = dict(to_dict(cfg), total_steps=self.total_steps, micro_per_epoch=self.micro_per_epoch,
                        num_videos=self.info.num_videos)  # the data decide the schedule's length
        with graph_cache(cfg.graph_cache, cfg.output_path, "train.py", settings, self.ctx):
            return self._fit()

    def _fit(self):
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            save_config(cfg, os.path.join(self.out, "config.yaml"))
        log_key_settings(self.key_settings())
        fields = METRIC_FIELDS + (CHECKPOINT_FIELDS if cfg.fvd_at_checkpoint else ())
        metrics = MetricsCSV(os.path.join(self.out, "metrics.csv"), fields,
                             self.meta["step"] if self.resume_path else None) if ctx.is_main else None
        step, accum, skipped = self.meta["step"], cfg.gradient_accumulation_steps, 0
        sink_fn, per_call = self._sink_or_loop()
        batches = None if sink_fn else iterate_batches(self.dataset)  # epoch after epoch
        if batches is not None and step < self.total_steps:
            first = next(batches)
            compile_and_release(self.step_cell, *first)  # the compiler's freed pages go back before step 1
            batches = itertools.chain([first], batches)
        bar = progress(total=self.total_steps, initial=step, desc="train", disable=not ctx.is_main, unit="step")
        last_save = step
        window_start = time.perf_counter()
        while step < self.total_steps:
            stats, scale, boundary, applied = sink_fn() if sink_fn else self.step_cell(*next(batches))
            if not bool(boundary.asnumpy()):
                continue  # inside an accumulation window: no optimizer step yet
            elapsed = time.perf_counter() - window_start
            window_start = time.perf_counter()
            advanced = max(per_call // accum, 1)  # one optimizer step per window (sinking: per_call micro-steps)
            step += advanced
            skipped += 0 if bool(applied.asnumpy()) else 1
            terms = dict(zip(LOSS_TERMS, (float(v) for v in stats.asnumpy())))  # window and rank means
            bar.update(advanced)
            bar.set_postfix({k: f"{v:.4f}" for k, v in terms.items()})
            row = None
            if step % cfg.log_interval == 0:
                lr = self.lrs[min(step - 1, len(self.lrs) - 1)]
                logger.info("step %d: loss %.6f (mse %.6f, vb %.6f), lr %.3e, loss scale %g", step, terms["loss"],
                            terms["mse"], terms["vb"], lr, float(scale.asnumpy()))
                row = dict({k: f"{v:.6f}" for k, v in terms.items()}, step=step, epoch=self.epoch_of(step - 1),
                           lr=f"{lr:.3e}", loss_scale=f"{float(scale.asnumpy()):g}", overflow_steps=skipped,
                           step_time_s=f"{elapsed:.4f}",
                           images_per_s=f"{cfg.train_batch_size * cfg.num_frames * accum / elapsed:.2f}")
            if self._should_save(step) or step >= self.total_steps:
                self.checkpoint(step, row, metrics)
                last_save = step
                window_start = time.perf_counter()
            elif row and metrics:
                metrics.append(row)
        bar.close()
        if last_save != step:
            self.checkpoint(step, None, metrics)
        logger.info("finished at optimizer step %d (%d skipped for non-finite gradients)", step, skipped)
        self.log_weights_digest(step)
        return step

    def log_weights_digest(self, step):
        """Every rank logs a digest of its weights: data-parallel ranks must hold bit-identical weights (and EMA),
        and rank 0's equal those of its checkpoint of this step (run_state.weights_digest of the file)."""
        raw, averaged = named_weights(self.latte, self.ema)
        logger.info("weights digest at step %d, rank %d/%d: raw %s%s", step, self.ctx.rank, self.ctx.group_size,
                    weights_digest(raw), f", EMA {weights_digest(averaged)}" if averaged is not None else "")

    def _should_save(self, step):
        cfg = self.cfg
        if cfg.step_mode:
            return step % cfg.ckpt_save_interval == 0
        epoch = self.epoch_of(step)  # saved when this optimizer step completed an epoch
        return epoch > self.epoch_of(step - 1) and epoch % cfg.ckpt_save_interval == 0

    def epoch_of(self, step):
        """Data epochs completed after `step` optimizer steps."""
        return step * self.cfg.gradient_accumulation_steps // self.micro_per_epoch

    def checkpoint(self, step, row, metrics):
        """Saves step `step`; its metrics row (`row`: the step's losses when it was logged) gets the checkpoint's
        columns (the FVD), and the loss curve is redrawn."""
        columns = self.save(step)
        if metrics is None:
            return
        if row or columns:
            metrics.append(dict(row or {"step": step, "epoch": self.epoch_of(step - 1)}, **columns))
        plot_loss_curve(os.path.join(self.out, "metrics.csv"), os.path.join(self.out, "loss_curve.png"))

    def save(self, step):
        """Writes the weights and the resume state (rank 0), then the checkpoint's samples and FVD; returns the
        checkpoint's metrics columns."""
        if not self.ctx.is_main:
            return {}
        raw, averaged = named_weights(self.latte, self.ema)
        meta = dict(self._weights_meta(), step=step)
        weights = self.ckpt.save(step, self.state, raw, dict(meta, weights="raw"), ema_weights=averaged,
                                 ema_meta=dict(meta, weights="ema"), epoch=self.epoch_of(step),
                                 **self.resume_settings())
        logger.info("saved %s and the resume state", weights)
        if not (self.cfg.sample_at_checkpoint or self.fvd):
            return {}
        if self._sampler is None:
            self._sampler = CheckpointSampler(self.cfg, self.ctx)
        self._sampler.load(weights)  # the EMA weights when the run keeps them
        if self.cfg.sample_at_checkpoint:
            CheckpointSamples(self.cfg).write(step, self._sampler, os.path.join(self.out, "samples"))
        if self.fvd:
            return {"fvd": f"{self.fvd.measure(step, self._sampler):.8g}"}
        return {}


def _spec(model_name):
    from latte.models.registry import model_spec

    return model_spec(model_name)
