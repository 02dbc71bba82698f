"""C3D fine-tuned on UCF101, the detector of the video Inception Score (isv2048_ucf) in StyleGAN-V / the official
Latte evaluation (c3d_ucf101.pt, a TorchScript reproduction of TGANv2's Chainer C3DVersion1UCF101,
pfnet-research/tgan2 tgan2/models/c3d/c3d_ucf101.py).

The detector call takes uint8-range (B, 3, 16, H, W) clips and returns the 101 class probabilities. Its steps,
from TGANv2's model (which takes clips in [-1, 1]):
  rescale x * 2/255 - 1;  RGB -> BGR, times 128;  each frame resized to 112 x 112 (Chainer's bilinear
  resize_images, corners aligned);  plus (128 - mean), `mean` the UCF101 mean clip (3, 16, 112, 112);
  conv1a, pool (1, 2, 2), conv2a, pool 2, conv3a/b, pool 2, conv4a/b, pool 2, conv5a/b, pool 2 (3x3x3
  convolutions with bias and ReLU; max pools with Chainer's cover_all, i.e. ceil mode), fc6, fc7 (ReLU), fc8,
  softmax. 16 frames of 112 x 112 leave (512, 1, 4, 4) before fc6.
"""
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from latte.metrics.detector_config import DetectorConfig
from latte.metrics.resize import FrameResize, aligned_corners_matrix

C3D_FRAMES = 16
C3D_INPUT_SIZE = 112
C3D_PIXEL_SCALE = 128.0  # TGANv2's `pre`: [-1, 1] BGR times 128, then + 128 - mean
PIXEL_MAX = 255.0
UCF101_CLASSES = 101
C3D_CONVS = (("conv1a", 64), ("pool1", (1, 2, 2)), ("conv2a", 128), ("pool2", (2, 2, 2)), ("conv3a", 256),
             ("conv3b", 256), ("pool3", (2, 2, 2)), ("conv4a", 512), ("conv4b", 512), ("pool4", (2, 2, 2)),
             ("conv5a", 512), ("conv5b", 512), ("pool5", (2, 2, 2)))
C3D_FC = 4096


@dataclass(frozen=True)
class C3DConfig(DetectorConfig):
    """width_divisor > 1 divides every channel count and the fc widths (tiny test models, same module tree)."""
    num_classes: int = UCF101_CLASSES
    width_divisor: int = 1


class MaxPoolCeil(nn.Cell):
    """Max pool with stride = window and ceil mode (Chainer's cover_all): a partial last window counts. Inputs
    follow ReLUs, so the zeros padded at the end never win."""

    def __init__(self, window):
        super().__init__()
        self.window = tuple(window)
        self.pool = nn.MaxPool3d(self.window, self.window)

    def construct(self, x):
        pads = [(-size) % k for size, k in zip(x.shape[2:], self.window)]  # (T, H, W) to whole windows
        if any(pads):
            x = ops.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))  # last axis first
        return self.pool(x)


class C3D(nn.Cell):
    """(B, 3, 16, H, W) uint8-range clips -> (B, num_classes) probabilities."""

    def __init__(self, config=C3DConfig(), input_hw=(C3D_INPUT_SIZE, C3D_INPUT_SIZE)):
        super().__init__()
        self.config = config
        self.resize = FrameResize(input_hw, (C3D_INPUT_SIZE, C3D_INPUT_SIZE), aligned_corners_matrix)
        self.mean = Parameter(Tensor(np.zeros((3, C3D_FRAMES, C3D_INPUT_SIZE, C3D_INPUT_SIZE), np.float32)),
                              name="mean")
        w = config.width
        names, channels = [], 3
        for name, option in C3D_CONVS:
            if name.startswith("pool"):
                setattr(self, name, MaxPoolCeil(option))
            else:
                setattr(self, name, nn.Conv3d(channels, w(option), 3, pad_mode="pad", padding=1, has_bias=True))
                channels = w(option)
            names.append(name)
        self.layer_names = tuple(names)
        self.fc6 = nn.Dense(channels * 4 * 4, w(C3D_FC))  # (C, 1, 4, 4) flattened
        self.fc7 = nn.Dense(w(C3D_FC), w(C3D_FC))
        self.fc8 = nn.Dense(w(C3D_FC), config.num_classes)

    def construct(self, x):
        x = x.astype(ms.float32) * (2.0 / PIXEL_MAX) - 1.0  # [0, 255] -> [-1, 1]
        x = x[:, ::-1] * C3D_PIXEL_SCALE  # RGB -> BGR, times 128
        x = self.resize(x)  # (B, 3, 16, H, W) -> (B, 3, 16, 112, 112)
        x = x + (C3D_PIXEL_SCALE - self.mean)
        for name in self.layer_names:
            x = getattr(self, name)(x)
            if not name.startswith("pool"):
                x = ops.relu(x)
        x = x.reshape(x.shape[0], -1)  # (B, C, 1, 4, 4) -> (B, C*16)
        x = ops.relu(self.fc7(ops.relu(self.fc6(x))))
        return ops.softmax(self.fc8(x), axis=1)
