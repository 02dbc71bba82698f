"""The T5 text encoder (transformers' T5EncoderModel: same math, same parameter names) in MindSpore, and load_t5.

    t5 = load_t5("models/t5-v1_1-xxl.ckpt")     # written by tools/t5_converter.py; dtype="fp16" on Ascend/GPU
    emb = t5(input_ids, attention_mask)          # (B, L) int, (B, L) 1 = token / 0 = padding -> (B, L, d_model) fp32

T5 v1.1 (Latte-1's t5-v1_1-xxl): RMSNorm before each sublayer, unscaled dot-product attention plus a learned
relative-position bias (bidirectional buckets, computed in block 0 and shared by all blocks), gated tanh-GELU
feed-forward, no biases anywhere, a final RMSNorm. T5 v1.0's ReLU feed-forward is supported too.

Precision: fp32 by default. With fp16/bf16 the matmuls run in that dtype while, as transformers runs a half
precision T5 (its _keep_in_fp32_modules = ["wo"] makes the residual stream float32 after the first feed-forward),
the residual stream, every RMSNorm, the softmax and the feed-forward output projection `wo` stay float32.
"""
import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer
from mindspore.nn.utils import no_init_parameters

from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint
from latte.env import resolve_dtype
from latte.kernels import TanhGELU
from latte.models.t5_config import T5EncoderConfig

__all__ = ["T5EncoderModel", "load_t5", "relative_position_bucket"]

MODEL_NAME = "T5EncoderModel"  # the sidecar's "model" entry for checkpoints of this encoder
CONVERTER = "tools/t5_converter.py"
MASK_BIAS = float(np.finfo(np.float32).min)  # added to the scores of padding keys, as transformers does in fp32
_DTYPE_NAMES = {ms.float32: "fp32", ms.float16: "fp16", ms.bfloat16: "bf16"}


def relative_position_bucket(relative_position, num_buckets, max_distance):
    """Bidirectional T5 bucket of each `key - query` distance (numpy int64), in transformers' float32 arithmetic.

    Half of the buckets are for keys after the query; in each half, distances below num_buckets/4 get a bucket
    each and longer ones share logarithmically wider buckets, the last one from max_distance on.
    """
    relative_position = np.asarray(relative_position, np.int64)
    half = num_buckets // 2
    buckets = (relative_position > 0).astype(np.int64) * half
    distance = np.abs(relative_position)
    max_exact = half // 2
    # the same float32 operations, in the same order, as T5Attention._relative_position_bucket
    scaled = (np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact))
    large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
    return buckets + np.where(distance < max_exact, distance, large)


def _compute_dtype(dtype):
    """'fp32' | 'fp16' | 'bf16' or a MindSpore float dtype -> the MindSpore dtype, checked for this device."""
    return resolve_dtype(_DTYPE_NAMES.get(dtype, dtype), ms.get_context("device_target"))


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------

class T5LayerNorm(nn.Cell):
    """RMSNorm in float32 (no mean subtraction, no bias): weight * x / sqrt(mean(x^2) + eps), cast to out_dtype."""

    def __init__(self, hidden_size, eps, out_dtype=ms.float32):
        super().__init__()
        self.weight = Parameter(initializer("ones", (hidden_size,), ms.float32), name="weight")
        self.eps = eps
        self.out_dtype = out_dtype

    def construct(self, x):
        x = x.astype(ms.float32)
        variance = (x * x).mean(-1, keep_dims=True)  # (..., D) -> (..., 1)
        return (self.weight * (x * ops.rsqrt(variance + self.eps))).astype(self.out_dtype)


class T5Embedding(nn.Cell):
    """A lookup table whose parameter is called `weight` (torch's nn.Embedding name)."""

    def __init__(self, num_embeddings, dim, dtype=ms.float32):
        super().__init__()
        self.weight = Parameter(initializer(Normal(1.0), (num_embeddings, dim), dtype), name="weight")

    def construct(self, ids):
        return ops.gather(self.weight, ids, 0)  # (...) -> (..., dim)


def linear(in_features, out_features, dtype):
    """torch's nn.Linear(bias=False): parameter `weight` of shape (out, in)."""
    return nn.Dense(in_features, out_features, has_bias=False, dtype=dtype)


