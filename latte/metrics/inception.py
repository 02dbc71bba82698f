"""The 2015 Inception (Inception v3 of TensorFlow's inception-2015-12-05.tgz, 1008 ImageNet classes), the image
detector of FID and IS in StyleGAN-V / the official Latte evaluation (NVIDIA's TorchScript translation:
inception-2015-12-05.pt for IS, the same network pickled as inception-2015-12-05.pkl for FID).

The detector call takes uint8-range (B, 3, H, W) images of any size:
  resize: TF1 resize_bilinear to 299 x 299 (source pixel i * in/out, the last pixel repeated), which the port
          emulates with affine_grid + grid_sample;  normalise: (x - 128) / 128;
  return_features=True: the 2048 pool3 features (FID);
  otherwise the softmax of the 1008 logits, without the output bias when no_output_bias=True (IS).
Every convolution is followed by a BatchNorm without scale (TF's Inception has none; the port stores `beta`,
`mean`, `var` beside the convolution's `weight`, eps 1e-3) and a ReLU. Module names follow the port:
`layers.conv` .. `layers.conv_4`, `layers.mixed` .. `layers.mixed_10` with towers `tower`, `tower_1`, `tower_2`
(figure-7 blocks: `tower_conv`, `tower_mixed_conv` ... directly on the block), `output`.
"""
from collections import OrderedDict
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from latte.metrics.detector_config import DetectorConfig
from latte.metrics.resize import FrameResize, tf_legacy_matrix

INCEPTION_INPUT_SIZE = 299
INCEPTION_BN_EPS = 1e-3
INCEPTION_PIXEL_CENTRE = 128.0  # x -> (x - 128) / 128
INCEPTION_FEATURES = 2048  # pool3
IMAGENET_2015_CLASSES = 1008

# name -> (block kind, its widths); kinds as in the TF graph: A (mixed..mixed_2: the pool branch width), B (grid
# reduction, mixed_3), C (7x7 factorised, mixed_4..mixed_7: the 7x7 towers' width), D (grid reduction, mixed_8),
# E (figure 7, mixed_9 with an average pool, mixed_10 with a max pool in the pool branch)
INCEPTION_STEM = (("conv", 3, 32, 3, 2, 0), ("conv_1", 32, 32, 3, 1, 0), ("conv_2", 32, 64, 3, 1, 1), ("pool0",),
                  ("conv_3", 64, 80, 1, 1, 0), ("conv_4", 80, 192, 3, 1, 0), ("pool1",))
INCEPTION_MIXED = (("mixed", "A", 32), ("mixed_1", "A", 64), ("mixed_2", "A", 64), ("mixed_3", "B", None),
                   ("mixed_4", "C", 128), ("mixed_5", "C", 160), ("mixed_6", "C", 160), ("mixed_7", "C", 192),
                   ("mixed_8", "D", None), ("mixed_9", "E", "avg"), ("mixed_10", "E", "max"))


@dataclass(frozen=True)
class InceptionConfig(DetectorConfig):
    """width_divisor > 1 divides every channel count (tiny test models with the released module tree)."""
    num_classes: int = IMAGENET_2015_CLASSES
    width_divisor: int = 1


class ConvBN(nn.Cell):
    """Conv2d without bias, BatchNorm without scale (beta, mean, var), ReLU; zero padding (pad_h, pad_w)."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.pads = (0, 0, 0, 0) if padding == 0 else (padding[1], padding[1], padding[0], padding[0]) \
            if isinstance(padding, tuple) else (padding,) * 4
        self.weight = Parameter(Tensor(np.zeros((cout, cin, kh, kw), np.float32)), name="weight")
        self.beta = Parameter(Tensor(np.zeros(cout, np.float32)), name="beta")
        self.mean = Parameter(Tensor(np.zeros(cout, np.float32)), name="mean")
        self.var = Parameter(Tensor(np.ones(cout, np.float32)), name="var")

    def construct(self, x):
        if any(self.pads):
            x = ops.pad(x, self.pads)  # (left, right, top, bottom)
        x = ops.conv2d(x, self.weight, stride=self.stride)
        scale = ops.rsqrt(self.var + INCEPTION_BN_EPS)
        shift = self.beta - self.mean * scale
        return ops.relu(x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1))  # (C,) -> (1, C, 1, 1)


def _avg_pool_3x3():
    """TF's SAME 3x3 average pool: padded pixels are not counted."""
    return nn.AvgPool2d(3, 1, pad_mode="pad", padding=1, count_include_pad=False)


def _tower(*layers):
    return nn.SequentialCell(OrderedDict(layers))


class InceptionA(nn.Cell):
    def __init__(self, cin, pool_width, w):
        super().__init__()
        self.conv = ConvBN(cin, w(64), 1)
        self.tower = _tower(("conv", ConvBN(cin, w(48), 1)), ("conv_1", ConvBN(w(48), w(64), 5, padding=2)))
        self.tower_1 = _tower(("conv", ConvBN(cin, w(64), 1)), ("conv_1", ConvBN(w(64), w(96), 3, padding=1)),
                              ("conv_2", ConvBN(w(96), w(96), 3, padding=1)))
        self.tower_2 = _tower(("pool", _avg_pool_3x3()), ("conv", ConvBN(cin, w(pool_width), 1)))
        self.out_channels = w(64) + w(64) + w(96) + w(pool_width)

    def construct(self, x):
        return ops.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], axis=1)


