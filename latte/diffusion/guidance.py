"""Classifier-free guidance (CFG) as in the official Latte sample.py / Latte.forward_with_cfg.

The batch is doubled by the caller: latents [z, z] and labels [y, null], exactly as the official sample.py does.
The model's construct_with_cfg(x, t, y, cfg_scale) takes the first half of x, duplicates it, runs one forward with
the full y, and guides the eps channels (uncond + s * (cond - uncond)); the variance channels pass unguided.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

GUIDANCE_THRESHOLD = 1.0  # the official sample.py uses guidance only when cfg_scale > 1


def guidance_enabled(cfg_scale):
    """True when cfg_scale asks for guidance (cfg_scale > 1, the official rule); None means no guidance."""
    return cfg_scale is not None and cfg_scale > GUIDANCE_THRESHOLD


class CFGDenoiser(nn.Cell):
    """construct(x, t, y) -> model.construct_with_cfg(x, t, y, cfg_scale): a plain denoiser for the samplers."""

    def __init__(self, model, cfg_scale):
        super().__init__()
        if not callable(getattr(model, "construct_with_cfg", None)):
            raise TypeError(
                f"{type(model).__name__} has no construct_with_cfg(x, t, y, cfg_scale); classifier-free guidance "
                "needs it (the official forward_with_cfg). Add the method, or sample with cfg_scale=1.0")
        self.model = model
        self.cfg_scale = float(cfg_scale)

    def construct(self, x, t, y):
        return self.model.construct_with_cfg(x, t, y, self.cfg_scale)


def duplicate_for_cfg(z, y, null_label):
    """([z, z], [y, null_label ...]) for CFG sampling: z (B, F, C, H, W), y (B,) int -> (2B, ...), (2B,) int32."""
    z = z if isinstance(z, Tensor) else Tensor(np.asarray(z, dtype=np.float32))
    y = y.astype(ms.int32) if isinstance(y, Tensor) else Tensor(np.asarray(y, dtype=np.int32))
    y_null = ops.full(y.shape, null_label, dtype=y.dtype)
    return ops.concat((z, z), 0), ops.concat((y, y_null), 0)  # (B, ...) -> (2B, ...)
