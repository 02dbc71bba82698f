"""I3D (Inception-v1 inflated to 3D, Kinetics-400), the FVD detector of StyleGAN-V / the official Latte evaluation
(i3d_torchscript.pt, a TorchScript port of the tf.hub i3d-kinetics-400 module).

Architecture: DeepMind's kinetics-i3d (Carreira & Zisserman 2017) -- TensorFlow "SAME" padding on every
convolution and max pool, BatchNorm eps 1e-3, logits = 1x1x1 convolution with bias after a (2, 7, 7) average
pool, averaged over time. The detector call of StyleGAN-V is `detector(x, rescale=True, resize=True,
return_features=True)` on uint8-range (B, 3, T, H, W) clips:
  rescale: x * 2/255 - 1;  resize: bilinear to 224 x 224 per frame (torch, align_corners=False);
  return_features: the 400 time-averaged logits (the softmax of them otherwise).
Module names follow the common PyTorch port (Conv3d_1a_7x7, Mixed_3b.b1b, logits...), so the converter is a
rename of BatchNorm parameter names only. At least 9 frames are needed at 224 x 224 (the average pool's time
window of 2 after a stride-8 reduction; recipes.I3D_MIN_FRAMES).
"""
from dataclasses import dataclass
from typing import Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from latte.metrics.detector_config import DetectorConfig
from latte.metrics.resize import FrameResize

I3D_INPUT_SIZE = 224  # frames are resized to 224 x 224 before the network
I3D_BN_EPS = 1e-3
PIXEL_MAX = 255.0
KINETICS_CLASSES = 400

# the branch widths of each Inception block: (b0, b1a, b1b, b2a, b2b, b3b), as in kinetics-i3d
I3D_MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", None),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", None),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
I3D_POOLS = {"MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)), "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
             "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)), "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2))}
I3D_STEM = (64, 64, 192)  # Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3 output channels


@dataclass(frozen=True)
class I3DConfig(DetectorConfig):
    """width_divisor > 1 divides every channel count (tiny test models with the released module tree)."""
    num_classes: int = KINETICS_CLASSES
    width_divisor: int = 1


def same_padding(size, kernel, stride):
    """TensorFlow SAME padding of one axis: (before, after), the odd pixel after."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x, kernel, stride):
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]  # (T, H, W)
    flat = (*pads[2], *pads[1], *pads[0])  # ops.pad takes the last axis first
    return ops.pad(x, flat) if any(flat) else x


class FrozenBatchNorm3d(nn.Cell):
    """Inference BatchNorm over channel axis 1 of (B, C, T, H, W)."""

    def __init__(self, channels, eps=I3D_BN_EPS):
        super().__init__()
        self.eps = eps
        self.gamma = Parameter(Tensor(np.ones(channels, np.float32)), name="gamma")
        self.beta = Parameter(Tensor(np.zeros(channels, np.float32)), name="beta")
        self.moving_mean = Parameter(Tensor(np.zeros(channels, np.float32)), name="moving_mean")
        self.moving_variance = Parameter(Tensor(np.ones(channels, np.float32)), name="moving_variance")

    def construct(self, x):
        scale = self.gamma / ops.sqrt(self.moving_variance + self.eps)
        shift = self.beta - self.moving_mean * scale
        return x * scale.reshape(1, -1, 1, 1, 1) + shift.reshape(1, -1, 1, 1, 1)  # (C,) -> (1, C, 1, 1, 1)


class Unit3D(nn.Cell):
    """SAME-padded Conv3d, then BatchNorm and ReLU (the logits unit: bias, neither)."""

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1), logits=False):
        super().__init__()
        self.kernel, self.stride, self.logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, pad_mode="valid",
                                has_bias=logits)
        self.bn = None if logits else FrozenBatchNorm3d(out_channels)

    def construct(self, x):
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.logits:
            return x
        return ops.relu(self.bn(x))


class MaxPool3dSame(nn.Cell):
    """SAME-padded max pool; zeros pad like the PyTorch port (inputs follow a ReLU, so zeros never win)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.pool = nn.MaxPool3d(self.kernel, self.stride)

    def construct(self, x):
        return self.pool(_pad_same(x, self.kernel, self.stride))


class InceptionBlock(nn.Cell):
    def __init__(self, in_channels, widths):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = widths
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def construct(self, x):
        return ops.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], axis=1)


class I3D(nn.Cell):
    """(B, 3, T, H, W) clips -> (B, num_classes) time-averaged logits (return_features) or their softmax."""

    def __init__(self, config=I3DConfig(), input_hw=(I3D_INPUT_SIZE, I3D_INPUT_SIZE), rescale=True, resize=True,
                 return_features=True):
        super().__init__()
        self.config = config
        self.rescale, self.return_features = rescale, return_features
        self.resize = FrameResize(input_hw, (I3D_INPUT_SIZE, I3D_INPUT_SIZE)) if resize else None
        w = config.width
        stem = [w(c) for c in I3D_STEM]
        self.Conv3d_1a_7x7 = Unit3D(3, stem[0], (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame(*I3D_POOLS["MaxPool3d_2a_3x3"])
        self.Conv3d_2b_1x1 = Unit3D(stem[0], stem[1])
        self.Conv3d_2c_3x3 = Unit3D(stem[1], stem[2], (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame(*I3D_POOLS["MaxPool3d_3a_3x3"])
        channels = stem[2]
        for name, widths in I3D_MIXED:
            if widths is None:
                layer = MaxPool3dSame(*I3D_POOLS[name])
            else:
                layer = InceptionBlock(channels, [w(c) for c in widths])
                channels = layer.out_channels
            setattr(self, name, layer)
        self.mixed_names = tuple(name for name, _ in I3D_MIXED)
        self.avg_pool = nn.AvgPool3d((2, 7, 7), (1, 1, 1))
        self.logits = Unit3D(channels, config.num_classes, logits=True)

    def construct(self, x):
        x = x.astype(ms.float32)
        if self.rescale:
            x = x * (2.0 / PIXEL_MAX) - 1.0  # [0, 255] -> [-1, 1]
        if self.resize is not None:
            x = self.resize(x)  # (B, 3, T, H, W) -> (B, 3, T, 224, 224)
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        for name in self.mixed_names:
            x = getattr(self, name)(x)
        x = self.logits(self.avg_pool(x))  # (B, classes, T', 1, 1)
        logits = x.mean(axis=(2, 3, 4))  # (B, classes, T', 1, 1) -> (B, classes): time average
        return logits if self.return_features else ops.softmax(logits, axis=1)
