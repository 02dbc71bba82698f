"""Building blocks of the Stable Diffusion VAE (diffusers' AutoencoderKL layout) as MindSpore cells.

Submodule and parameter names follow diffusers (`encoder.down_blocks.0.resnets.1.conv2.weight`,
`decoder.mid_block.attentions.0.to_q.weight`, ...) so that conversion is a rename of GroupNorm
`weight`/`bias` to MindSpore's `gamma`/`beta` and nothing else. Optional pieces (a down-sampler, the
mid-block attention) live in CellLists that hold zero or one cell, which keeps those names and lets
`construct` loop over them in graph mode.
"""
import math

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import HeUniform, initializer

from latte.kernels import kernel_backend
from latte.kernels.group_norm import GroupNorm

NORM_EPS = 1e-6  # every GroupNorm in the VAE (diffusers passes resnet_eps=1e-6 everywhere)
# Down-sampling pads right and bottom by one, then a stride-2 3x3 conv; MindSpore order is (top, bottom, left, right).
DOWNSAMPLE_PADDING = (0, 1, 0, 1)


def conv3x3(in_channels, out_channels, stride=1, padding=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, pad_mode="pad", padding=padding, has_bias=True)


def conv1x1(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, 1, pad_mode="valid", has_bias=True)


def group_norm(num_groups, num_channels, silu=False, eps=NORM_EPS):
    """The VAE's GroupNorm; silu=True fuses the SiLU that follows it (diffusers' norm + nonlinearity)."""
    return GroupNorm(num_groups, num_channels, eps=eps, silu=silu)


class ResnetBlock(nn.Cell):
    """GroupNorm-SiLU-conv twice, plus the input (through a 1x1 `conv_shortcut` when the width changes); each
    norm cell applies the SiLU itself."""

    def __init__(self, in_channels, out_channels, num_groups):
        super().__init__()
        self.norm1 = group_norm(num_groups, in_channels, silu=True)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = group_norm(num_groups, out_channels, silu=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.has_shortcut = in_channels != out_channels
        self.conv_shortcut = conv1x1(in_channels, out_channels) if self.has_shortcut else None

    def construct(self, x):
        h = self.conv1(self.norm1(x))  # norm, then SiLU
        h = self.conv2(self.norm2(h))
        if self.has_shortcut:
            x = self.conv_shortcut(x)
        return x + h


class Downsample(nn.Cell):
    """Halves H and W: zero-pad right/bottom by one, then a stride-2 3x3 conv without further padding."""

    def __init__(self, channels):
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2, padding=DOWNSAMPLE_PADDING)

    def construct(self, x):
        return self.conv(x)  # (N, C, H, W) -> (N, C, H/2, W/2)


class Upsample(nn.Cell):
    """Doubles H and W: nearest-neighbour x2, then a 3x3 conv (`conv`).

    On CPU the two run as their sub-pixel equivalent (`subpixel=True`): output pixel (2i + a, 2j + b) of a 3x3
    conv over the upsampled map only ever reads the 2x2 input pixels around (i, j), each through a sum of the
    3x3 taps that land on it. So four 2x2 convs of the small map, one per phase (a, b), give the same output
    with 16 instead of 36 multiply-adds per input pixel and channel pair, and never build the 4x larger map
    (the decoder's last upsampling conv, 256 channels at 128x128: 1.09 -> 0.67 s on 2 cores). The taps are
    summed before the multiply, which rounds differently in the last bits only. Ascend and GPU keep the direct
    form (`kernel_backend`).
    """

    def __init__(self, channels, subpixel=None):
        super().__init__()
        self.conv = conv3x3(channels, channels)
        self.subpixel = kernel_backend()[0] != "builtin" if subpixel is None else bool(subpixel)
        # phase (a, b) reads input rows i - 1 + a, i + a and columns j - 1 + b, j + b: pad before by 1 - a, after by a
        self.phase_convs = [ops.Conv2D(channels, 2, pad_mode="pad", pad=(1 - a, a, 1 - b, b))
                            for a in range(2) for b in range(2)] if self.subpixel else []
        self.bias_add = ops.BiasAdd()

    def construct(self, x):
        if not self.subpixel:
            return self.conv(nearest_2x(x))  # (N, C, H, W) -> (N, C, 2H, 2W)
        n, _, h, w = x.shape
        weight = self.conv.weight.astype(x.dtype)  # (O, I, 3, 3)
        rows_out = []
        for a, rows in enumerate(_phase_taps(weight, 2)):  # (O, I, 2, 3) per row phase
            phases = [self.phase_convs[2 * a + b](x, taps)  # (N, O, H, W): outputs (2i + a, 2j + b)
                      for b, taps in enumerate(_phase_taps(rows, 3))]  # (O, I, 2, 2) per column phase
            rows_out.append(ops.stack(phases, -1).reshape(n, -1, h, 2 * w))  # (N, O, H, W, b) -> (N, O, H, 2W)
        y = ops.stack(rows_out, 3).reshape(n, -1, 2 * h, 2 * w)  # (N, O, H, a, 2W) -> (N, O, 2H, 2W)
        return self.bias_add(y, self.conv.bias.astype(y.dtype))


