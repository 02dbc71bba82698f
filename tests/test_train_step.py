"""TrainStep (accumulation, loss scaling with overflow skip, clipping), EMA and LR schedules."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn

from latte.training.ema import EMA
from latte.training.optim import create_optimizer, lr_schedule, split_decay_groups
from latte.training.step import TrainStep
from latte.training.step import StepWithEMA
from latte.training.updater import Updater


class ToyLoss(nn.Cell):
    """(loss, mse): the mean squared error of a small MLP; `poison` > 0 makes the loss overflow on purpose."""

    def __init__(self, seed=0):
        super().__init__()
        r = np.random.default_rng(seed)
        self.net = nn.SequentialCell(nn.Dense(6, 8), nn.GELU(), nn.Dense(8, 3))
        for p in self.net.trainable_params():
            p.set_data(Tensor(r.standard_normal(p.shape).astype(np.float32) * 0.3))

    def construct(self, x, target, poison):
        err = (self.net(x) - target) ** 2
        return err.mean() + poison * 1e38 * err.sum(), err.mean()


def make_step(accum=1, scaler="dynamic", seed=0, **kw):
    loss_net = ToyLoss(seed)
    opt = create_optimizer(loss_net.trainable_params(), lr_schedule(100, 1e-2), weight_decay=0.01)
    return loss_net, TrainStep(loss_net, opt, loss_scaler=scaler, init_loss_scale=1024.0, scale_window=3,
                               grad_accum_steps=accum, num_terms=1, **kw)


def batch(n, seed):
    r = np.random.default_rng(seed)
    return (Tensor(r.standard_normal((n, 6)).astype(np.float32)), Tensor(r.standard_normal((n, 3)).astype(np.float32)))


def weights(cell):
    return [p.asnumpy().copy() for p in cell.trainable_params()]




def test_accumulation_equals_bigger_batch(mode):
    zero = Tensor(0.0, ms.float32)
    big_net, big = make_step(accum=1)
    acc_net, acc = make_step(accum=2)
    for step in range(3):
        x, y = batch(4, step)
        big_stats = big(x, y, zero)[0].asnumpy()
        _, _, boundary, applied = acc(x[:2], y[:2], zero)
        assert not bool(boundary.asnumpy()) and not bool(applied.asnumpy())  # inside the window
        stats, _, boundary, applied = acc(x[2:], y[2:], zero)
        assert bool(boundary.asnumpy()) and bool(applied.asnumpy())
        np.testing.assert_allclose(stats.asnumpy(), big_stats, rtol=1e-5)  # (loss, mse): the window mean
    for a, b in zip(weights(big_net), weights(acc_net)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_overflow_is_skipped_and_scale_lowered(mode):
    loss_net, step = make_step(scaler="dynamic")
    x, y = batch(4, 0)
    before = weights(loss_net)
    _, scale, boundary, applied = step(x, y, Tensor(1.0, ms.float32))
    assert bool(boundary.asnumpy()) and not bool(applied.asnumpy())
    assert float(scale.asnumpy()) == 1024.0 and float(step.loss_scale.asnumpy()) == 512.0
    for a, b in zip(before, weights(loss_net)):
        np.testing.assert_array_equal(a, b)
    for _ in range(3):  # scale_window=3 good steps raise the scale again
        _, _, boundary, applied = step(x, y, Tensor(0.0, ms.float32))
        assert bool(boundary.asnumpy()) and bool(applied.asnumpy())
    assert float(step.loss_scale.asnumpy()) == 1024.0


def test_loss_is_unscaled_and_static_scale_fixed():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    loss_net, step = make_step(scaler="static")
    x, y = batch(4, 0)
    expected = [float(v.asnumpy()) for v in loss_net(x, y, Tensor(0.0, ms.float32))]
    stats, _, _, _ = step(x, y, Tensor(0.0, ms.float32))
    np.testing.assert_allclose(stats.asnumpy(), expected, rtol=0, atol=1e-5)  # (loss, mse), unscaled
    step(x, y, Tensor(1.0, ms.float32))
    assert float(step.loss_scale.asnumpy()) == 1024.0


def test_loss_terms_must_match_num_terms(mode):
    loss_net = ToyLoss()  # returns (loss, mse): one term
    step = TrainStep(loss_net, create_optimizer(loss_net.trainable_params(), lr_schedule(10, 1e-2)))
    with pytest.raises(ValueError, match="loss_net returned 2 values .* num_terms=0: pass num_terms=1"):
        step(*batch(4, 0), Tensor(0.0, ms.float32))


def test_clipping_bounds_the_global_norm():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    loss_net = ToyLoss()
    lr, max_norm = 0.1, 1e-3
    step = TrainStep(loss_net, nn.SGD(loss_net.trainable_params(), learning_rate=lr), loss_scaler="none",
                     clip_grad=True, max_grad_norm=max_norm, num_terms=1)
    start = weights(loss_net)
    step(*batch(4, 1), Tensor(0.0, ms.float32))
    moved = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(start, weights(loss_net))))
    assert abs(moved - lr * max_norm) < 1e-7  # SGD moves by lr * clipped gradient, whose norm is max_norm


@pytest.mark.parametrize("warmup, decay_at", [
    ("none", lambda n: 0.9999),  # the official Latte
    ("num_updates", lambda n: min(0.9999, (1 + n) / (10 + n))),
    ("mindone", lambda n: 0.9999 * (1 - np.exp(-n / 2000))),
])
def test_ema_formula_with_warmup(warmup, decay_at):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    p = ms.Parameter(Tensor(np.ones(3, np.float32)), name="w")
    ema = EMA([p], decay=0.9999, warmup=warmup)
    expected = np.ones(3)
    for n in range(4):
        p.set_data(Tensor(np.full(3, float(n + 2), np.float32)))
        d = float(ema().asnumpy())
        want_d = decay_at(n)
        assert abs(d - want_d) < 1e-7
        expected = want_d * expected + (1 - want_d) * (n + 2)
        np.testing.assert_allclose(ema.shadow[0].asnumpy(), expected, rtol=1e-6)


def test_ema_in_the_step_graph_averages_the_updated_weights(mode):
    """On CPU the AdamW update writes the weights in their own storage (native kernel): the EMA that follows it
    in the same graph must average the new weights, and the update must equal the per-op one."""
    moved = {}
    for kernels in ("native", "composite"):
        loss_net = ToyLoss()
        opt = create_optimizer(loss_net.trainable_params(), lr_schedule(10, 1e-2), weight_decay=0.01,
                               kernels=kernels)
        ema = EMA(loss_net.trainable_params(), decay=0.5)
        step = StepWithEMA(TrainStep(loss_net, opt, loss_scaler="none", num_terms=1), ema)
        start = weights(loss_net)
        for i in range(2):
            before = weights(loss_net)
            shadow = [s.asnumpy().copy() for s in ema.shadow]
            assert bool(step(*batch(4, i), Tensor(0.0, ms.float32))[3].asnumpy())
            for w0, w1, s0, s1 in zip(before, weights(loss_net), shadow, ema.shadow):
                assert np.abs(w1 - w0).max() > 1e-4  # the weights moved
                np.testing.assert_allclose(s1.asnumpy(), 0.5 * s0 + 0.5 * w1, rtol=1e-6, atol=1e-7)
        moved[kernels] = [w - w0 for w, w0 in zip(weights(loss_net), start)]
    for a, b in zip(moved["native"], moved["composite"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


class _NonFinite(nn.Cell):
    def __init__(self, updater):
        super().__init__()
        self.updater = updater

    def construct(self, grads):
        return self.updater._nonfinite(grads)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
def test_nonfinite_check_finds_one_bad_element(mode, bad):
    """The overflow check (on CPU one native op reading every gradient once) flags a single NaN or infinity anywhere, and
    passes the largest finite floats and subnormals."""
    loss_net = ToyLoss()
    updater = Updater(create_optimizer(loss_net.trainable_params(), lr_schedule(10, 1e-2)))
    assert (updater.nonfinite_kernel is not None) == (ms.get_context("device_target") == "CPU")
    r = np.random.default_rng(0)
    grads = [r.standard_normal(p.shape).astype(np.float32) for p in loss_net.trainable_params()]
    grads[0].flat[0] = np.finfo(np.float32).max
    grads[1].flat[-1] = -np.finfo(np.float32).tiny / 4  # subnormal
    if bad is not None:
        grads[2].flat[r.integers(grads[2].size)] = bad
    flag = _NonFinite(updater)(tuple(Tensor(g) for g in grads))
    assert float(flag.asnumpy()) == (0.0 if bad is None else 1.0)


def test_lr_schedules_and_decay_groups():
    np.testing.assert_allclose(lr_schedule(4, 1.0, warmup_steps=2), [0.5, 1.0, 1.0, 1.0])
    cos = lr_schedule(5, 1.0, "cosine_decay", end_lr=0.0)
    assert cos[0] == 1.0 and abs(cos[-1] - 0.0954915) < 1e-5 and np.all(np.diff(cos) < 0)
    with pytest.raises(ValueError, match="scheduler='linear' is not one of"):
        lr_schedule(4, 1.0, "linear")
    decay, no_decay = split_decay_groups(ToyLoss().trainable_params())
    assert all("weight" in p.name for p in decay) and all("bias" in p.name for p in no_decay)
