"""PatchGAN discriminator (the taming-transformers / pix2pix NLayerDiscriminator) and the hinge losses.

    disc = PatchGAN(in_channels=1, channels=64, num_layers=3)
    logits = disc(frames)                   # (N, C, H, W) in [-1, 1] -> (N, 1, h, w): one logit per patch
"""
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal, initializer

KERNEL, PADDING = 4, 1
LEAKY_SLOPE = 0.2
MAX_WIDTH_MULT = 8  # widths double per layer up to 8x the first
INIT_STD = 0.02  # conv weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02) (pix2pix / taming init)
BN_MOMENTUM = 0.9  # MindSpore's momentum is 1 - torch's (0.1)


def patchgan_output_size(size, num_layers):
    """(h, w) of the logit map for (H, W) frames: num_layers stride-2 convs, then two stride-1 4x4 convs."""
    out = []
    for side in size:
        for _ in range(num_layers):
            side = (side + 2 * PADDING - KERNEL) // 2 + 1
        for _ in range(2):
            side = side + 2 * PADDING - KERNEL + 1
        out.append(side)
    return tuple(out)


def _conv(in_channels, out_channels, stride, bias):
    conv = nn.Conv2d(in_channels, out_channels, KERNEL, stride=stride, pad_mode="pad", padding=PADDING,
                     has_bias=bias, weight_init=Normal(INIT_STD), bias_init="zeros")
    return conv


def _batch_norm(channels):
    bn = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=1e-5)
    bn.gamma.set_data(initializer(Normal(INIT_STD, 1.0), bn.gamma.shape, ms.float32))
    return bn


class PatchGAN(nn.Cell):
    """conv(s2)+LReLU, (num_layers - 1) x [conv(s2)+BN+LReLU], conv(s1)+BN+LReLU, conv(s1) -> 1 logit per patch."""

    def __init__(self, in_channels=3, channels=64, num_layers=3):
        super().__init__()
        layers = [_conv(in_channels, channels, 2, True), nn.LeakyReLU(LEAKY_SLOPE)]
        width = channels
        for n in range(1, num_layers + 1):
            out = channels * min(2 ** n, MAX_WIDTH_MULT)
            stride = 2 if n < num_layers else 1
            layers += [_conv(width, out, stride, False), _batch_norm(out), nn.LeakyReLU(LEAKY_SLOPE)]
            width = out
        layers.append(_conv(width, 1, 1, True))
        self.main = nn.SequentialCell(layers)

    def construct(self, x):
        return self.main(x)  # (N, C, H, W) -> (N, 1, h, w)


def hinge_d_loss(logits_real, logits_fake):
    """Discriminator hinge loss: 0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
    return 0.5 * (ops.mean(ops.relu(1.0 - logits_real)) + ops.mean(ops.relu(1.0 + logits_fake)))


def hinge_g_loss(logits_fake):
    """Generator side of the hinge GAN: -E[D(G(z))]."""
    return -ops.mean(logits_fake)