def _phase_taps(weight, axis):
    """The 3 taps of a 3x3 conv over a nearest-2x map along `axis` (2: rows, 3: columns), as the 2 taps each
    output phase applies to the small map: phase 0 reads [tap 0, taps 1 + 2], phase 1 [taps 0 + 1, tap 2]."""
    t0, t1, t2 = (weight.narrow(axis, k, 1) for k in range(3))
    return ops.cat([t0, t1 + t2], axis), ops.cat([t0 + t1, t2], axis)


def nearest_2x(x):
    """Nearest-neighbour upsampling by 2 of (N, C, H, W) as one broadcast copy: the same values as
    interpolate(mode='nearest', scale_factor=2), whose CPU kernel took ~90 ms a call on the VAE decoder's maps."""
    n, c, h, w = x.shape
    x = ops.broadcast_to(x.reshape(n, c, h, 1, w, 1), (n, c, h, 2, w, 2))  # each pixel -> a 2x2 block
    return x.reshape(n, c, 2 * h, 2 * w)  # (N, C, H, 2, W, 2) -> (N, C, 2H, 2W)


class TokenLinear(nn.Cell):
    """y = x W^T + b on (N, T, C_in) tokens, named like nn.Dense (`weight` (C_out, C_in), `bias`).

    nn.Dense flattens (N, T, C) to (N*T, C) and its CPU GEMM then rounds differently depending on N;
    a broadcast batched matmul works per sample, so encoding a clip in micro-batches of frames gives the
    same numbers as all frames at once.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.weight = ms.Parameter(initializer(HeUniform(negative_slope=math.sqrt(5)), (out_channels, in_channels)))
        self.bias = ms.Parameter(initializer("zeros", (out_channels,)))

    def construct(self, x):
        weight, bias = self.weight.astype(x.dtype), self.bias.astype(x.dtype)  # fp16 compute: graph mode needs it
        return ops.matmul(x, weight.swapaxes(0, 1)) + bias  # (N, T, C_in) -> (N, T, C_out)


class MidAttention(nn.Cell):
    """Single-head self-attention over the H*W positions of a feature map, with a residual connection."""

    def __init__(self, channels, num_groups):
        super().__init__()
        self.group_norm = group_norm(num_groups, channels)
        self.to_q = TokenLinear(channels, channels)
        self.to_k = TokenLinear(channels, channels)
        self.to_v = TokenLinear(channels, channels)
        self.to_out = nn.CellList([TokenLinear(channels, channels)])  # diffusers' to_out.0 (to_out.1 is dropout)
        self.scale = channels ** -0.5  # one head spanning all channels

    def construct(self, x):
        n, c, h, w = x.shape
        tokens = self.group_norm(x).reshape(n, c, h * w).swapaxes(1, 2)  # (N, C, H, W) -> (N, HW, C)
        q = self.to_q(tokens)
        k = self.to_k(tokens)
        v = self.to_v(tokens)
        scores = ops.matmul(q, k.swapaxes(1, 2)) * self.scale  # (N, HW, HW)
        probs = ops.softmax(scores.astype(ms.float32), axis=-1).astype(v.dtype)  # softmax in fp32 under fp16
        out = self.to_out[0](ops.matmul(probs, v))  # (N, HW, C)
        out = out.swapaxes(1, 2).reshape(n, c, h, w)  # (N, HW, C) -> (N, C, H, W)
        return x + out


class MidBlock(nn.Cell):
    """resnet -> optional attention -> resnet, at the lowest resolution."""

    def __init__(self, channels, num_groups, add_attention):
        super().__init__()
        self.resnets = nn.CellList([ResnetBlock(channels, channels, num_groups) for _ in range(2)])
        self.attentions = nn.CellList([MidAttention(channels, num_groups)] if add_attention else [])

    def construct(self, x):
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)


class DownEncoderBlock(nn.Cell):
    """`num_layers` resnets, then a Downsample unless this is the last (lowest-resolution) block."""

    def __init__(self, in_channels, out_channels, num_layers, num_groups, add_downsample):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_layers
        self.resnets = nn.CellList([ResnetBlock(widths[i], out_channels, num_groups) for i in range(num_layers)])
        self.downsamplers = nn.CellList([Downsample(out_channels)] if add_downsample else [])

    def construct(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        for downsampler in self.downsamplers:
            x = downsampler(x)
        return x


class UpDecoderBlock(nn.Cell):
    """`num_layers` resnets, then an Upsample unless this is the last (full-resolution) block."""

    def __init__(self, in_channels, out_channels, num_layers, num_groups, add_upsample):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_layers
        self.resnets = nn.CellList([ResnetBlock(widths[i], out_channels, num_groups) for i in range(num_layers)])
        self.upsamplers = nn.CellList([Upsample(out_channels)] if add_upsample else [])

    def construct(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        for upsampler in self.upsamplers:
            x = upsampler(x)
        return x


class Encoder(nn.Cell):
    """(N, in_channels, H, W) -> (N, 2 * latent_channels, H / 2**(levels-1), ...): mean and logvar stacked."""

    def __init__(self, in_channels, latent_channels, block_out_channels, layers_per_block, num_groups, add_attention):
        super().__init__()
        widths = list(block_out_channels)
        last = len(widths) - 1
        self.conv_in = conv3x3(in_channels, widths[0])
        self.down_blocks = nn.CellList([
            DownEncoderBlock(widths[max(i - 1, 0)], widths[i], layers_per_block, num_groups, add_downsample=i < last)
            for i in range(len(widths))
        ])
        self.mid_block = MidBlock(widths[-1], num_groups, add_attention)
        self.conv_norm_out = group_norm(num_groups, widths[-1], silu=True)
        self.conv_out = conv3x3(widths[-1], 2 * latent_channels)

    def construct(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_norm_out(x))  # norm, then SiLU


class Decoder(nn.Cell):
    """(N, latent_channels, h, w) -> (N, out_channels, h * 2**(levels-1), ...); widths run in reverse."""

    def __init__(self, latent_channels, out_channels, block_out_channels, layers_per_block, num_groups,
                 add_attention):
        super().__init__()
        widths = list(reversed(block_out_channels))
        last = len(widths) - 1
        self.conv_in = conv3x3(latent_channels, widths[0])
        self.mid_block = MidBlock(widths[0], num_groups, add_attention)
        # the decoder has one resnet more per level than the encoder
        self.up_blocks = nn.CellList([
            UpDecoderBlock(widths[max(i - 1, 0)], widths[i], layers_per_block + 1, num_groups, add_upsample=i < last)
            for i in range(len(widths))
        ])
        self.conv_norm_out = group_norm(num_groups, widths[-1], silu=True)
        self.conv_out = conv3x3(widths[-1], out_channels)

    def construct(self, z):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_norm_out(x))  # norm, then SiLU
