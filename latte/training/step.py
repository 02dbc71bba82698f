"""The compiled train step: value_and_grad, loss scaling, overflow check, accumulation, clipping, optimizer.

All state it changes (weights, optimizer moments, loss scale, accumulated gradients) is held in Parameters of
this cell, so saving the cell saves everything an exact resume needs.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from latte.options import LOSS_SCALERS
from latte.training.updater import Updater


class TrainStep(nn.Cell):
    """One micro-step per call; the optimizer runs every `grad_accum_steps` calls on the averaged gradients.

    Returns (loss, finite, loss_scale, updated): the unscaled loss (the mean over ranks when num_ranks > 1),
    whether the gradients were finite (an overflowed micro-step is dropped and the scale lowered), the scale
    used, and whether weights changed.
    """

    def __init__(self, loss_net, optimizer, loss_scaler="dynamic", init_loss_scale=65536.0, scale_factor=2.0,
                 scale_window=1000, grad_accum_steps=1, clip_grad=False, max_grad_norm=1.0, grad_reducer=None,
                 num_ranks=1):
        super().__init__(auto_prefix=False)
        if loss_scaler not in LOSS_SCALERS:
            raise ValueError(f"loss_scaler={loss_scaler!r} is not one of {LOSS_SCALERS}")
        self.loss_net = loss_net
        self.updater = Updater(optimizer, grad_accum_steps, clip_grad, max_grad_norm, prefix="train")
        self.weights = optimizer.parameters
        self.grad_fn = ops.value_and_grad(self._scaled_loss, None, self.weights)
        self.dynamic = loss_scaler == "dynamic"
        init_loss_scale = 1.0 if loss_scaler == "none" else init_loss_scale
        self.loss_scale = Parameter(Tensor(init_loss_scale, ms.float32), name="train.loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="train.good_steps", requires_grad=False)
        self.scale_factor = scale_factor
        self.scale_window = scale_window
        self.grad_reducer = grad_reducer
        # data parallel: the returned loss is the mean over ranks (what one process with the global batch reports)
        self.num_ranks = num_ranks
        self.loss_sum = ops.AllReduce() if num_ranks > 1 else None
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

    def construct(self, *inputs):
        scale = self.loss_scale.value()
        scaled_loss, grads = self.grad_fn(*inputs)
        loss = scaled_loss / scale
        grads = self.hyper_map(ops.partial(_unscale, scale), grads)
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        if self.loss_sum is not None:
            loss = self.loss_sum(loss) / self.num_ranks
        finite, updated = self.updater(grads)
        self._adjust_scale(finite)
        return loss, finite, scale, updated


def _unscale(scale, grad):
    return grad / scale.astype(grad.dtype)