class InceptionB(nn.Cell):
    def __init__(self, cin, _, w):
        super().__init__()
        self.conv = ConvBN(cin, w(384), 3, stride=2)
        self.tower = _tower(("conv", ConvBN(cin, w(64), 1)), ("conv_1", ConvBN(w(64), w(96), 3, padding=1)),
                            ("conv_2", ConvBN(w(96), w(96), 3, stride=2)))
        self.pool = nn.MaxPool2d(3, 2)
        self.out_channels = w(384) + w(96) + cin

    def construct(self, x):
        return ops.cat([self.conv(x), self.tower(x), self.pool(x)], axis=1)


class InceptionC(nn.Cell):
    def __init__(self, cin, width_7x7, w):
        super().__init__()
        c7 = w(width_7x7)
        self.conv = ConvBN(cin, w(192), 1)
        self.tower = _tower(("conv", ConvBN(cin, c7, 1)), ("conv_1", ConvBN(c7, c7, (1, 7), padding=(0, 3))),
                            ("conv_2", ConvBN(c7, w(192), (7, 1), padding=(3, 0))))
        self.tower_1 = _tower(("conv", ConvBN(cin, c7, 1)), ("conv_1", ConvBN(c7, c7, (7, 1), padding=(3, 0))),
                              ("conv_2", ConvBN(c7, c7, (1, 7), padding=(0, 3))),
                              ("conv_3", ConvBN(c7, c7, (7, 1), padding=(3, 0))),
                              ("conv_4", ConvBN(c7, w(192), (1, 7), padding=(0, 3))))
        self.tower_2 = _tower(("pool", _avg_pool_3x3()), ("conv", ConvBN(cin, w(192), 1)))
        self.out_channels = 4 * w(192)

    def construct(self, x):
        return ops.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], axis=1)


class InceptionD(nn.Cell):
    def __init__(self, cin, _, w):
        super().__init__()
        self.tower = _tower(("conv", ConvBN(cin, w(192), 1)), ("conv_1", ConvBN(w(192), w(320), 3, stride=2)))
        self.tower_1 = _tower(("conv", ConvBN(cin, w(192), 1)),
                              ("conv_1", ConvBN(w(192), w(192), (1, 7), padding=(0, 3))),
                              ("conv_2", ConvBN(w(192), w(192), (7, 1), padding=(3, 0))),
                              ("conv_3", ConvBN(w(192), w(192), 3, stride=2)))
        self.pool = nn.MaxPool2d(3, 2)
        self.out_channels = w(320) + w(192) + cin

    def construct(self, x):
        return ops.cat([self.tower(x), self.tower_1(x), self.pool(x)], axis=1)


class InceptionE(nn.Cell):
    """Figure 7: the 3x3 towers split into parallel 1x3 and 3x1 convolutions."""

    def __init__(self, cin, pool, w):
        super().__init__()
        self.conv = ConvBN(cin, w(320), 1)
        self.tower_conv = ConvBN(cin, w(384), 1)
        self.tower_mixed_conv = ConvBN(w(384), w(384), (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(w(384), w(384), (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(cin, w(448), 1)
        self.tower_1_conv_1 = ConvBN(w(448), w(384), 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(w(384), w(384), (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(w(384), w(384), (3, 1), padding=(1, 0))
        # mixed_10's pool branch is a max pool in the TF graph; its inputs follow ReLUs, so zero padding is exact
        self.tower_2_pool = _avg_pool_3x3() if pool == "avg" else nn.MaxPool2d(3, 1, pad_mode="pad", padding=1)
        self.tower_2_conv = ConvBN(cin, w(192), 1)
        self.out_channels = w(320) + 4 * w(384) + w(192)

    def construct(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return ops.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                        self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                        self.tower_2_conv(self.tower_2_pool(x))], axis=1)


INCEPTION_BLOCKS = {"A": InceptionA, "B": InceptionB, "C": InceptionC, "D": InceptionD, "E": InceptionE}


class Inception(nn.Cell):
    """(B, 3, H, W) uint8-range images -> (B, 2048 / width_divisor) pool3 features (return_features) or
    (B, num_classes) class probabilities."""

    def __init__(self, config=InceptionConfig(), input_hw=(INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE),
                 return_features=True, no_output_bias=False):
        super().__init__()
        self.config = config
        self.return_features, self.no_output_bias = return_features, no_output_bias
        self.resize = FrameResize(input_hw, (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE), tf_legacy_matrix)
        w = config.width
        layers, channels = [], 3
        for spec in INCEPTION_STEM:
            if len(spec) == 1:
                layers.append((spec[0], nn.MaxPool2d(3, 2)))
                continue
            name, cin, cout, kernel, stride, padding = spec
            layers.append((name, ConvBN(channels, w(cout), kernel, stride, padding)))
            channels = w(cout)
        for name, kind, option in INCEPTION_MIXED:
            block = INCEPTION_BLOCKS[kind](channels, option, w)
            layers.append((name, block))
            channels = block.out_channels
        layers.append(("pool2", nn.AvgPool2d(8, 8)))
        self.layers = nn.SequentialCell(OrderedDict(layers))
        self.num_features = channels
        self.output = nn.Dense(channels, config.num_classes)

    def construct(self, x):
        x = self.resize(x.astype(ms.float32))  # (B, 3, H, W) -> (B, 3, 299, 299)
        x = (x - INCEPTION_PIXEL_CENTRE) / INCEPTION_PIXEL_CENTRE
        features = self.layers(x).reshape(x.shape[0], -1)  # (B, C, 1, 1) -> (B, C)
        if self.return_features:
            return features
        logits = ops.matmul(features, self.output.weight.T)  # (B, C) @ (C, classes)
        if not self.no_output_bias:
            logits = logits + self.output.bias
        return ops.softmax(logits, axis=1)
