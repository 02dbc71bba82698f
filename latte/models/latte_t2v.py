"""LatteT2V: Latte-1's text-to-video transformer (diffusers' LatteTransformer3DModel, the official LatteT2V).

Same math and parameter names as diffusers, so a converted checkpoint is the diffusers state dict unchanged:
patch embedding + 2-D sin-cos positions (`pos_embed`), adaLN-single timestep conditioning (`adaln_single`: one
timestep MLP -> 6*D, a `scale_shift_table` per block), the caption projected to D (`caption_projection`),
spatial blocks (`transformer_blocks`: self-attention `attn1`, cross-attention `attn2` to the caption, tanh-GELU
`ff`) alternating with temporal blocks (`temporal_transformer_blocks`: self-attention over frames + `ff`), the
temporal position table added before the first temporal block when there are 2+ frames, and the final
`norm_out` + `scale_shift_table` + `proj_out`. The position tables are fixed (not parameters), as in diffusers.

    net = LatteT2V(**T2VConfig fields)                   # e.g. **t2v_spec("Latte-1")
    out = net(x, t, encoder_hidden_states)             # (B, F, C, H, W), (B,), (B, L, caption) -> (B, F, out, H, W)
    out = net(x, t, encoder_hidden_states, mask)       # + (B, L) 1/0: padding ignored by the cross-attention

Frames F may be 1 (text-to-image: the temporal blocks still run, without the position table) up to
video_length. Dropout is not applied (inference cells).

Image-video joint training (the official LatteT2V's use_image_num = n): 4-D captions mean n images after the
F video frames, each with its own caption, as the official forward in training (its gradient-checkpointed
branch: the temporal table on the video frames; its other branch leaves the table out, an inconsistency):

    out = net(x, t, states, mask)   # (B, F+n, C, H, W), (B,), (B, 1+n, L, caption), (B, 1+n, L) -> (B, F+n, out, H, W)
"""
import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from latte.kernels import Linear, ModulatedLayerNorm, TanhGELU, kernel_backend
from latte.models.attention import ProjectedAttention, choose_attention_backend
from latte.models.layers import TIMESTEP_FREQ_DIM, ConvPatchEmbed, TimestepSinusoid, TokensToImages
from latte.models.pos_embed import spatial_table, temporal_table
from latte.models.t2v_config import T2VConfig

ADALN_CHUNKS = 6  # shift/scale/gate for self-attention and for the feed-forward
FINAL_NORM_EPS = 1e-6  # norm_out's eps (fixed in diffusers, whatever norm_eps says)
FF_MULT = 4  # feed-forward hidden width / D
# added to the cross-attention scores of padding tokens: the official LatteT2V turns a (B, L) 1/0 mask into the
# bias (1 - mask) * -10000 (diffusers' LatteTransformer3DModel documents that format and leaves the conversion
# to the caller: it hands the mask to the attention as it is)
MASK_BIAS = -10000.0


#################################################################################
#                         Embeddings and feed-forward                           #
#################################################################################

