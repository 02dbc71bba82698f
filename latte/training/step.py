"""The compiled train step: value_and_grad, loss scaling, overflow check, accumulation, clipping, optimizer.

All state it changes (weights, optimizer moments, loss scale, accumulated gradients) is held in Parameters of
this cell, so saving the cell saves everything an exact resume needs.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.amp import all_finite

LOSS_SCALERS = ("dynamic", "static", "none")


class TrainStep(nn.Cell):
    """One micro-step per call; the optimizer runs every `grad_accum_steps` calls on the averaged gradients.

    Returns (loss, finite, loss_scale, updated): the unscaled loss, whether the gradients were finite (an
    overflowed micro-step is dropped and the scale lowered), the scale used, and whether weights changed.
    """

    def __init__(self, loss_net, optimizer, loss_scaler="dynamic", init_loss_scale=65536.0, scale_factor=2.0,
                 scale_window=1000, grad_accum_steps=1, clip_grad=False, max_grad_norm=1.0, grad_reducer=None):
        super().__init__(auto_prefix=False)
        if loss_scaler not in LOSS_SCALERS:
            raise ValueError(f"loss_scaler={loss_scaler!r} is not one of {LOSS_SCALERS}")
        if grad_accum_steps < 1:
            raise ValueError(f"gradient_accumulation_steps={grad_accum_steps} must be >= 1")
        self.loss_net = loss_net
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad_fn = ops.value_and_grad(self._scaled_loss, None, self.weights)
        self.dynamic = loss_scaler == "dynamic"
        init_loss_scale = 1.0 if loss_scaler == "none" else init_loss_scale
        self.loss_scale = Parameter(Tensor(init_loss_scale, ms.float32), name="train.loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="train.good_steps", requires_grad=False)
        self.scale_factor = scale_factor
        self.scale_window = scale_window
        self.accum_steps = grad_accum_steps
        self.micro_step = Parameter(Tensor(0, ms.int32), name="train.micro_step", requires_grad=False)
        if grad_accum_steps > 1:
            self.accum = self.weights.clone(prefix="train.accum", init="zeros")
        self.clip_grad = clip_grad
        self.max_grad_norm = max_grad_norm
        self.grad_reducer = grad_reducer
        self.hyper_map = ops.HyperMap()

    def _scaled_loss(self, *inputs):
        return self.loss_net(*inputs) * self.loss_scale

    def _adjust_scale(self, finite):
        if not self.dynamic:
            return finite
        if finite:
            ops.assign_add(self.good_steps, Tensor(1, ms.int32))
            if self.good_steps >= self.scale_window:
                ops.assign(self.loss_scale, self.loss_scale * self.scale_factor)
                ops.assign(self.good_steps, Tensor(0, ms.int32))
        else:
            ops.assign(self.loss_scale, ops.maximum(self.loss_scale / self.scale_factor, Tensor(1.0, ms.float32)))
            ops.assign(self.good_steps, Tensor(0, ms.int32))
        return finite

    def _apply(self, grads):
        if self.clip_grad:
            grads = ops.clip_by_global_norm(grads, self.max_grad_norm)
        return self.optimizer(grads)

    def construct(self, *inputs):
        scale = self.loss_scale.value()
        scaled_loss, grads = self.grad_fn(*inputs)
        loss = scaled_loss / scale
        grads = self.hyper_map(ops.partial(_unscale, scale), grads)
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        finite = all_finite(grads)
        self._adjust_scale(finite)
        updated = Tensor(False)
        if self.accum_steps == 1:
            if finite:
                self._apply(grads)
                updated = Tensor(True)
        else:
            if finite:
                self.hyper_map(ops.partial(_accumulate, 1.0 / self.accum_steps), self.accum, grads)
                ops.assign_add(self.micro_step, Tensor(1, ms.int32))
                if self.micro_step >= self.accum_steps:
                    self._apply(self.accum)
                    self.hyper_map(_zero, self.accum)
                    ops.assign(self.micro_step, Tensor(0, ms.int32))
                    updated = Tensor(True)
        return loss, finite, scale, updated


def _unscale(scale, grad):
    return grad / scale.astype(grad.dtype)


def _accumulate(weight, acc, grad):
    return ops.assign_add(acc, grad.astype(acc.dtype) * weight)


def _zero(acc):
    return ops.assign(acc, ops.zeros_like(acc))
