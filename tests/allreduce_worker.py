"""A data-parallel worker that counts the all-reduces of a TrainStep (run by tests/test_distributed.py under msrun).

    msrun --worker_num=2 ... python -m tests.allreduce_worker OUT_DIR

PyNative mode, so the counting hook (a Cell standing in for the Updater's collective) runs on every call. Each
rank trains the toy network of tests/test_train_step.py with batch 1 and accumulation 4 for two optimizer steps,
rank r taking samples r, r + 2, ... of each window's global batch of 8 (how the data shards split a batch), and
writes OUT_DIR/rank<r>.json: the all-reduce count after every micro-step, the window statistics and the weights.
"""
import json
import os
import sys

import mindspore as ms
from mindspore import nn, ops
from mindspore.communication import get_group_size, get_rank, init

from tests.test_train_step import batch, make_step, weights

ACCUM, WINDOWS, GLOBAL_BATCH = 4, 2, 8


class CountingAllReduce(nn.Cell):
    """ops.AllReduce (sum) that counts its calls."""

    def __init__(self):
        super().__init__()
        self.reduce = ops.AllReduce()
        self.calls = 0

    def construct(self, x):
        self.calls += 1
        return self.reduce(x)


def main(out):
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    init()
    rank, size = get_rank(), get_group_size()
    _, step = make_step(accum=ACCUM, num_ranks=size)
    counter = CountingAllReduce()
    step.updater.all_reduce = counter
    zero = ms.Tensor(0.0, ms.float32)
    record = {"calls": [], "boundaries": [], "applied": [], "stats": []}
    for window in range(WINDOWS):
        x, y = batch(GLOBAL_BATCH, window)
        for micro in range(ACCUM):
            sample = micro * size + rank
            stats, _, boundary, applied = step(x[sample:sample + 1], y[sample:sample + 1], zero)
            record["calls"].append(counter.calls)
            record["boundaries"].append(bool(boundary.asnumpy()))
            record["applied"].append(bool(applied.asnumpy()))
            if bool(boundary.asnumpy()):
                record["stats"].append(stats.asnumpy().tolist())
    record["weights"] = [w.tolist() for w in weights(step.loss_net)]
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1])