class T5Attention(nn.Cell):
    """Multi-head self-attention without 1/sqrt(d_kv) scaling; the caller adds position bias and mask."""

    def __init__(self, config, has_relative_attention_bias, dtype):
        super().__init__()
        self.num_heads, self.d_kv = config.num_heads, config.d_kv
        inner = config.num_heads * config.d_kv
        self.q = linear(config.d_model, inner, dtype)
        self.k = linear(config.d_model, inner, dtype)
        self.v = linear(config.d_model, inner, dtype)
        self.o = linear(inner, config.d_model, dtype)
        self.scores = ops.BatchMatMul(transpose_b=True)  # q k^T without materializing k^T
        if has_relative_attention_bias:
            self.relative_attention_bias = T5Embedding(config.relative_attention_num_buckets, config.num_heads, dtype)
            # Buckets of distances -(M+1)..M+1 (M = max_distance); longer distances share the end buckets, so the
            # distances of any sequence length are clipped into this table.
            self.max_offset = config.relative_attention_max_distance + 1
            table = relative_position_bucket(np.arange(-self.max_offset, self.max_offset + 1),
                                             config.relative_attention_num_buckets,
                                             config.relative_attention_max_distance)
            self.bucket_table = Tensor(table.astype(np.int32))

    def compute_bias(self, length):
        """The relative-position bias (1, H, L, L) in float32 for a sequence of `length` tokens."""
        positions = ops.arange(length)
        distance = positions.expand_dims(0) - positions.expand_dims(1)  # (L, L): key position - query position
        index = ops.clip(distance, -self.max_offset, self.max_offset) + self.max_offset
        buckets = ops.gather(self.bucket_table, index, 0)  # (L, L)
        values = self.relative_attention_bias(buckets).astype(ms.float32)  # (L, L, H)
        return values.transpose(2, 0, 1).expand_dims(0)  # (L, L, H) -> (H, L, L) -> (1, H, L, L)

    def construct(self, x, bias):
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.d_kv).swapaxes(1, 2)  # (B, L, H*Dk) -> (B, H, L, Dk)
        k = self.k(x).reshape(b, n, self.num_heads, self.d_kv).swapaxes(1, 2)  # (B, L, H*Dk) -> (B, H, L, Dk)
        v = self.v(x).reshape(b, n, self.num_heads, self.d_kv).swapaxes(1, 2)  # (B, L, H*Dk) -> (B, H, L, Dk)
        scores = self.scores(q, k).astype(ms.float32) + bias  # (B, H, L, L); bias: position + padding mask
        weights = ops.softmax(scores, axis=-1).astype(v.dtype)
        out = ops.bmm(weights, v)  # (B, H, L, Dk)
        out = out.swapaxes(1, 2).reshape(b, n, self.num_heads * self.d_kv)  # -> (B, L, H, Dk) -> (B, L, H*Dk)
        return self.o(out)


class T5LayerSelfAttention(nn.Cell):
    def __init__(self, config, has_relative_attention_bias, dtype):
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias, dtype)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon, dtype)

    def construct(self, h, bias):
        return h + self.SelfAttention(self.layer_norm(h), bias).astype(ms.float32)


class T5DenseGatedActDense(nn.Cell):
    """T5 v1.1 feed-forward: wo(gelu_new(wi_0 x) * wi_1 x); wo in float32."""

    def __init__(self, config, dtype):
        super().__init__()
        self.wi_0 = linear(config.d_model, config.d_ff, dtype)
        self.wi_1 = linear(config.d_model, config.d_ff, dtype)
        self.wo = linear(config.d_ff, config.d_model, ms.float32)
        self.act = TanhGELU()

    def construct(self, x):
        return self.wo((self.act(self.wi_0(x)) * self.wi_1(x)).astype(ms.float32))


class T5DenseActDense(nn.Cell):
    """T5 v1.0 feed-forward: wo(relu(wi x)); wo in float32."""

    def __init__(self, config, dtype):
        super().__init__()
        self.wi = linear(config.d_model, config.d_ff, dtype)
        self.wo = linear(config.d_ff, config.d_model, ms.float32)

    def construct(self, x):
        return self.wo(ops.relu(self.wi(x)).astype(ms.float32))


