"""An independent PyTorch Latte in the official layout (state-dict names and math of Vchitect/Latte
models/latte.py), written for parity tests only. Import only where torch is installed."""
import math

import numpy as np
import torch
from torch import nn


def _sincos(dim, pos):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _pos_2d(dim, grid):
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([_sincos(dim // 2, gw), _sincos(dim // 2, gh)], axis=1)


class TorchAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class TorchMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _mod(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TorchBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = TorchAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = TorchMlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(_mod(self.norm1(x), s1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(_mod(self.norm2(x), s2, sc2))


class TorchFinal(nn.Module):
    def __init__(self, dim, patch, out_ch):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_ch)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(_mod(self.norm_final(x), shift, scale))


class TorchPatch(nn.Module):
    def __init__(self, patch, in_ch, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TorchLatte(nn.Module):
    def __init__(self, input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=4, num_heads=4,
                 mlp_ratio=4.0, num_frames=4, num_classes=101, class_dropout_prob=0.1, learn_sigma=True,
                 condition=None):
        super().__init__()
        self.in_ch, self.out_ch, self.p = in_channels, in_channels * (2 if learn_sigma else 1), patch_size
        self.condition, self.dim = condition, hidden_size
        self.x_embedder = TorchPatch(patch_size, in_channels, hidden_size)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        if condition == "class":
            self.y_embedder = nn.Module()
            self.y_embedder.embedding_table = nn.Embedding(num_classes + int(class_dropout_prob > 0), hidden_size)
        if condition == "text":
            self.text_embedding_projection = nn.Sequential(nn.SiLU(), nn.Linear(77 * 768, hidden_size))
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.from_numpy(_pos_2d(hidden_size, grid)).float()[None], requires_grad=False)
        self.temp_embed = nn.Parameter(torch.from_numpy(_sincos(hidden_size, np.arange(num_frames))).float()[None],
                                       requires_grad=False)
        self.blocks = nn.ModuleList([TorchBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = TorchFinal(hidden_size, patch_size, self.out_ch)

    def t_embed(self, t):
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.t_embedder.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))

    def forward(self, x, t, y=None, text_embedding=None, y_image=None, use_image_num=0):
        """The official Latte forward; with use_image_num = n > 0 the official LatteIMG one (models/latte_img.py,
        training mode, labels already dropped by the caller): x holds F video frames then n images, y_image
        (B, n) the images' labels; spatial blocks see all F + n frames, temporal blocks the F video frames."""
        b, f, c, h, w = x.shape
        frames = f - use_image_num
        x = self.x_embedder(x.reshape(b * f, c, h, w)) + self.pos_embed
        tokens = x.shape[1]
        temb = self.t_embed(t)
        cond = temb
        if self.condition == "class":
            cond = temb + self.y_embedder.embedding_table(y)
        elif self.condition == "text":
            cond = temb + self.text_embedding_projection(text_embedding.reshape(b, -1))
        c_sp, c_tp = cond.repeat_interleave(f, 0), cond.repeat_interleave(tokens, 0)
        if use_image_num:
            c_sp = temb.repeat_interleave(f, 0)  # timestep_spatial: t over the F + n frames
            if self.condition == "class":
                y_video = self.y_embedder.embedding_table(y)[:, None].expand(b, frames, self.dim)
                y_images = torch.cat([self.y_embedder.embedding_table(row.reshape(1, -1)) for row in y_image], 0)
                c_sp = c_sp + torch.cat([y_video, y_images], dim=1).reshape(b * f, self.dim)  # + y_spatial
        for i in range(0, len(self.blocks), 2):
            x = self.blocks[i](x, c_sp)
            x = x.reshape(b, f, tokens, self.dim).transpose(1, 2).reshape(b * tokens, f, self.dim)
            x_video, x_image = x[:, :frames], x[:, frames:]
            if i == 0:
                x_video = x_video + self.temp_embed
            x = torch.cat([self.blocks[i + 1](x_video, c_tp), x_image], dim=1)
            x = x.reshape(b, tokens, f, self.dim).transpose(1, 2).reshape(b * f, tokens, self.dim)
        final_c = temb.repeat_interleave(f, 0) if self.condition == "text" else c_sp
        x = self.final_layer(x, final_c)
        g = int(tokens**0.5)
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(b * f, g, g, self.p, self.p, self.out_ch))
        return x.reshape(b, f, self.out_ch, g * self.p, g * self.p)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], 0), t, y)
        eps, rest = out[:, :, :4], out[:, :, 4:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], 0), rest], dim=2)


def randomize_(model, seed=0):
    """Every trainable weight random and non-zero (the official init zeroes adaLN and the final layer)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("pos_embed", "temp_embed"):
                continue
            fan_in = p.shape[1] if p.ndim > 1 else p.shape[0]
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
    return model
