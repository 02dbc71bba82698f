"""Gradient accumulation, the data-parallel reduction, optional clipping and the optimizer update: the part of a
train step shared by the Latte trainer and the VAE trainer (inside their compiled graphs)."""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.amp import all_finite

from latte.kernels import native_float32, nonfinite_kernel


class Updater(nn.Cell):
    """construct(grads, stats=None) -> (boundary, applied, window_stats) for the parameters of `optimizer`.

    An optimizer step is a window of accum_steps micro-steps (calls). Each call adds its gradients, averaged over
    the window, to local sums (no communication), and its `stats` (a 1-D float32 tensor of values to log, e.g.
    the loss and its terms) likewise. The window's last call (`boundary`) all-reduces, in ONE collective over
    all ranks, the summed gradients, the summed stats and the count of micro-steps with non-finite gradients
    (so every rank takes the same decision), then clips (global norm, when clip_grad) and runs the optimizer
    unless a micro-step of the window, on any rank, was non-finite (`applied`). window_stats is the mean of
    `stats` over the window and the ranks (meaningful at a boundary).

    State (the window position `<prefix>.micro_step`, sums `<prefix>.accum.*`, `<prefix>.window_stats`,
    `<prefix>.window_nonfinite`) lives in Parameters, so it is resumable; the optimizer counts its own steps.
    """

    def __init__(self, optimizer, accum_steps=1, clip_grad=False, max_grad_norm=1.0, prefix="train",
                 accum_key="gradient_accumulation_steps", num_ranks=1, num_stats=0):
        super().__init__(auto_prefix=False)
        if accum_steps < 1:
            raise ValueError(f"{accum_key}={accum_steps} must be >= 1")
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.accum_steps = accum_steps
        self.clip_grad = clip_grad
        self.max_grad_norm = max_grad_norm
        self.num_ranks = num_ranks
        self.num_stats = num_stats
        self.micro_step = Parameter(Tensor(0, ms.int32), name=f"{prefix}.micro_step", requires_grad=False)
        self.window_nonfinite = Parameter(Tensor(0.0, ms.float32), name=f"{prefix}.window_nonfinite",
                                          requires_grad=False)
        self.window_stats = Parameter(Tensor([0.0] * max(num_stats, 1), ms.float32), name=f"{prefix}.window_stats",
                                      requires_grad=False)
        if accum_steps > 1:
            self.accum = self.weights.clone(prefix=f"{prefix}.accum", init="zeros")
        # the one collective of an optimizer step: gradients, stats and non-finite count in one flat buffer
        self.all_reduce = ops.AllReduce() if num_ranks > 1 else None
        self.shapes = tuple(tuple(p.shape) for p in self.weights)
        self.sizes = tuple(int(p.size) for p in self.weights) + (max(num_stats, 1) + 1,)
        self.hyper_map = ops.HyperMap()
        # on CPU one native op reads every float32 gradient once (MindSpore's IsFinite + ReduceAll per gradient
        # was ~15% of a small train step; one op per gradient instead of one for all compiled slower, peaked higher)
        self.nonfinite_kernel = nonfinite_kernel() if native_float32(self.weights) else None

    def _nonfinite(self, grads):
        """1.0 (0-d float32) when any gradient holds a NaN or an infinity, else 0.0."""
        if self.nonfinite_kernel is None:
            return 1.0 - all_finite(grads).astype(ms.float32)
        return self.nonfinite_kernel(*grads).reshape(())

    def _reduce(self, grads, stats, nonfinite):
        """Sums over ranks, then / num_ranks: (mean gradients (fp32), mean stats, non-finite count / num_ranks)."""
        flat = ops.cat([g.astype(ms.float32).reshape(-1) for g in grads] + [stats, nonfinite.reshape(1)])
        parts = ops.split(self.all_reduce(flat) / self.num_ranks, self.sizes)
        grads = tuple(part.reshape(shape) for part, shape in zip(parts[:-1], self.shapes))
        extras = parts[-1]  # (num_stats + 1,)
        return grads, extras[:-1], extras[-1]

    def _apply(self, grads):
        if self.clip_grad:
            grads = ops.clip_by_global_norm(grads, self.max_grad_norm)
        return self.optimizer(grads)

    def construct(self, grads, stats=None):
        if stats is None:
            stats = ops.zeros((1,), ms.float32)
        nonfinite = self._nonfinite(grads)
        boundary = Tensor(True)
        applied = Tensor(False)
        window_stats = stats
        if self.accum_steps == 1:
            if self.all_reduce is not None:
                grads, window_stats, nonfinite = self._reduce(grads, stats, nonfinite)
            if nonfinite == 0.0:
                self._apply(grads)
                applied = Tensor(True)
        else:
            weight = 1.0 / self.accum_steps
            self.hyper_map(ops.partial(_accumulate, weight), self.accum, grads)
            ops.assign_add(self.window_stats, stats * weight)
            ops.assign_add(self.window_nonfinite, nonfinite)
            ops.assign_add(self.micro_step, Tensor(1, ms.int32))
            boundary = self.micro_step >= self.accum_steps
            window_stats = self.window_stats.value()
            if boundary:
                window_grads = self.accum
                window_nonfinite = self.window_nonfinite.value()
                if self.all_reduce is not None:
                    window_grads, window_stats, window_nonfinite = self._reduce(self.accum, window_stats,
                                                                                window_nonfinite)
                if window_nonfinite == 0.0:
                    self._apply(window_grads)
                    applied = Tensor(True)
                self.hyper_map(_zero, self.accum)
                ops.assign(self.window_stats, ops.zeros_like(self.window_stats))
                ops.assign(self.window_nonfinite, Tensor(0.0, ms.float32))
                ops.assign(self.micro_step, Tensor(0, ms.int32))
        return boundary, applied, window_stats


def _accumulate(weight, acc, grad):
    return ops.assign_add(acc, grad.astype(acc.dtype) * weight)


def _zero(acc):
    return ops.assign(acc, ops.zeros_like(acc))
