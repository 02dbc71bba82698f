"""Gradient accumulation, optional clipping and the optimizer update: the part of a train step shared by the
Latte trainer and the VAE trainer (inside their compiled graphs)."""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.amp import all_finite


class Updater(nn.Cell):
    """construct(grads) -> (finite, updated) for the parameters of `optimizer`.

    Each call adds one micro-step's gradients, averaged over accum_steps; every accum_steps-th call clips them
    (global norm, when clip_grad) and runs the optimizer. A micro-step with non-finite gradients is dropped.
    State (counter `<prefix>.micro_step`, sums `<prefix>.accum.*`) lives in Parameters, so it is resumable.
    """

    def __init__(self, optimizer, accum_steps=1, clip_grad=False, max_grad_norm=1.0, prefix="train",
                 accum_key="gradient_accumulation_steps"):
        super().__init__(auto_prefix=False)
        if accum_steps < 1:
            raise ValueError(f"{accum_key}={accum_steps} must be >= 1")
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.accum_steps = accum_steps
        self.clip_grad = clip_grad
        self.max_grad_norm = max_grad_norm
        self.micro_step = Parameter(Tensor(0, ms.int32), name=f"{prefix}.micro_step", requires_grad=False)
        if accum_steps > 1:
            self.accum = self.weights.clone(prefix=f"{prefix}.accum", init="zeros")
        self.hyper_map = ops.HyperMap()

    def _apply(self, grads):
        if self.clip_grad:
            grads = ops.clip_by_global_norm(grads, self.max_grad_norm)
        return self.optimizer(grads)

    def construct(self, grads):
        finite = all_finite(grads)
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
        return finite, updated


def _accumulate(weight, acc, grad):
    return ops.assign_add(acc, grad.astype(acc.dtype) * weight)


def _zero(acc):
    return ops.assign(acc, ops.zeros_like(acc))
