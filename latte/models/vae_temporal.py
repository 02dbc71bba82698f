"""The temporal decoder of diffusers' AutoencoderKLTemporalDecoder (Latte-1's `vae_temporal_decoder/`) as cells.

Every decoder level mixes a per-frame 2-D resnet with a temporal resnet (3x1x1 convs over the frames of each
video) through a learned blend, and a last 3x1x1 conv (`time_conv_out`) smooths the output over frames. Frames
arrive as (B*F, C, h, w), the F frames of each video adjacent; `num_frames` (F) says how they group.
Names follow diffusers (`decoder.up_blocks.0.resnets.1.temporal_res_block.conv1.weight`,
`...time_mixer.mix_factor`), so conversion is the same rename as the 2-D VAE's (GroupNorm weight/bias ->
gamma/beta). The per-frame pieces (resnet, mid-block attention, up-sampler) are the 2-D VAE's cells.
"""
import mindspore as ms
from mindspore import nn, ops

from latte.kernels import Permute
from latte.models.vae_blocks import MidAttention, ResnetBlock, Upsample, conv3x3, group_norm

TEMPORAL_NORM_EPS = 1e-5  # GroupNorms of the temporal resnets (diffusers: temporal_eps=1e-5); spatial ones NORM_EPS
TEMPORAL_KERNEL = (3, 1, 1)  # (frames, H, W): each output frame sees its neighbours, zero-padded at the ends
TEMPORAL_PADDING = (1, 1, 0, 0, 0, 0)  # MindSpore order (head, tail, top, bottom, left, right)
SWAP_FRAMES_CHANNELS = (0, 2, 1, 3, 4)  # (B, F, C, H, W) <-> (B, C, F, H, W)
INITIAL_MIX_FACTOR = 0.0  # diffusers' merge_factor: sigmoid(0) = an even blend before training


def temporal_conv(in_channels, out_channels):
    return nn.Conv3d(in_channels, out_channels, TEMPORAL_KERNEL, pad_mode="pad", padding=TEMPORAL_PADDING,
                     has_bias=True)


