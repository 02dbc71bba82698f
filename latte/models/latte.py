"""Latte: a video diffusion transformer with alternating spatial and temporal blocks (Ma et al., 2024).

The math, init and submodule names follow the official PyTorch Latte (Vchitect/Latte, models/latte.py).
Input x is (B, F, C, H, W) -- frames before channels; output (B, F, 2C, H, W) with learn_sigma.
"""
import logging

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, XavierUniform, Zero, initializer

from latte.kernels import GatedResidual, Linear, ModulatedLayerNorm, kernel_backend
from latte.models.attention import Attention, choose_attention_backend
from latte.models.layers import (LAYER_NORM_EPS, PATCH_EMBEDDERS, LabelEmbedder, Mlp, TimestepEmbedder,
                                 TokensToImages)
from latte.models.pos_embed import spatial_table, temporal_table
from latte.models.registry import CONDITIONS

logger = logging.getLogger(__name__)

TEXT_TOKENS, TEXT_DIM = 77, 768  # official text conditioning: a flattened 77x768 (CLIP) embedding
ADALN_CHUNKS = 6  # shift/scale/gate for attention and for the MLP


#################################################################################
#                                Latte blocks                                   #
#################################################################################

class TransformerBlock(nn.Cell):
    """A block with adaLN-Zero conditioning: gated attention and gated MLP, both on modulated norms.

    frames = 0: a spatial block on x (B*F, T, D), c (B*F, D). frames = F: a temporal block on x (B, F*T, D),
    c (B, D); its attention runs over the F frames of each token (Attention)."""

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, attention_backend="math", kernels=None, frames=0):
        super().__init__()
        self.norm1 = ModulatedLayerNorm(hidden_size, LAYER_NORM_EPS, kernels)
        self.attn = Attention(hidden_size, num_heads, backend=attention_backend, kernels=kernels, frames=frames)
        self.norm2 = ModulatedLayerNorm(hidden_size, LAYER_NORM_EPS, kernels)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), kernels=kernels)
        self.adaLN_modulation = nn.SequentialCell(nn.SiLU(), Linear(hidden_size, ADALN_CHUNKS * hidden_size,
                                                                    backend=kernels))
        self.residual = GatedResidual(kernels)

    def construct(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ops.chunk(
            self.adaLN_modulation(c), ADALN_CHUNKS, axis=1)  # 6 x (N, D)
        # x + gate * attn(...), then x + gate * mlp(...); each output projection's bias is added by the gated
        # residual (in its pass, with the native kernels)
        y = self.attn(self.norm1(x, shift_msa, scale_msa), add_bias=False)
        x = self.residual(x, gate_msa, y, self.attn.proj.bias)
        y = self.mlp(self.norm2(x, shift_mlp, scale_mlp), add_bias=False)
        x = self.residual(x, gate_mlp, y, self.mlp.fc2.bias)
        return x


class FinalLayer(nn.Cell):
    """adaLN-modulated norm, then Linear(D, p*p*out_channels) per token, ordered (p_h, p_w, c)."""

    def __init__(self, hidden_size, patch_size, out_channels, kernels=None):
        super().__init__()
        self.norm_final = ModulatedLayerNorm(hidden_size, LAYER_NORM_EPS, kernels)
        self.linear = Linear(hidden_size, patch_size * patch_size * out_channels, backend=kernels)
        self.adaLN_modulation = nn.SequentialCell(nn.SiLU(), Linear(hidden_size, 2 * hidden_size, backend=kernels))

    def construct(self, x, c):
        shift, scale = ops.chunk(self.adaLN_modulation(c), 2, axis=1)  # 2 x (N, D)
        return self.linear(self.norm_final(x, shift, scale))  # linear(modulate(norm_final(x), shift, scale))


#################################################################################
#                                 Core Latte                                    #
#################################################################################

class Latte(nn.Cell):
    """Latte with fixed input size and frame count.

    condition: None (unconditional), "class" (labels; a null row for CFG when class_dropout_prob > 0) or
    "text" (a (B, 77, 768) embedding projected to D). patch_embedder: "conv" (official) or "linear".
    kernels: the GELU / LayerNorm formulation (latte.kernels.KERNEL_BACKENDS); None picks this device's.
    """

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, num_frames=16, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True,
                 condition=None, patch_embedder="conv", enable_flash_attention=False, use_recompute=False,
                 kernels=None):
        super().__init__()
        _check_arguments(input_size, patch_size, depth, condition, patch_embedder)
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_frames = num_frames
        self.condition = condition
        self.grid_size = input_size // patch_size
        self.num_patches = self.grid_size**2
        self.hidden_size = hidden_size

        self.kernels = kernels or kernel_backend()[0]  # GELU / LayerNorm / patch formulation (None: this device's)
        self.x_embedder = PATCH_EMBEDDERS[patch_embedder](patch_size, in_channels, hidden_size, kernels=self.kernels)
        self.t_embedder = TimestepEmbedder(hidden_size)
        if condition == "class":
            self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        elif condition == "text":
            self.text_embedding_projection = nn.SequentialCell(
                nn.SiLU(), nn.Dense(TEXT_TOKENS * TEXT_DIM, hidden_size))

        # Fixed sin-cos tables, stored (frozen) in the state dict like the official model:
        self.pos_embed = Parameter(Tensor(spatial_table(hidden_size, self.grid_size)[None].astype(np.float32)),
                                   name="pos_embed", requires_grad=False)  # (1, T, D)
        self.temp_embed = Parameter(Tensor(temporal_table(hidden_size, num_frames)[None].astype(np.float32)),
                                    name="temp_embed", requires_grad=False)  # (1, F, D)

        backend, _ = choose_attention_backend(enable_flash_attention, hidden_size // num_heads)
        self.attention_backend = backend
        # Even blocks are spatial, odd ones temporal (over the num_frames video frames).
        self.blocks = nn.CellList([TransformerBlock(hidden_size, num_heads, mlp_ratio, attention_backend=backend,
                                                    kernels=self.kernels, frames=num_frames if i % 2 else 0)
                                   for i in range(depth)])
        if use_recompute:
            for block in self.blocks:
                block.recompute()
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels, kernels=self.kernels)
        self.to_images = TokensToImages(patch_size, self.out_channels, self.kernels)
        self.initialize_weights()

    def initialize_weights(self):
        """The official init: xavier Linear weights, zero biases, N(0, 0.02) label table and timestep MLP,
        zeroed adaLN and final layers (the model starts as the identity on its residual stream)."""
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Dense):
                _set(cell.weight, initializer(XavierUniform(), cell.weight.shape, ms.float32))
                _set(cell.bias, initializer(Zero(), cell.bias.shape, ms.float32))
        # Patch embedding initialized like a Linear on the flattened (C*p*p) patch, not like a conv:
        w = self.x_embedder.proj.weight
        fan = (w.shape[0], int(np.prod(w.shape[1:])))
        init = initializer(XavierUniform(), fan, ms.float32).init_data().asnumpy()  # a copy: a reshaped view
        _set(w, init.reshape(w.shape))  # breaks in-place updates (Assign) of the weight in PyNative mode
        _set(self.x_embedder.proj.bias, initializer(Zero(), self.x_embedder.proj.bias.shape, ms.float32))
        if self.condition == "class":
            table = self.y_embedder.embedding_table
            _set(table, initializer(Normal(0.02), table.shape, ms.float32))
        for i in (0, 2):
            dense = self.t_embedder.mlp[i]
            _set(dense.weight, initializer(Normal(0.02), dense.weight.shape, ms.float32))
        zeroed = [block.adaLN_modulation[-1] for block in self.blocks]
        zeroed += [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        for dense in zeroed:
            _set(dense.weight, initializer(Zero(), dense.weight.shape, ms.float32))
            _set(dense.bias, initializer(Zero(), dense.bias.shape, ms.float32))

    def unpatchify(self, x):
        """(N, T, p*p*c) -> (N, c, H, W)."""
        return self.to_images(x, self.grid_size, self.grid_size)

    def construct(self, x, t, y=None, text_embedding=None, force_drop_ids=None, image_labels=None,
                  image_drop_ids=None, image_text_embedding=None):
        """x (B, F + n, C, H, W): num_frames video frames, then n >= 0 images (image-video joint training, the
        official LatteIMG), t (B,) int, y (B,) int labels or None, text_embedding (B, 77, 768) or None,
        force_drop_ids (B,) int: 1 replaces that label by the null id (label dropout, drawn by the caller).
        With images: image_labels (B, n) int (class models: each image's own label) and image_drop_ids (B,) int
        (1: all n image labels of that sample become the null id, one draw per sample as the official), or
        image_text_embedding (B, n, 77, 768) (text models: each image's own caption). Spatial blocks see all
        F + n frames; the temporal blocks and temp_embed see the F video frames only. n = 0 is plain Latte."""
        b, f, c, h, w = x.shape
        frames = self.num_frames
        num_images = f - frames
        if num_images < 0:
            raise ValueError(f"x has {f} frames but the model was built with num_frames={frames}")
        x = x.reshape(b * f, c, h, w)  # (B, F+n, C, H, W) -> (B*(F+n), C, H, W)
        x = self.x_embedder(x) + self.pos_embed  # (B*(F+n), T, D)
        t_emb = self.t_embedder(t)  # (B, D)
        cond = t_emb
        if self.condition == "class":
            cond = cond + self.y_embedder(y, force_drop_ids)
        elif self.condition == "text":
            cond = cond + self.text_embedding_projection(text_embedding.reshape(b, -1))  # (B, 77*768) -> (B, D)
        tokens, dim = self.num_patches, self.hidden_size
        if num_images:
            cond_spatial = self._joint_spatial_condition(cond, t_emb, image_labels, image_drop_ids,
                                                         image_text_embedding, num_images)
        else:
            cond_spatial = ops.repeat_interleave(cond, f, 0)  # (B, D) -> (B*F, D), batch-major

        for i in range(0, len(self.blocks), 2):
            x = self.blocks[i](x, cond_spatial)  # spatial: attention over the T tokens of a frame (and image)
            x = x.reshape(b, f, tokens, dim)  # (B*(F+n), T, D) -> (B, F+n, T, D)
            if num_images:  # the images (B, n, T, D) skip the temporal block
                x = ops.cat([self._temporal(x[:, :frames], i, cond), x[:, frames:]], axis=1)
            else:
                x = self._temporal(x, i, cond)
            x = x.reshape(b * f, tokens, dim)  # (B, F+n, T, D) -> (B*(F+n), T, D)

        final_cond = ops.repeat_interleave(t_emb, f, 0) if self.condition == "text" else cond_spatial
        x = self.final_layer(x, final_cond)  # (B*(F+n), T, p*p*2C)
        x = self.unpatchify(x)  # (B*(F+n), 2C, H, W)
        return x.reshape(b, f, self.out_channels, h, w)  # (B*(F+n), 2C, H, W) -> (B, F+n, 2C, H, W)

    def _temporal(self, x, i, cond):
        """Temporal block i + 1 on video tokens (B, F, T, D), cond (B, D): attention over the F frames of each
        token. The official rearranges to (B*T, F, D) and repeats cond per token; the block computes the same
        in place (TransformerBlock with frames), so no transpose of x is needed on either side."""
        b, frames, tokens, dim = x.shape
        if i == 0:  # added once, before the first temporal block
            x = x + self.temp_embed.reshape(1, frames, 1, dim)  # (1, F, D) -> (1, F, 1, D): per frame, every token
        x = self.blocks[i + 1](x.reshape(b, frames * tokens, dim), cond)  # (B, F, T, D) -> (B, F*T, D)
        return x.reshape(b, frames, tokens, dim)  # (B, F*T, D) -> (B, F, T, D)

    def _joint_spatial_condition(self, cond, t_emb, image_labels, image_drop_ids, image_text_embedding,
                                 num_images):
        """(B*(F+n), D): the video's condition on its F frames, then t plus each image's own label / caption
        (unconditional: t alone) on its n images (the official LatteIMG's y_spatial / timestep_spatial)."""
        b, dim = cond.shape
        video = ops.repeat_interleave(cond, self.num_frames, 0).reshape(b, self.num_frames, dim)  # -> (B, F, D)
        image = ops.repeat_interleave(t_emb, num_images, 0).reshape(b, num_images, dim)  # (B, D) -> (B, n, D)
        if self.condition == "class":
            drop = None if image_drop_ids is None else image_drop_ids.reshape(b, 1)  # (B,) -> (B, 1): all n images
            image = image + self.y_embedder(image_labels, drop)  # (B, n) labels -> (B, n, D)
        elif self.condition == "text":
            flat = image_text_embedding.reshape(b * num_images, -1)  # (B, n, 77, 768) -> (B*n, 77*768)
            image = image + self.text_embedding_projection(flat).reshape(b, num_images, dim)  # -> (B, n, D)
        return ops.cat([video, image], axis=1).reshape(b * (self.num_frames + num_images), dim)  # -> (B*(F+n), D)

    def construct_with_cfg(self, x, t, y, cfg_scale, text_embedding=None):
        """Classifier-free guidance as the official forward_with_cfg.

        The first half of the batch is duplicated and run with the full y (labels, then null ids); guidance
        uncond + s * (cond - uncond) is applied to the eps channels [:in_channels] (the official hard-codes 4,
        the latent channel count of every released model); variance channels pass through unguided.
        """
        half = x[: x.shape[0] // 2]
        combined = ops.cat([half, half], axis=0)  # (B, F, C, H, W)
        out = self.construct(combined, t, y, text_embedding)  # (B, F, 2C, H, W)
        eps, rest = out[:, :, : self.in_channels], out[:, :, self.in_channels:]
        cond_eps, uncond_eps = ops.split(eps, eps.shape[0] // 2, axis=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = ops.cat([half_eps, half_eps], axis=0)
        return ops.cat([eps, rest], axis=2)


def _set(param, value):
    param.set_data(value if isinstance(value, Tensor) else Tensor(value))


def _check_arguments(input_size, patch_size, depth, condition, patch_embedder):
    if condition not in CONDITIONS:
        raise ValueError(f"condition={condition!r} is not one of {CONDITIONS}")
    if patch_embedder not in PATCH_EMBEDDERS:
        raise ValueError(f"patch_embedder={patch_embedder!r} is not one of {sorted(PATCH_EMBEDDERS)}")
    if input_size % patch_size:
        raise ValueError(f"input_size={input_size} (latent side) is not divisible by patch_size={patch_size}")
    if depth % 2:
        raise ValueError(f"depth={depth} must be even: blocks alternate spatial and temporal")
