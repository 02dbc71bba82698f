"""Exponential moving average of the weights, updated by its own small compiled graph after each step."""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

EMA_DECAY = 0.9999
# how the decay d grows to `decay` over the first n updates:
#   none         d = decay from the first update (the official Latte train.py)
#   num_updates  d = min(decay, (1 + n) / (10 + n)) (TensorFlow's ExponentialMovingAverage with num_updates)
#   mindone      d = decay * (1 - exp(-n / 2000)) (mindone's Latte trainer)
EMA_WARMUPS = ("none", "num_updates", "mindone")
MINDONE_WARMUP_UPDATES = 2000.0


class EMA(nn.Cell):
    """ema = d * ema + (1 - d) * w, d per `warmup` (EMA_WARMUPS), n = updates so far.

    The shadow weights are named `ema.<param name>` so they save and resume with the train state.
    """

    def __init__(self, params, decay=EMA_DECAY, warmup="none"):
        super().__init__()
        if warmup not in EMA_WARMUPS:
            raise ValueError(f"ema warmup={warmup!r} is not one of {EMA_WARMUPS}")
        self.params = ms.ParameterTuple(list(params))
        self.shadow = ms.ParameterTuple([Parameter(p.data.copy(), name=f"ema.{p.name}", requires_grad=False)
                                         for p in self.params])
        self.decay = decay
        self.warmup = warmup
        self.updates = Parameter(Tensor(0, ms.float32), name="ema.updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()

    def current_decay(self):
        if self.warmup == "num_updates":
            return ops.minimum(Tensor(self.decay, ms.float32), (1.0 + self.updates) / (10.0 + self.updates))
        if self.warmup == "mindone":
            return self.decay * (1.0 - ops.exp(-self.updates / MINDONE_WARMUP_UPDATES))
        return Tensor(self.decay, ms.float32)

    def construct(self):
        d = self.current_decay()
        self.hyper_map(ops.partial(_ema_update, d), self.shadow, self.params)
        ops.assign_add(self.updates, Tensor(1.0, ms.float32))
        return d

    def averaged(self):
        """{id(weight parameter): averaged Tensor}, to pair with any naming of the weights."""
        return {id(p): s.value() for p, s in zip(self.params, self.shadow)}


def _ema_update(d, shadow, weight):
    return ops.assign(shadow, shadow * d + weight.astype(shadow.dtype) * (1 - d))


def named_weights(cell, ema=None):
    """({name: ndarray} raw, {name: ndarray} EMA or None) of `cell`'s parameters, named relative to the cell (as in
    the weight files; their global names may carry a wrapper's prefix). Parameters the EMA does not average
    (frozen tables) appear with their raw values in both."""
    named = list(cell.parameters_and_names())
    raw = {name: p.asnumpy() for name, p in named}
    if ema is None:
        return raw, None
    shadow = ema.averaged()
    return raw, {name: shadow[id(p)].asnumpy() if id(p) in shadow else raw[name] for name, p in named}