class T5LayerFF(nn.Cell):
    def __init__(self, config, dtype):
        super().__init__()
        self.DenseReluDense = (T5DenseGatedActDense if config.is_gated else T5DenseActDense)(config, dtype)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon, dtype)

    def construct(self, h):
        return h + self.DenseReluDense(self.layer_norm(h))


class T5Block(nn.Cell):
    def __init__(self, config, has_relative_attention_bias, dtype):
        super().__init__()
        self.layer = nn.CellList([T5LayerSelfAttention(config, has_relative_attention_bias, dtype),
                                  T5LayerFF(config, dtype)])

    def construct(self, h, bias):
        return self.layer[1](self.layer[0](h, bias))


class T5Stack(nn.Cell):
    """The encoder blocks (only block 0 owns the relative-position bias) and the final RMSNorm."""

    def __init__(self, config, dtype):
        super().__init__()
        self.block = nn.CellList([T5Block(config, i == 0, dtype) for i in range(config.num_layers)])
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon, ms.float32)

    def construct(self, h, mask_bias):
        position_bias = self.block[0].layer[0].SelfAttention.compute_bias(h.shape[1])  # (1, H, L, L)
        bias = position_bias + mask_bias  # (1, H, L, L) + (B, 1, 1, L) -> (B, H, L, L)
        for block in self.block:
            h = block(h, bias)
        return self.final_layer_norm(h)


# ---------------------------------------------------------------------------------------------------------
# The encoder and its loader
# ---------------------------------------------------------------------------------------------------------

class T5EncoderModel(nn.Cell):
    """transformers' T5EncoderModel: `shared` token embedding (tied to encoder.embed_tokens) and `encoder`.

    config: a T5EncoderConfig (or a dict of its fields); dtype: 'fp32' (default), 'fp16' or 'bf16' compute.
    """

    def __init__(self, config, dtype="fp32"):
        super().__init__()
        self.config = config if isinstance(config, T5EncoderConfig) else T5EncoderConfig.from_dict(config)
        self.compute_dtype = _compute_dtype(dtype)
        self.shared = T5Embedding(self.config.vocab_size, self.config.d_model, self.compute_dtype)
        self.encoder = T5Stack(self.config, self.compute_dtype)

    def construct(self, input_ids, attention_mask):
        """(B, L) token ids and (B, L) mask (1 = token, 0 = padding) -> last hidden state (B, L, d_model) fp32."""
        h = self.shared(input_ids).astype(ms.float32)  # (B, L) -> (B, L, D)
        keep = attention_mask.astype(ms.float32)
        mask_bias = ((1.0 - keep) * MASK_BIAS).expand_dims(1).expand_dims(1)  # (B, L) -> (B, 1, 1, L)
        return self.encoder(h, mask_bias)


def read_t5_config(meta, ckpt_path):
    """The T5EncoderConfig recorded in a checkpoint's sidecar; a CheckpointError when there is none."""
    model = meta.get("model", meta.get("kind"))
    if model is not None and model != MODEL_NAME:
        raise CheckpointError(f"{ckpt_path} holds a {model}, not a T5 text encoder: give the .ckpt written by "
                              f"{CONVERTER}")
    if "config" not in meta:
        raise CheckpointError(f"{ckpt_path} has no architecture record ({ckpt_path}.json with a 'config'): "
                              f"convert the transformers folder again with {CONVERTER}")
    try:
        return T5EncoderConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt_path}.json: the T5 architecture it records is not usable ({err})") from None


def load_t5(ckpt_path, dtype="fp32"):
    """Builds the T5 encoder recorded next to `ckpt_path` (by tools/t5_converter.py) and loads it strictly.

    dtype: compute precision, 'fp32' (default), 'fp16' or 'bf16' (Ascend/GPU), or a MindSpore dtype; the
    stored weights are cast to it whatever precision the file holds. Returns the encoder in eval mode.
    """
    params, meta = read_ms_checkpoint(ckpt_path, what="T5 checkpoint", converter=CONVERTER)
    config = read_t5_config(meta, ckpt_path)
    with no_init_parameters():
        net = T5EncoderModel(config, dtype=dtype)
    load_strict(net, params, what=ckpt_path, describe=f"{MODEL_NAME} {config}")
    net.set_train(False)
    return net