class TimestepEmbedding(nn.Cell):
    """diffusers' Timesteps(256, flip_sin_to_cos=True, shift 0) + TimestepEmbedding: t (N,) -> [cos | sin] (N, 256)
    -> linear_1, SiLU, linear_2 -> (N, D)."""

    def __init__(self, dim, frequency_dim=TIMESTEP_FREQ_DIM):
        super().__init__()
        self.sinusoid = TimestepSinusoid(frequency_dim)  # float32 under mixed precision
        self.linear_1 = nn.Dense(frequency_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Dense(dim, dim)

    def construct(self, t):
        return self.linear_2(self.act(self.linear_1(self.sinusoid(t))))  # (N,) -> (N, 256) -> (N, D)


class CombinedTimestepEmbedding(nn.Cell):
    """PixArt-alpha's timestep embedding without the resolution / aspect-ratio conditions (Latte-1's case)."""

    def __init__(self, dim):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(dim)

    def construct(self, t):
        return self.timestep_embedder(t)


class AdaLayerNormSingle(nn.Cell):
    """adaLN-single: t (N,) -> (linear(SiLU(emb)) (N, 6D) for every block, emb (N, D) for the final layer)."""

    def __init__(self, dim):
        super().__init__()
        self.emb = CombinedTimestepEmbedding(dim)
        self.silu = nn.SiLU()
        self.linear = nn.Dense(dim, ADALN_CHUNKS * dim)

    def construct(self, t):
        embedded = self.emb(t)  # (N, D)
        return self.linear(self.silu(embedded)), embedded


class CaptionProjection(nn.Cell):
    """PixArtAlphaTextProjection: linear_1 (caption -> D), tanh-GELU, linear_2 (D -> D)."""

    def __init__(self, in_features, dim, kernels=None):
        super().__init__()
        self.linear_1 = nn.Dense(in_features, dim)
        self.act_1 = TanhGELU(backend=kernels)
        self.linear_2 = nn.Dense(dim, dim)

    def construct(self, caption):
        return self.linear_2(self.act_1(self.linear_1(caption)))


class GELUProjection(nn.Cell):
    """diffusers' activations.GELU(approximate='tanh'): proj, then tanh-GELU (proj's bias added by the activation, in
    its pass with the native kernels)."""

    def __init__(self, dim_in, dim_out, kernels=None):
        super().__init__()
        self.proj = Linear(dim_in, dim_out, backend=kernels)
        self.act = TanhGELU(backend=kernels)

    def construct(self, x):
        return self.act(self.proj(x, add_bias=False), self.proj.bias)


class FeedForward(nn.Cell):
    """net.0 (proj D -> 4D + tanh-GELU), net.1 (dropout: identity here), net.2 (4D -> D), as diffusers names them."""

    def __init__(self, dim, kernels=None):
        super().__init__()
        self.net = nn.SequentialCell([GELUProjection(dim, FF_MULT * dim, kernels), nn.Identity(),
                                      Linear(FF_MULT * dim, dim, backend=kernels)])

    def construct(self, x):
        return self.net(x)


#################################################################################
#                                   Blocks                                      #
#################################################################################

class BasicTransformerBlock(nn.Cell):
    """diffusers' BasicTransformerBlock with norm_type 'ada_norm_single' (PixArt-alpha):

        shift/scale/gate (msa, mlp) = scale_shift_table + t.reshape(6, D)
        x = x + gate_msa * attn1(norm1(x) * (1 + scale_msa) + shift_msa)
        x = x + attn2(x, caption)                       (spatial blocks only; no norm before it, as PixArt)
        x = x + gate_mlp * ff(norm2(x) * (1 + scale_mlp) + shift_mlp)
    """

    def __init__(self, dim, num_heads, head_dim, cross_attention_dim=None, attention_bias=True, norm_eps=1e-6,
                 attention_backend="math", kernels=None):
        super().__init__()
        self.dim = dim
        self.norm1 = ModulatedLayerNorm(dim, norm_eps, kernels)
        self.attn1 = ProjectedAttention(dim, num_heads, head_dim, bias=attention_bias, backend=attention_backend,
                                        kernels=kernels)
        self.attn2 = None if cross_attention_dim is None else ProjectedAttention(
            dim, num_heads, head_dim, context_dim=cross_attention_dim, bias=attention_bias, backend=attention_backend,
            kernels=kernels)
        self.norm2 = ModulatedLayerNorm(dim, norm_eps, kernels)
        self.ff = FeedForward(dim, kernels)
        table = np.random.standard_normal((ADALN_CHUNKS, dim)) / dim**0.5  # diffusers: randn(6, D) / sqrt(D)
        self.scale_shift_table = Parameter(Tensor(table.astype(np.float32)), name="scale_shift_table")

    def construct(self, x, timestep, context=None, context_bias=None, frames=0):
        """x (N, T, D), timestep (N, 6D) from adaln_single, context (N, L, D) or None, context_bias None or
        (N, 1, 1, L) added to the cross-attention scores -> (N, T, D). frames = F > 0 (temporal blocks): x is
        (B, F*T, D), frame-major, and attn1 runs over the F frames of each token (ProjectedAttention)."""
        n = x.shape[0]
        mod = self.scale_shift_table.expand_dims(0) + timestep.reshape(n, ADALN_CHUNKS, self.dim)  # (N, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ops.unstack(mod, axis=1)  # 6 x (N, D)
        x = x + gate_msa.expand_dims(1) * self.attn1(self.norm1(x, shift_msa, scale_msa), frames=frames)
        if self.attn2 is not None:
            x = x + self.attn2(x, context, context_bias)
        return x + gate_mlp.expand_dims(1) * self.ff(self.norm2(x, shift_mlp, scale_mlp))


#################################################################################
#                                 LatteT2V                                      #
#################################################################################

class LatteT2V(nn.Cell):
    """Latte-1's transformer. Keyword arguments are T2VConfig (config.json) fields, plus:

    latent_size: (h, w) or int latent size the model runs at (None: sample_size); other sizes get positions
        scaled as diffusers does (base grid sample_size / patch_size).
    enable_flash_attention: FlashAttentionScore on Ascend (see latte.models.attention.choose_attention_backend).
    kernels: the GELU / LayerNorm / softmax formulation (latte.kernels.KERNEL_BACKENDS); None picks this device's.
    """

    def __init__(self, latent_size=None, enable_flash_attention=False, kernels=None, **config):
        super().__init__()
        cfg = T2VConfig.from_dict(config)
        self.config = cfg
        self.patch_size = cfg.patch_size
        self.out_channels = cfg.output_channels
        self.video_length = cfg.video_length
        self.inner_dim = dim = cfg.inner_dim
        latent_h, latent_w = _pair(latent_size or cfg.sample_size)
        if latent_h % cfg.patch_size or latent_w % cfg.patch_size:
            raise ValueError(f"latent_size={latent_size} is not divisible by patch_size={cfg.patch_size}")
        self.latent_size = (latent_h, latent_w)
        self.grid = (latent_h // cfg.patch_size, latent_w // cfg.patch_size)
        self.num_patches = self.grid[0] * self.grid[1]

        self.kernels = kernels or kernel_backend()[0]
        backend, _ = choose_attention_backend(enable_flash_attention, cfg.attention_head_dim)
        self.attention_backend = backend

        # 1. Input: patches + fixed 2-D positions, the timestep, the caption
        self.pos_embed = ConvPatchEmbed(cfg.patch_size, cfg.in_channels, dim, kernels=self.kernels)
        table = spatial_table(dim, self.grid, base_size=cfg.sample_size // cfg.patch_size,
                              interpolation_scale=cfg.interpolation_scale)
        self.spatial_positions = Tensor(table[None].astype(np.float32))  # (1, T, D)
        self.adaln_single = AdaLayerNormSingle(dim)
        self.caption_projection = CaptionProjection(cfg.caption_channels, dim, self.kernels)

        # 2. Spatial and temporal blocks
        def block(cross_attention_dim):
            return BasicTransformerBlock(dim, cfg.num_attention_heads, cfg.attention_head_dim, cross_attention_dim,
                                         cfg.attention_bias, cfg.norm_eps, backend, self.kernels)

        self.transformer_blocks = nn.CellList([block(cfg.cross_attention_dim) for _ in range(cfg.num_layers)])
        self.temporal_transformer_blocks = nn.CellList([block(None) for _ in range(cfg.num_layers)])
        self.temporal_positions = Tensor(temporal_table(dim, cfg.video_length)[None].astype(np.float32))  # (1, Fmax, D)

        # 3. Output
        self.norm_out = ModulatedLayerNorm(dim, FINAL_NORM_EPS, self.kernels)
        table = np.random.standard_normal((2, dim)) / dim**0.5  # diffusers: randn(2, D) / sqrt(D)
        self.scale_shift_table = Parameter(Tensor(table.astype(np.float32)), name="scale_shift_table")
        self.proj_out = nn.Dense(dim, cfg.patch_size * cfg.patch_size * self.out_channels)
        self.to_images = TokensToImages(cfg.patch_size, self.out_channels, self.kernels)

    def construct(self, x, timestep, encoder_hidden_states, encoder_attention_mask=None,
                  enable_temporal_attentions=True):
        """x (B, F, C, H, W) latents, timestep (B,) int or float, encoder_hidden_states (B, L, caption_channels)
        -> (B, F, out_channels, H, W). encoder_attention_mask: None, or (B, L) with 1 on caption tokens and 0 on
        padding, which the spatial blocks' cross-attention then ignores (bias MASK_BIAS; the temporal blocks
        have no cross-attention). enable_temporal_attentions=False skips every temporal block.

        Image-video joint training (the official LatteT2V's use_image_num = n): x (B, F + n, C, H, W) holds F
        video frames then n images, encoder_hidden_states (B, 1 + n, L, caption) the video's caption then each
        image's, encoder_attention_mask (B, 1 + n, L). The spatial blocks see all F + n frames, each frame with
        its own caption (the video's on its F frames); the temporal blocks and the temporal position table see
        the F video frames only; every frame of a sample shares its timestep's adaLN-single modulation."""
        b, f, c, h, w = x.shape
        if encoder_hidden_states.ndim == 4 and encoder_hidden_states.shape[1] == 1:  # joint layout, no images
            encoder_hidden_states = encoder_hidden_states[:, 0]  # (B, 1, L, caption) -> (B, L, caption)
            if encoder_attention_mask is not None:
                encoder_attention_mask = encoder_attention_mask[:, 0]  # (B, 1, L) -> (B, L)
        num_images = encoder_hidden_states.shape[1] - 1 if encoder_hidden_states.ndim == 4 else 0
        frames = f - num_images  # video frames
        if frames < 1:
            raise ValueError(f"{f} frames with {num_images + 1} captions per sample: the video's caption and one "
                             f"per image need more frames than images (F + n frames, 1 + n captions)")
        if num_images and encoder_attention_mask is not None and encoder_attention_mask.ndim != 3:
            raise ValueError(f"{num_images + 1} captions per sample need encoder_attention_mask (B, 1 + n, L), got "
                             f"{encoder_attention_mask.ndim} dims: give one mask row per caption")
        if frames > self.video_length:
            raise ValueError(f"{frames} frames but the temporal position table has video_length={self.video_length}")
        if (h, w) != self.latent_size:
            raise ValueError(f"latents of {h}x{w} but the model was built for latent_size {self.latent_size}: build "
                             f"it with latent_size=({h}, {w})")
        tokens, dim = self.num_patches, self.inner_dim
        x = x.reshape(b * f, c, h, w)  # (B, F+n, C, H, W) -> (B*(F+n), C, H, W)
        x = self.pos_embed(x) + self.spatial_positions  # (B*(F+n), T, D)

        t_blocks, t_final = self.adaln_single(timestep)  # (B, 6D), (B, D)
        context = self.caption_projection(encoder_hidden_states)  # (B, L, D), joint: (B, 1+n, L, D)
        context_bias = None
        if encoder_attention_mask is not None:
            keep = encoder_attention_mask.astype(ms.float32)  # (B, L), joint: (B, 1+n, L)
            context_bias = (1.0 - keep) * MASK_BIAS
        if num_images:
            context, context_bias = self._joint_context(context, context_bias, frames)
        else:
            context = ops.repeat_interleave(context, f, 0)  # (B, L, D) -> (B*F, L, D), batch-major
            if context_bias is not None:
                context_bias = context_bias.reshape(b, 1, 1, -1)  # (B, L) -> (B, 1, 1, L)
                context_bias = ops.repeat_interleave(context_bias, f, 0)  # -> (B*F, 1, 1, L), as the context
        t_spatial = ops.repeat_interleave(t_blocks, f, 0)  # (B, 6D) -> (B*(F+n), 6D)

        for i in range(len(self.transformer_blocks)):
            x = self.transformer_blocks[i](x, t_spatial, context, context_bias)  # spatial: a frame's T tokens
            if enable_temporal_attentions and num_images:
                x = self._temporal_video_only(i, x, t_blocks, b, frames, num_images)
            elif enable_temporal_attentions:
                x = self._temporal(i, x.reshape(b, f, tokens, dim), t_blocks)  # (B*F, T, D) -> (B, F, T, D)
                x = x.reshape(b * f, tokens, dim)  # (B, F, T, D) -> (B*F, T, D)

        t_final = ops.repeat_interleave(t_final, f, 0)  # (B, D) -> (B*(F+n), D)
        mod = self.scale_shift_table.expand_dims(0) + t_final.expand_dims(1)  # (1, 2, D) + (B*F, 1, D) -> (B*F, 2, D)
        shift, scale = ops.unstack(mod, axis=1)  # 2 x (B*F, D)
        x = self.proj_out(self.norm_out(x, shift, scale))  # (B*F, T, p*p*out)
        x = self.to_images(x, self.grid[0], self.grid[1])  # (B*F, out, H, W)
        return x.reshape(b, f, self.out_channels, h, w)  # (B*F, out, H, W) -> (B, F, out, H, W)

    def _joint_context(self, context, context_bias, frames):
        """Each frame's caption for the spatial blocks: the video's (index 0) on its F frames, image j's on image
        j. context (B, 1+n, L, D) -> (B*(F+n), L, D); context_bias None or (B, 1+n, L) -> (B*(F+n), 1, 1, L)."""
        b, captions, length, dim = context.shape
        rows = b * (frames + captions - 1)
        video = ops.repeat_interleave(context[:, :1], frames, 1)  # (B, 1, L, D) -> (B, F, L, D)
        context = ops.cat([video, context[:, 1:]], axis=1).reshape(rows, length, dim)  # -> (B*(F+n), L, D)
        if context_bias is not None:
            video = ops.repeat_interleave(context_bias[:, :1], frames, 1)  # (B, 1, L) -> (B, F, L)
            context_bias = ops.cat([video, context_bias[:, 1:]], axis=1)  # (B, F+n, L)
            context_bias = context_bias.reshape(rows, 1, 1, length)  # (B, F+n, L) -> (B*(F+n), 1, 1, L)
        return context, context_bias

    def _temporal(self, i, x, t_blocks):
        """Temporal block i on video tokens x (B, F, T, D), t_blocks (B, 6D): attention over the F frames of each
        token. diffusers rearranges to (B*T, F, D) and repeats the timestep per token; the block computes the same
        in place (BasicTransformerBlock with frames), so x is never transposed."""
        b, frames, tokens, dim = x.shape
        if i == 0 and frames > 1:  # once, before the first temporal block
            x = x + self.temporal_positions[:, :frames].reshape(1, frames, 1, dim)  # (1, F, D) -> (1, F, 1, D)
        x = self.temporal_transformer_blocks[i](x.reshape(b, frames * tokens, dim), t_blocks, frames=frames)
        return x.reshape(b, frames, tokens, dim)  # (B, F*T, D) -> (B, F, T, D)

    def _temporal_video_only(self, i, x, t_blocks, b, frames, num_images):
        """Temporal block i on the F video frames of x (B*(F+n), T, D); the n images pass unchanged."""
        tokens, dim = self.num_patches, self.inner_dim
        x = x.reshape(b, frames + num_images, tokens, dim)  # (B*(F+n), T, D) -> (B, F+n, T, D)
        video = self._temporal(i, x[:, :frames], t_blocks)  # (B, F, T, D), positions as without images
        x = ops.cat([video, x[:, frames:]], axis=1)  # (B, F, T, D) + (B, n, T, D) -> (B, F+n, T, D)
        return x.reshape(b * (frames + num_images), tokens, dim)  # (B, F+n, T, D) -> (B*(F+n), T, D)


def _pair(size):
    return (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