class FramesToVideos(nn.Cell):
    """(B*F, C, H, W), frames grouped by video -> (B, C, F, H, W). A Permute cell: on CPU MindSpore's Transpose
    would keep an offset table of twice the feature map's bytes for as long as the graph lives."""

    def __init__(self):
        super().__init__()
        self.permute = Permute(SWAP_FRAMES_CHANNELS)

    def construct(self, x, num_frames):
        bf, c, h, w = x.shape
        x = x.reshape(bf // num_frames, num_frames, c, h, w)  # (B*F, C, H, W) -> (B, F, C, H, W)
        return self.permute(x)  # -> (B, C, F, H, W)


class VideosToFrames(nn.Cell):
    """(B, C, F, H, W) -> (B*F, C, H, W), frames grouped by video."""

    def __init__(self):
        super().__init__()
        self.permute = Permute(SWAP_FRAMES_CHANNELS)

    def construct(self, x):
        b, c, f, h, w = x.shape
        return self.permute(x).reshape(b * f, c, h, w)  # (B, C, F, H, W) -> (B, F, C, H, W) -> (B*F, C, H, W)


class TemporalResnetBlock(nn.Cell):
    """GroupNorm-SiLU-3x1x1 conv twice over (B, C, F, H, W), plus the input (widths are equal here)."""

    def __init__(self, channels, num_groups):
        super().__init__()
        self.norm1 = group_norm(num_groups, channels, silu=True, eps=TEMPORAL_NORM_EPS)
        self.conv1 = temporal_conv(channels, channels)
        self.norm2 = group_norm(num_groups, channels, silu=True, eps=TEMPORAL_NORM_EPS)
        self.conv2 = temporal_conv(channels, channels)

    def construct(self, x):
        h = self.conv1(self.norm1(x))  # norm, then SiLU
        h = self.conv2(self.norm2(h))
        return x + h


class AlphaBlender(nn.Cell):
    """diffusers' AlphaBlender, merge_strategy "learned" with switch_spatial_to_temporal_mix (the temporal VAE's):
    out = (1 - a) * spatial + a * temporal, a = sigmoid(mix_factor)."""

    def __init__(self):
        super().__init__()
        self.mix_factor = ms.Parameter(ms.Tensor([INITIAL_MIX_FACTOR], ms.float32))

    def construct(self, x_spatial, x_temporal):
        alpha = 1.0 - ops.sigmoid(self.mix_factor).astype(x_spatial.dtype)  # the switched weight of the spatial path
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


class SpatioTemporalResBlock(nn.Cell):
    """A per-frame 2-D resnet, then a temporal resnet over each video, blended with the 2-D result."""

    def __init__(self, in_channels, out_channels, num_groups):
        super().__init__()
        self.spatial_res_block = ResnetBlock(in_channels, out_channels, num_groups)
        self.temporal_res_block = TemporalResnetBlock(out_channels, num_groups)
        self.time_mixer = AlphaBlender()
        self.to_videos = FramesToVideos()
        self.to_frames = VideosToFrames()

    def construct(self, x, num_frames):
        spatial = self.to_videos(self.spatial_res_block(x), num_frames)  # (B, C, F, H, W)
        mixed = self.time_mixer(spatial, self.temporal_res_block(spatial))
        return self.to_frames(mixed)  # (B*F, C, H, W)


class MidBlockTemporalDecoder(nn.Cell):
    """resnet, then (attention, resnet) pairs at the lowest resolution.

    As in diffusers, there are `num_layers` resnets but one attention, and the pairs are zipped: with
    num_layers=2 (Latte-1, SVD) every cell runs; with 1 the attention, with 3 the last resnet exist but never run.
    """

    def __init__(self, channels, num_layers, num_groups):
        super().__init__()
        self.resnets = nn.CellList([SpatioTemporalResBlock(channels, channels, num_groups) for _ in range(num_layers)])
        self.attentions = nn.CellList([MidAttention(channels, num_groups)])
        self.num_pairs = min(num_layers - 1, 1)

    def construct(self, x, num_frames):
        x = self.resnets[0](x, num_frames)
        for i in range(self.num_pairs):
            x = self.attentions[i](x)
            x = self.resnets[i + 1](x, num_frames)
        return x


class UpBlockTemporalDecoder(nn.Cell):
    """`num_layers` spatio-temporal resnets, then a (per-frame) Upsample unless this is the last level."""

    def __init__(self, in_channels, out_channels, num_layers, num_groups, add_upsample):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_layers
        self.resnets = nn.CellList([SpatioTemporalResBlock(widths[i], out_channels, num_groups)
                                    for i in range(num_layers)])
        self.upsamplers = nn.CellList([Upsample(out_channels)] if add_upsample else [])

    def construct(self, x, num_frames):
        for resnet in self.resnets:
            x = resnet(x, num_frames)
        for upsampler in self.upsamplers:
            x = upsampler(x)
        return x


class TemporalDecoder(nn.Cell):
    """(B*F, latent_channels, h, w) -> (B*F, out_channels, h * 2**(levels-1), ...), frames grouped by video."""

    def __init__(self, latent_channels, out_channels, block_out_channels, layers_per_block, num_groups):
        super().__init__()
        widths = list(reversed(block_out_channels))
        last = len(widths) - 1
        self.conv_in = conv3x3(latent_channels, widths[0])
        self.mid_block = MidBlockTemporalDecoder(widths[0], layers_per_block, num_groups)
        # as in the 2-D decoder, one resnet more per level than the encoder
        self.up_blocks = nn.CellList([
            UpBlockTemporalDecoder(widths[max(i - 1, 0)], widths[i], layers_per_block + 1, num_groups,
                                   add_upsample=i < last)
            for i in range(len(widths))
        ])
        self.conv_norm_out = group_norm(num_groups, widths[-1], silu=True)
        self.conv_out = conv3x3(widths[-1], out_channels)
        self.time_conv_out = temporal_conv(out_channels, out_channels)
        self.to_videos = FramesToVideos()
        self.to_frames = VideosToFrames()

    def construct(self, z, num_frames):
        x = self.mid_block(self.conv_in(z), num_frames)
        for block in self.up_blocks:
            x = block(x, num_frames)
        x = self.conv_out(self.conv_norm_out(x))  # norm, then SiLU
        return self.to_frames(self.time_conv_out(self.to_videos(x, num_frames)))  # over frames, per video
