"""Multi-head self-attention with the official 'math' semantics, and Ascend flash attention.

The path is chosen once at construction (`choose_attention_backend`), never by catching a failure later:
in graph mode an unsupported kernel only fails at compile time.
"""
import logging

import mindspore as ms
from mindspore import nn, ops

from latte.kernels import Linear, ScaledSoftmax

logger = logging.getLogger(__name__)

FLASH_DEVICE = "Ascend"
FLASH_HEAD_DIMS = (64, 80, 96, 120, 128, 256)  # head sizes the Ascend FlashAttentionScore kernel handles well
_logged_choices = set()


def choose_attention_backend(enable_flash_attention, head_dim, device_target=None):
    """Returns ('flash' | 'math', reason). Logs the decision once per distinct outcome."""
    device_target = device_target or ms.get_context("device_target")
    if not enable_flash_attention:
        backend, reason = "math", "enable_flash_attention is off"
    elif device_target != FLASH_DEVICE:
        backend, reason = "math", f"flash attention needs {FLASH_DEVICE}, this run uses {device_target}"
    elif head_dim not in FLASH_HEAD_DIMS:
        backend, reason = "math", f"head_dim={head_dim} is not one of {FLASH_HEAD_DIMS}"
    else:
        backend, reason = "flash", f"FlashAttentionScore on {device_target}, head_dim={head_dim}"
    if (backend, reason) not in _logged_choices:
        _logged_choices.add((backend, reason))
        logger.info("attention: %s path (%s)", backend, reason)
    return backend, reason


class Attention(nn.Cell):
    """qkv Dense(D, 3D) with rows [q | k | v], each head-major; softmax(q k^T * scale) v; proj Dense(D, D)."""

    def __init__(self, dim, num_heads, backend="math", flash_dtype=ms.float16, kernels=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.use_flash = backend == "flash"
        self.flash_dtype = flash_dtype
        self.qkv = Linear(dim, dim * 3, backend=kernels)
        self.proj = Linear(dim, dim, backend=kernels)
        self.scores = ops.BatchMatMul(transpose_b=True)  # q k^T without materializing k^T
        self.softmax = ScaledSoftmax(self.scale, kernels)  # softmax(scores * scale) in float32

    def construct(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)  # (B, N, 3D) -> (B, N, 3, H, Dh)
        qkv = qkv.transpose(2, 0, 3, 1, 4)  # -> (3, B, H, N, Dh)
        # Split along the leading axis (three contiguous blocks): indexing qkv[0], qkv[1], qkv[2] runs as
        # StridedSlice copies that cost ~8x more on CPU, forward and backward.
        q, k, v = ops.split(qkv, 1, axis=0)  # 3 x (1, B, H, N, Dh)
        q, k, v = q.squeeze(0), k.squeeze(0), v.squeeze(0)  # (B, H, N, Dh) each
        if self.use_flash:
            out = ops.flash_attention_score(
                q.astype(self.flash_dtype), k.astype(self.flash_dtype), v.astype(self.flash_dtype),
                self.num_heads, scalar_value=self.scale, input_layout="BNSD",
            ).astype(x.dtype)  # (B, H, N, Dh)
        else:
            attn = self.softmax(self.scores(q, k))  # (B, H, N, N)
            out = ops.bmm(attn, v)  # (B, H, N, Dh)
        out = out.swapaxes(1, 2).reshape(b, n, d)  # (B, H, N, Dh) -> (B, N, H, Dh) -> (B, N, D)
        return self.proj(out)
