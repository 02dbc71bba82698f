"""Learning-rate schedules and AdamW (torch.optim.AdamW's update) with weight decay exempting norms and biases.

MindSpore's nn.AdamWeightDecay has no bias correction: its first few hundred updates are up to ~6x larger than
torch's (ratio (1 - beta1^t) / sqrt(1 - beta2^t)), so the official Latte's optimizer is written out here.
"""
import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from latte.kernels import adamw_in_place_kernel, native_float32
from latte.options import SCHEDULERS

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


_adamw_update = ops.MultitypeFuncGraph("adamw_update")


@_adamw_update.register("Number", "Number", "Number", "Tensor", "Tensor", "Tensor", "Tensor", "Number",
                        "Tensor", "Tensor", "Tensor", "Tensor")
def _adamw_param(beta1, beta2, eps, lr, step_size, bias_correction2_sqrt, one, weight_decay, param, m, v, grad):
    """One parameter's torch.optim.AdamW step (single-tensor path), computed in fp32."""
    p32 = param.astype(ms.float32)
    g32 = grad.astype(ms.float32)
    if weight_decay != 0.0:
        p32 = p32 * (one - lr * weight_decay)  # decoupled decay, before the moment update
    next_m = m + (g32 - m) * (1.0 - beta1)  # exp_avg.lerp_(grad, 1 - beta1)
    next_v = v * beta2 + g32 * g32 * (1.0 - beta2)
    denom = ops.sqrt(next_v) / bias_correction2_sqrt + eps
    p32 = p32 - step_size * (next_m / denom)  # param.addcdiv_(exp_avg, denom, value=-step_size)
    ops.assign(m, next_m)
    ops.assign(v, next_v)
    return ops.assign(param, p32.astype(param.dtype))


class AdamW(nn.Optimizer):
    """torch.optim.AdamW, update for update: bias-corrected moments, decoupled weight decay, eps added after the
    bias-corrected square root. `weight_decays` gives each parameter its decay (norms/biases: 0).

    State: moments `adam_m.*` / `adam_v.*` and the optimizer step `global_step` (the bias corrections use it,
    so it is part of every resume state).
    """

    def __init__(self, params, learning_rate, weight_decays, beta1=0.9, beta2=0.999, eps=1e-8, kernels=None):
        super().__init__(learning_rate, params)
        if len(weight_decays) != len(self._parameters):
            raise ValueError(f"{len(weight_decays)} weight decays for {len(self._parameters)} parameters")
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value} must be in [0, 1)")
        if eps <= 0:
            raise ValueError(f"eps={eps} must be > 0")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decays = tuple(float(w) for w in weight_decays)
        self.moments1 = self._parameters.clone(prefix="adam_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="adam_v", init="zeros")
        self.one = Tensor(1.0, ms.float32)
        # on CPU the update of float32 weights (AMP keeps them float32) runs as one fused native op that writes
        # every weight and moment in place: 12 elementwise MindSpore ops and 3 Assigns per parameter otherwise
        self.fused = adamw_in_place_kernel() if native_float32(self._parameters, kernels) else None
        if self.fused is not None:  # graph constants: nothing per parameter is computed at each step
            self.decays = Tensor(np.array(self.weight_decays, np.float32))
            self.betas_eps = Tensor(np.array([beta1, beta2, eps], np.float32))

    def construct(self, gradients):
        lr = self.get_lr()  # the learning rate of the current step (global_step before the increment)
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        step = self.global_step.astype(ms.float32)  # t = 1 at the first update
        bias_correction1 = self.one - ops.pow(self.beta1, step)
        bias_correction2_sqrt = ops.sqrt(self.one - ops.pow(self.beta2, step))
        step_size = lr / bias_correction1
        if self.fused is not None:
            # (6,) = [lr, beta1, beta2, eps, step_size, bias_correction2_sqrt], built once for all parameters
            hyper = ops.cat([lr.reshape(1), self.betas_eps, step_size.reshape(1), bias_correction2_sqrt.reshape(1)])
            return self.fused(hyper, self.decays, *self._parameters, *self.moments1, *self.moments2, *gradients)
        return self.hyper_map(
            ops.partial(_adamw_update, self.beta1, self.beta2, self.eps, lr, step_size, bias_correction2_sqrt,
                        self.one),
            self.weight_decays, self._parameters, self.moments1, self.moments2, gradients)


def create_optimizer(params, lrs, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, kernels=None):
    """AdamW with a per-step learning-rate list; norms, biases and fixed tables are not decayed.
    kernels: the update's formulation (latte.kernels.KERNEL_BACKENDS); None picks this device's."""
    params = list(params)
    _, no_decay = split_decay_groups(params)
    exempt = {id(p) for p in no_decay}
    decays = [0.0 if id(p) in exempt else weight_decay for p in params]
    return AdamW(params, list(map(float, lrs)), decays, beta1=betas[0], beta2=betas[1], eps=eps, kernels=kernels)
