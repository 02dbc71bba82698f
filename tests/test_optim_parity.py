"""latte.training.optim.AdamW against torch.optim.AdamW: same weights, gradients and learning rates."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Parameter, Tensor, nn

from latte.training.optim import create_optimizer, lr_schedule

torch = pytest.importorskip("torch")

SHAPES = {"blocks.0.attn.qkv.weight": (12, 4), "blocks.0.attn.qkv.bias": (12,), "blocks.0.norm1.gamma": (4,),
          "final_layer.linear.weight": (3, 4)}
STEPS = 8


class Params(nn.Cell):
    def __init__(self, values):
        super().__init__()
        self.params = ms.ParameterTuple([Parameter(Tensor(v), name=k) for k, v in values.items()])


def run_both(weight_decay, eps, betas, lrs, mode, kernels):
    ms.set_context(mode=mode)
    rng = np.random.default_rng(0)
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: (rng.standard_normal(s) * 10.0 ** rng.integers(-3, 2)).astype(np.float32) for k, s in SHAPES.items()}
             for _ in range(STEPS)]

    cell = Params(init)
    opt = create_optimizer(cell.trainable_params(), lrs, betas, eps, weight_decay, kernels=kernels)
    for g in grads:
        opt(tuple(Tensor(g[p.name]) for p in cell.trainable_params()))
    ours = {p.name: p.asnumpy() for p in cell.trainable_params()}

    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    decayed = [tparams[k] for k in SHAPES if k.endswith("weight") and "norm" not in k]
    exempt = [tparams[k] for k in SHAPES if not (k.endswith("weight") and "norm" not in k)]
    topt = torch.optim.AdamW([{"params": decayed, "weight_decay": weight_decay},
                              {"params": exempt, "weight_decay": 0.0}], lr=float(lrs[0]), betas=betas, eps=eps)
    for step, g in enumerate(grads):
        for group in topt.param_groups:
            group["lr"] = float(lrs[step])
        for k, p in tparams.items():
            p.grad = torch.from_numpy(g[k])
        topt.step()
    return ours, {k: p.detach().numpy() for k, p in tparams.items()}, init


@pytest.mark.parametrize("kernels", ["native", "composite"])
@pytest.mark.parametrize("weight_decay,eps,betas", [(0.0, 1e-8, (0.9, 0.999)), (0.05, 1e-6, (0.8, 0.99))])
def test_matches_torch_adamw(weight_decay, eps, betas, mode, kernels):
    """Both formulations of the update (per-op, and the fused CPU kernel) follow torch.optim.AdamW."""
    lrs = lr_schedule(STEPS, 1e-2, "cosine_decay", warmup_steps=3)
    ours, theirs, init = run_both(weight_decay, eps, betas, lrs, ms.GRAPH_MODE if mode == "graph" else
                                  ms.PYNATIVE_MODE, kernels)
    for k in SHAPES:
        moved = np.abs(theirs[k] - init[k]).max()
        assert moved > 1e-3, k  # the comparison below is not vacuous
        np.testing.assert_allclose(ours[k], theirs[k], rtol=0, atol=2e-6 * max(1.0, moved), err_msg=k)


def test_first_step_is_bias_corrected():
    """Adam's first update moves every weight by lr * g / (|g| + eps): about lr, whatever the gradient's size."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cell = Params({"w.weight": np.zeros((5, 3), np.float32)})
    opt = create_optimizer(cell.trainable_params(), [1e-3], eps=1e-8)
    grad = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32) * 1e-2
    opt((Tensor(grad),))
    expected = -1e-3 * grad / (np.abs(grad.astype(np.float64)) + 1e-8)
    np.testing.assert_allclose(cell.trainable_params()[0].asnumpy(), expected, rtol=1e-5)


def test_bad_hyper_parameters_are_named():
    cell = Params({"w.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="beta1=1.0"):
        create_optimizer(cell.trainable_params(), [1e-3], betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="eps=0"):
        create_optimizer(cell.trainable_params(), [1e-3], eps=0)
