"""Learning-rate schedules and AdamW with weight decay exempting norms and biases."""
import math

import numpy as np
from mindspore import nn

SCHEDULERS = ("constant", "cosine_decay")
# parameter names that never get weight decay (norm scales/offsets, biases, fixed tables)
NO_DECAY_MARKERS = ("bias", "gamma", "beta", "norm", "pos_embed", "temp_embed")


def lr_schedule(total_steps, start_lr, scheduler="constant", warmup_steps=0, end_lr=0.0, decay_steps=0):
    """Per-optimizer-step learning rates (float32 array of length total_steps).

    Linear warm-up from 0 over warmup_steps, then constant or cosine from start_lr to end_lr over decay_steps
    (0: the remaining steps).
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler={scheduler!r} is not one of {SCHEDULERS}")
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be >= 1")
    steps = np.arange(total_steps, dtype=np.float64)
    lrs = np.full(total_steps, start_lr, dtype=np.float64)
    if scheduler == "cosine_decay":
        span = decay_steps or max(total_steps - warmup_steps, 1)
        progress = np.clip((steps - warmup_steps) / span, 0.0, 1.0)
        lrs = end_lr + 0.5 * (start_lr - end_lr) * (1 + np.cos(math.pi * progress))
    if warmup_steps > 0:
        warm = steps < warmup_steps
        lrs[warm] = start_lr * (steps[warm] + 1) / warmup_steps
    return lrs.astype(np.float32)


def split_decay_groups(params):
    """(decayed, not decayed) trainable parameters; norms, biases and fixed tables are not decayed."""
    decay, no_decay = [], []
    for p in params:
        (no_decay if any(m in p.name for m in NO_DECAY_MARKERS) or p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def create_optimizer(params, lrs, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
    """AdamW (nn.AdamWeightDecay: works on CPU, GPU and Ascend) with a per-step learning-rate list."""
    decay, no_decay = split_decay_groups(params)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    return nn.AdamWeightDecay(groups, learning_rate=list(map(float, lrs)), beta1=betas[0], beta2=betas[1], eps=eps)
