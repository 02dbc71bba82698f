"""Multi-head attention with the official 'math' semantics, and Ascend flash attention.

`AttentionCore` is softmax(q k^T * scale) v over heads, on the path chosen once at construction
(`choose_attention_backend`), never by catching a failure later: in graph mode an unsupported kernel only fails
at compile time. Two projections use it: `Attention` (the official Latte's fused qkv) and `ProjectedAttention`
(diffusers' separate to_q / to_k / to_v / to_out.0, self- or cross-attention; LatteT2V).
"""
import logging

import mindspore as ms
from mindspore import nn, ops

from latte.kernels import Linear, Permute, ScaledSoftmax, SplitPermute

logger = logging.getLogger(__name__)

FLASH_DEVICE = "Ascend"
FLASH_HEAD_DIMS = (64, 80, 96, 120, 128, 256)  # head sizes the Ascend FlashAttentionScore kernel handles well
_logged_choices = set()


def flash_head_dim(head_dim):
    """The FLASH_HEAD_DIMS size a head is zero-padded to for the flash kernel (72 -> 80), None above 256.

    Zero columns add nothing to q k^T and give zero output columns, which are cut off: the result is exact.
    """
    return next((d for d in FLASH_HEAD_DIMS if d >= head_dim), None)


def choose_attention_backend(enable_flash_attention, head_dim, device_target=None):
    """Returns ('flash' | 'math', reason). Logs the decision once per distinct outcome."""
    device_target = device_target or ms.get_context("device_target")
    padded = flash_head_dim(head_dim)
    if not enable_flash_attention:
        backend, reason = "math", "enable_flash_attention is off"
    elif device_target != FLASH_DEVICE:
        backend, reason = "math", f"flash attention needs {FLASH_DEVICE}, this run uses {device_target}"
    elif padded is None:
        backend, reason = "math", f"head_dim={head_dim} is above the flash kernel's {FLASH_HEAD_DIMS[-1]}"
    else:
        backend, reason = "flash", f"FlashAttentionScore on {device_target}, head_dim={head_dim}" + (
            f" zero-padded to {padded}" if padded != head_dim else "")
    if (backend, reason) not in _logged_choices:
        _logged_choices.add((backend, reason))
        logger.info("attention: %s path (%s)", backend, reason)
    return backend, reason


