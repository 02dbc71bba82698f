"""The compiled train step: value_and_grad, loss scaling, accumulation, one all-reduce per optimizer step,
overflow check, clipping, optimizer; and that step followed by the EMA update in the same graph (StepWithEMA).

All state it changes (weights, optimizer moments, loss scale, accumulated gradients) is held in Parameters of
this cell, so saving the cell saves everything an exact resume needs.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.graph.api import _pynative_executor

from latte.options import LOSS_SCALERS
from latte.training.updater import Updater


class TrainStep(nn.Cell):
    """One micro-step per call; the optimizer runs at the end of every window of `grad_accum_steps` calls.

    `loss_net` returns a tuple (loss, *terms): the loss is differentiated (value_and_grad with has_aux), loss and
    terms are logged (num_terms = len(terms)). Returns (stats, loss_scale, boundary, applied): stats (1 +
    num_terms,) the mean of (loss, *terms) over the window and the ranks (what one process with the global batch
    reports; meaningful when boundary), the loss scale of this micro-step, whether it ended a window (one optimizer
    step, taken or skipped), and whether the weights changed (no micro-step of the window, on any rank, had
    non-finite gradients; otherwise the update is skipped and a dynamic scale lowered). Gradients are all-reduced
    once per window (see Updater), never per micro-step.
    """

    def __init__(self, loss_net, optimizer, loss_scaler="dynamic", init_loss_scale=65536.0, scale_factor=2.0,
                 scale_window=1000, grad_accum_steps=1, clip_grad=False, max_grad_norm=1.0, num_ranks=1,
                 num_terms=0):
        super().__init__(auto_prefix=False)
        if loss_scaler not in LOSS_SCALERS:
            raise ValueError(f"loss_scaler={loss_scaler!r} is not one of {LOSS_SCALERS}")
        self.loss_net = loss_net
        self.updater = Updater(optimizer, grad_accum_steps, clip_grad, max_grad_norm, prefix="train",
                               num_ranks=num_ranks, num_stats=1 + num_terms)
        self.num_outputs = 1 + num_terms
        self.weights = optimizer.parameters
        self.grad_fn = ops.value_and_grad(self._scaled_loss, None, self.weights, has_aux=True)
        self.dynamic = loss_scaler == "dynamic"
        self.scaled = loss_scaler != "none"
        init_loss_scale = 1.0 if loss_scaler == "none" else init_loss_scale
        self.loss_scale = Parameter(Tensor(init_loss_scale, ms.float32), name="train.loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="train.good_steps", requires_grad=False)
        self.scale_factor = scale_factor
        self.scale_window = scale_window
        self.hyper_map = ops.HyperMap()

    def __call__(self, *inputs):
        try:
            return super().__call__(*inputs)
        except Exception:
            if ms.get_context("mode") == ms.PYNATIVE_MODE:
                # MindSpore 2.10 keeps an aborted PyNative grad's graph open: every later grad in the process nests
                # in it (wrong gradients, or "MaxPoolGradGrad does not support on CPU"). Close it before raising.
                _pynative_executor.clear_res()
            raise

    def _scaled_loss(self, *inputs):
        outputs = self.loss_net(*inputs)  # (loss, *terms)
        if len(outputs) != self.num_outputs:
            raise ValueError(f"loss_net returned {len(outputs)} values but TrainStep expects (loss, *terms) with "
                             f"num_terms={self.num_outputs - 1}: pass num_terms={len(outputs) - 1}")
        return (outputs[0] * self.loss_scale,) + outputs[1:]

    def _adjust_scale(self, applied):
        """After an optimizer step: raise the scale after scale_window good steps, lower it after a skipped one."""
        if applied:
            ops.assign_add(self.good_steps, Tensor(1, ms.int32))
            if self.good_steps >= self.scale_window:
                ops.assign(self.loss_scale, self.loss_scale * self.scale_factor)
                ops.assign(self.good_steps, Tensor(0, ms.int32))
        else:
            ops.assign(self.loss_scale, ops.maximum(self.loss_scale / self.scale_factor, Tensor(1.0, ms.float32)))
            ops.assign(self.good_steps, Tensor(0, ms.int32))
        return applied

    def construct(self, *inputs):
        scale = self.loss_scale.value()
        outputs, grads = self.grad_fn(*inputs)
        stats = ops.stack((outputs[0] / scale,) + outputs[1:]).astype(ms.float32)  # (1 + num_terms,) unscaled
        if self.scaled:  # without loss scaling the scale is 1: no pass over every gradient to divide by it
            grads = self.hyper_map(ops.partial(_unscale, scale), grads)
        boundary, applied, window_stats = self.updater(grads, stats)
        if self.dynamic:
            if boundary:
                self._adjust_scale(applied)
        return window_stats, scale, boundary, applied


def _unscale(scale, grad):
    return grad / scale.astype(grad.dtype)


class StepWithEMA(nn.Cell):
    """The train step followed by the EMA update when the weights changed: one graph, also when sinking."""

    def __init__(self, train_step, ema):
        super().__init__(auto_prefix=False)
        self.train_step = train_step
        self.ema = ema

    def construct(self, *inputs):
        stats, scale, boundary, applied = self.train_step(*inputs)
        if self.ema is not None:
            if applied:
                self.ema()
        return stats, scale, boundary, applied
