"""Torch stand-ins for the released metric detectors, built from the public architectures with the module trees
the converters expect, scripted and saved as TorchScript files like the released ones (random weights: the
real files cannot be downloaded here). Test helper, not part of latte."""
import math
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from latte.metrics.i3d import I3D_MIXED, I3D_POOLS, I3D_STEM  # the table of widths, shared on purpose


def _same_pad(size: int, kernel: int, stride: int) -> List[int]:
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return [total // 2, total - total // 2]


class Unit3D(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.is_logits = list(kernel), list(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=logits)
        self.bn = nn.Identity() if logits else nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

    def forward(self, x):
        t, h, w = x.shape[2], x.shape[3], x.shape[4]
        pad = (_same_pad(w, self.kernel[2], self.stride[2]) + _same_pad(h, self.kernel[1], self.stride[1])
               + _same_pad(t, self.kernel[0], self.stride[0]))
        x = self.bn(self.conv3d(F.pad(x, pad)))
        return x if self.is_logits else F.relu(x)


class MaxPool3dSamePadding(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)

    def forward(self, x):
        k, s = self.kernel, self.stride
        pad = (_same_pad(x.shape[4], k[2], s[2]) + _same_pad(x.shape[3], k[1], s[1])
               + _same_pad(x.shape[2], k[0], s[0]))
        return F.max_pool3d(F.pad(x, pad), k, s)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, widths):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = widths
        self.b0, self.b1a, self.b1b = Unit3D(cin, c0), Unit3D(cin, c1a), Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c2a), Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSamePadding([3, 3, 3], (1, 1, 1)), Unit3D(cin, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class TorchI3D(nn.Module):
    """kinetics-i3d with the PyTorch port's module names and StyleGAN-V's call
    `forward(x, rescale, resize, return_features)`."""

    def __init__(self, num_classes: int = 400, width_divisor: int = 1):
        super().__init__()
        stem = [c // width_divisor for c in I3D_STEM]
        self.Conv3d_1a_7x7 = Unit3D(3, stem[0], (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSamePadding(*I3D_POOLS["MaxPool3d_2a_3x3"])
        self.Conv3d_2b_1x1 = Unit3D(stem[0], stem[1])
        self.Conv3d_2c_3x3 = Unit3D(stem[1], stem[2], (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSamePadding(*I3D_POOLS["MaxPool3d_3a_3x3"])
        channels = stem[2]
        for name, widths in I3D_MIXED:
            if widths is None:
                block = MaxPool3dSamePadding(*I3D_POOLS[name])
            else:
                block = InceptionModule(channels, [c // width_divisor for c in widths])
                channels = block.out_channels
            self.add_module(name, block)
        self.avg_pool = nn.AvgPool3d([2, 7, 7], (1, 1, 1))
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(channels, num_classes, logits=True)

    def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
        x = x.float()
        if rescale:
            x = x * (2.0 / 255.0) - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))
        logits = self.logits(self.dropout(self.avg_pool(x))).squeeze(4).squeeze(3).mean(2)  # (B, classes)
        return logits if return_features else F.softmax(logits, dim=1)


def redraw_(module, seed, gain=1.4):
    """Every parameter and BatchNorm statistic re-drawn: conv weights ~ N(0, gain^2 / fan_in), biases and BN
    affine/mean ~ N(0, 0.1^2) (+1 for BN scale), BN variance ~ U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if tensor.ndim > 1:
                fan_in = math.prod(tensor.shape[1:])
                tensor.copy_(torch.randn(tensor.shape, generator=g) * gain / math.sqrt(fan_in))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            elif name.endswith("bn.weight"):
                tensor.copy_(1.0 + torch.randn(tensor.shape, generator=g) * 0.1)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.1)
    return module.eval()


def save_scripted(module, path):
    """torch.jit.script + save, as the released detector files are stored."""
    scripted = torch.jit.script(module.eval())
    scripted.save(str(path))
    return scripted