class AttentionCore(nn.Cell):
    """softmax(q k^T / sqrt(Dh) [+ bias]) v for q (B, H, Nq, Dh), k and v (B, H, Nk, Dh) -> (B, H, Nq, Dh).

    math: scores in the compute dtype, softmax in float32 (ScaledSoftmax). flash: FlashAttentionScore in
    `flash_dtype`, heads zero-padded to a size the kernel supports (flash_head_dim).
    """

    def __init__(self, num_heads, head_dim, backend="math", flash_dtype=ms.float16, kernels=None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = head_dim**-0.5
        self.use_flash = backend == "flash"
        self.flash_dtype = flash_dtype
        self.flash_pad = (flash_head_dim(head_dim) or head_dim) - head_dim if self.use_flash else 0
        self.scores = ops.BatchMatMul(transpose_b=True)  # q k^T without materializing k^T
        self.softmax = ScaledSoftmax(self.scale, kernels)  # softmax(scores * scale) in float32

    def construct(self, q, k, v, bias=None):
        """bias: None, or an additive float32 score bias (B, 1, 1, Nk): 0 on kept keys, MASK_BIAS on padding."""
        if self.use_flash:
            head_dim = q.shape[-1]
            if self.flash_pad:
                q = ops.pad(q, (0, self.flash_pad))  # (B, H, Nq, Dh) -> (B, H, Nq, Dh + pad)
                k = ops.pad(k, (0, self.flash_pad))
                v = ops.pad(v, (0, self.flash_pad))
            discard = None
            if bias is not None:  # the kernel takes a mask of keys to discard (1), per query row
                discard = ops.broadcast_to(bias < 0, (q.shape[0], 1, q.shape[2], k.shape[2])).astype(ms.uint8)
            out = ops.flash_attention_score(
                q.astype(self.flash_dtype), k.astype(self.flash_dtype), v.astype(self.flash_dtype),
                self.num_heads, attn_mask=discard, scalar_value=self.scale, input_layout="BNSD",
            )  # (B, H, Nq, Dh + pad)
            if self.flash_pad:
                out = out[:, :, :, :head_dim]  # -> (B, H, Nq, Dh)
            return out.astype(q.dtype)
        attn = self.softmax(self.scores(q, k), bias)  # (B, H, Nq, Nk)
        return ops.bmm(attn, v)  # (B, H, Nq, Dh)


class Attention(nn.Cell):
    """qkv Dense(D, 3D) with rows [q | k | v], each head-major; softmax(q k^T * scale) v; proj Dense(D, D).

    frames = 0: attention over the N tokens of each row of x (B, N, D). frames = F > 0 (Latte's temporal
    blocks): x (B, F*T, D) holds F frames of T tokens, frame-major, and each token attends over its F frames.
    That is the official temporal attention on x rearranged '(b f) t d -> (b t) f d', without the rearrange:
    the projections act per token, so only the attention's own head transposes reorder the frames.
    """

    def __init__(self, dim, num_heads, backend="math", flash_dtype=ms.float16, kernels=None, frames=0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.frames = frames
        self.qkv = Linear(dim, dim * 3, backend=kernels)
        self.proj = Linear(dim, dim, backend=kernels)
        self.core = AttentionCore(num_heads, self.head_dim, backend, flash_dtype, kernels)
        if frames:
            # (B, F, T, 3, H, Dh) -> 3 x (B, T, H, F, Dh)
            self.split_heads = SplitPermute((3, 0, 2, 4, 1, 5), 3, kernels)
            self.merge_heads = FrameMajor(kernels)
        else:
            self.split_heads = SplitPermute((2, 0, 3, 1, 4), 3, kernels)  # (B, N, 3, H, Dh) -> 3 x (B, H, N, Dh)
            self.merge_heads = Permute((0, 2, 1, 3), kernels)  # (B, H, N, Dh) -> (B, N, H, Dh)

    def construct(self, x, add_bias=True):
        """x (B, N, D) -> (B, N, D); add_bias=False: without proj's bias (for a next op that adds it)."""
        if self.frames:
            return self.proj(self._across_frames(x), add_bias=add_bias)
        b, n, d = x.shape
        h, dh = self.num_heads, self.head_dim
        qkv = self.qkv(x, add_bias=False).reshape(b, n, 3, h, dh)  # (B, N, 3D) -> (B, N, 3, H, Dh)
        # q, k, v as three outputs of one permutation, qkv's bias added in the same pass (SplitPermute): indexing
        # qkv[0], qkv[1], qkv[2] of the permuted tensor runs as StridedSlice copies that cost ~8x more on CPU.
        q, k, v = self.split_heads(qkv, self.qkv.bias)  # -> 3 x (B, H, N, Dh)
        out = self.core(q, k, v)  # (B, H, N, Dh)
        out = self.merge_heads(out).reshape(b, n, d)  # (B, H, N, Dh) -> (B, N, H, Dh) -> (B, N, D)
        return self.proj(out, add_bias=add_bias)

    def _across_frames(self, x):
        """x (B, F*T, D), frame-major -> (B, F*T, D): each of the T tokens attends over its F frames."""
        b, n, _ = x.shape
        f, h, dh = self.frames, self.num_heads, self.head_dim
        t = n // f
        qkv = self.qkv(x, add_bias=False).reshape(b, f, t, 3, h, dh)  # (B, F*T, 3D) -> (B, F, T, 3, H, Dh)
        q, k, v = self.split_heads(qkv, self.qkv.bias)  # -> 3 x (B, T, H, F, Dh)
        rows = (b * t, h, f, dh)
        q, k, v = q.reshape(rows), k.reshape(rows), v.reshape(rows)  # (B, T, H, F, Dh) -> (B*T, H, F, Dh)
        out = self.core(q, k, v)  # (B*T, H, F, Dh)
        return self.merge_heads(out, b, t)  # (B, F*T, D)


class ProjectedAttention(nn.Cell):
    """diffusers' Attention (AttnProcessor2_0): to_q from x, to_k / to_v from the context (x itself for
    self-attention), heads of attention_head_dim, to_out.0 back to `dim`. Parameter names as diffusers'."""

    def __init__(self, dim, num_heads, head_dim, context_dim=None, bias=True, backend="math",
                 flash_dtype=ms.float16, kernels=None):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.to_q = Linear(dim, inner, has_bias=bias, backend=kernels)
        self.to_k = Linear(context_dim or dim, inner, has_bias=bias, backend=kernels)
        self.to_v = Linear(context_dim or dim, inner, has_bias=bias, backend=kernels)
        self.to_out = nn.SequentialCell([Linear(inner, dim, backend=kernels)])  # diffusers' [Linear, Dropout]: dropout is a no-op
        self.core = AttentionCore(num_heads, head_dim, backend, flash_dtype, kernels)
        self.swap_heads = Permute((0, 2, 1, 3), kernels)  # (B, N, H, Dh) <-> (B, H, N, Dh)
        self.frame_heads = Permute((0, 2, 3, 1, 4), kernels)  # (B, F, T, H, Dh) -> (B, T, H, F, Dh)
        self.frame_major = FrameMajor(kernels)

    def _heads(self, x):
        b, n, _ = x.shape
        return self.swap_heads(x.reshape(b, n, self.num_heads, self.head_dim))  # (B, N, H*Dh) -> (B, H, N, Dh)

    def construct(self, x, context=None, bias=None, frames=0):
        """x (B, N, dim), context (B, M, context_dim) or None (self-attention), bias None or (B, 1, 1, M) float32
        added to the scaled scores (diffusers' float attention_mask) -> (B, N, dim).

        frames = F > 0 (self-attention of LatteT2V's temporal blocks): x (B, F*T, dim) holds F frames of T tokens,
        frame-major, and each token attends over its F frames, as diffusers does on x rearranged to (B*T, F, dim)."""
        if frames:
            return self._across_frames(x, frames)
        context = x if context is None else context
        b, n, _ = x.shape
        q = self._heads(self.to_q(x))  # (B, H, N, Dh)
        k = self._heads(self.to_k(context))  # (B, H, M, Dh)
        v = self._heads(self.to_v(context))  # (B, H, M, Dh)
        out = self.core(q, k, v, bias)  # (B, H, N, Dh)
        out = self.swap_heads(out).reshape(b, n, self.num_heads * self.head_dim)  # -> (B, N, H, Dh) -> (B, N, H*Dh)
        return self.to_out(out)

    def _frame_heads(self, x, frames):
        b, n, _ = x.shape
        t, h, dh = n // frames, self.num_heads, self.head_dim
        x = self.frame_heads(x.reshape(b, frames, t, h, dh))  # (B, F*T, H*Dh) -> (B, F, T, H, Dh) -> (B, T, H, F, Dh)
        return x.reshape(b * t, h, frames, dh)  # -> (B*T, H, F, Dh)

    def _across_frames(self, x, frames):
        """x (B, F*T, dim), frame-major -> (B, F*T, dim): each of the T tokens attends over its F frames."""
        b, n, _ = x.shape
        t = n // frames
        q = self._frame_heads(self.to_q(x), frames)  # (B*T, H, F, Dh)
        k = self._frame_heads(self.to_k(x), frames)
        v = self._frame_heads(self.to_v(x), frames)
        out = self.core(q, k, v)  # (B*T, H, F, Dh)
        return self.to_out(self.frame_major(out, b, t))  # (B, F*T, H*Dh)


class FrameMajor(nn.Cell):
    """The temporal attention's output (B*T, H, F, Dh), each token's F frames -> (B, F*T, H*Dh), frame-major
    again (Attention and ProjectedAttention over frames)."""

    def __init__(self, kernels=None):
        super().__init__()
        self.permute = Permute((0, 3, 1, 2, 4), kernels)  # (B, T, H, F, Dh) -> (B, F, T, H, Dh)

    def construct(self, out, batch, tokens):
        _, h, f, dh = out.shape
        out = self.permute(out.reshape(batch, tokens, h, f, dh))  # -> (B, T, H, F, Dh) -> (B, F, T, H, Dh)
        return out.reshape(batch, f * tokens, h * dh)  # -> (B, F*T, H*Dh)
