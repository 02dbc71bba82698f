"""Torch stand-ins for the released metric detectors, built from the public architectures with the module trees
the converters expect, scripted and saved as TorchScript files like the released ones (random weights: the
real files cannot be downloaded here). Test helper, not part of latte."""
import math
from collections import OrderedDict
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


# ---------------------------------------------------------------------------------------------------------------
# The 2015 Inception as NVIDIA's TorchScript port holds it: conv units with `weight`, `beta`, `mean`, `var`
# (BatchNorm without scale, eps 1e-3), towers as nn.Sequential, `layers` + `output`, and the port's call
# forward(img, return_features, use_fp16, no_output_bias) with the TF resize emulated by affine_grid/grid_sample.

class InceptionConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.zeros(cout, cin, kh, kw))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.mean = nn.Parameter(torch.zeros(cout))
        self.var = nn.Parameter(torch.ones(cout))

    def forward(self, x):
        x = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.padding)
        return F.relu(F.batch_norm(x, running_mean=self.mean, running_var=self.var, bias=self.beta, eps=1e-3))


def _seq(*named):
    return nn.Sequential(OrderedDict(named))


def _avg3():
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class TorchInceptionA(nn.Module):
    def __init__(self, cin: int, pool_width: int, d: int):
        super().__init__()
        self.conv = InceptionConv(cin, 64 // d, 1)
        self.tower = _seq(("conv", InceptionConv(cin, 48 // d, 1)), ("conv_1", InceptionConv(48 // d, 64 // d, 5, padding=2)))
        self.tower_1 = _seq(("conv", InceptionConv(cin, 64 // d, 1)),
                            ("conv_1", InceptionConv(64 // d, 96 // d, 3, padding=1)),
                            ("conv_2", InceptionConv(96 // d, 96 // d, 3, padding=1)))
        self.tower_2 = _seq(("pool", _avg3()), ("conv", InceptionConv(cin, pool_width // d, 1)))
        self.out_channels = (64 + 64 + 96 + pool_width) // d

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class TorchInceptionB(nn.Module):
    def __init__(self, cin: int, d: int):
        super().__init__()
        self.conv = InceptionConv(cin, 384 // d, 3, stride=2)
        self.tower = _seq(("conv", InceptionConv(cin, 64 // d, 1)), ("conv_1", InceptionConv(64 // d, 96 // d, 3, padding=1)),
                          ("conv_2", InceptionConv(96 // d, 96 // d, 3, stride=2)))
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = (384 + 96) // d + cin

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class TorchInceptionC(nn.Module):
    def __init__(self, cin: int, c7: int, d: int):
        super().__init__()
        c7, c192 = c7 // d, 192 // d
        self.conv = InceptionConv(cin, c192, 1)
        self.tower = _seq(("conv", InceptionConv(cin, c7, 1)), ("conv_1", InceptionConv(c7, c7, (1, 7), padding=(0, 3))),
                          ("conv_2", InceptionConv(c7, c192, (7, 1), padding=(3, 0))))
        self.tower_1 = _seq(("conv", InceptionConv(cin, c7, 1)), ("conv_1", InceptionConv(c7, c7, (7, 1), padding=(3, 0))),
                            ("conv_2", InceptionConv(c7, c7, (1, 7), padding=(0, 3))),
                            ("conv_3", InceptionConv(c7, c7, (7, 1), padding=(3, 0))),
                            ("conv_4", InceptionConv(c7, c192, (1, 7), padding=(0, 3))))
        self.tower_2 = _seq(("pool", _avg3()), ("conv", InceptionConv(cin, c192, 1)))
        self.out_channels = 4 * c192

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class TorchInceptionD(nn.Module):
    def __init__(self, cin: int, d: int):
        super().__init__()
        c192 = 192 // d
        self.tower = _seq(("conv", InceptionConv(cin, c192, 1)), ("conv_1", InceptionConv(c192, 320 // d, 3, stride=2)))
        self.tower_1 = _seq(("conv", InceptionConv(cin, c192, 1)), ("conv_1", InceptionConv(c192, c192, (1, 7), padding=(0, 3))),
                            ("conv_2", InceptionConv(c192, c192, (7, 1), padding=(3, 0))),
                            ("conv_3", InceptionConv(c192, c192, 3, stride=2)))
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = (320 + 192) // d + cin

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class TorchInceptionE(nn.Module):
    def __init__(self, cin: int, avg_pool: bool, d: int):
        super().__init__()
        c384 = 384 // d
        self.conv = InceptionConv(cin, 320 // d, 1)
        self.tower_conv = InceptionConv(cin, c384, 1)
        self.tower_mixed_conv = InceptionConv(c384, c384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = InceptionConv(c384, c384, (3, 1), padding=(1, 0))
        self.tower_1_conv = InceptionConv(cin, 448 // d, 1)
        self.tower_1_conv_1 = InceptionConv(448 // d, c384, 3, padding=1)
        self.tower_1_mixed_conv = InceptionConv(c384, c384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = InceptionConv(c384, c384, (3, 1), padding=(1, 0))
        self.tower_2_pool = _avg3() if avg_pool else nn.MaxPool2d(3, stride=1, padding=1)
        self.tower_2_conv = InceptionConv(cin, 192 // d, 1)
        self.out_channels = (320 + 4 * 384 + 192) // d

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a), self.tower_1_mixed_conv(b),
                          self.tower_1_mixed_conv_1(b), self.tower_2_conv(self.tower_2_pool(x))], 1)


class TorchInception2015(nn.Module):
    """Inception v3 of inception-2015-12-05 (1008 classes) with the port's module tree and call."""

    def __init__(self, num_classes: int = 1008, width_divisor: int = 1):
        super().__init__()
        d = width_divisor
        stem = [("conv", InceptionConv(3, 32 // d, 3, stride=2)), ("conv_1", InceptionConv(32 // d, 32 // d, 3)),
                ("conv_2", InceptionConv(32 // d, 64 // d, 3, padding=1)), ("pool0", nn.MaxPool2d(3, stride=2)),
                ("conv_3", InceptionConv(64 // d, 80 // d, 1)), ("conv_4", InceptionConv(80 // d, 192 // d, 3)),
                ("pool1", nn.MaxPool2d(3, stride=2))]
        blocks, c = [], 192 // d
        for name, make in (("mixed", lambda c: TorchInceptionA(c, 32, d)), ("mixed_1", lambda c: TorchInceptionA(c, 64, d)),
                           ("mixed_2", lambda c: TorchInceptionA(c, 64, d)), ("mixed_3", lambda c: TorchInceptionB(c, d)),
                           ("mixed_4", lambda c: TorchInceptionC(c, 128, d)), ("mixed_5", lambda c: TorchInceptionC(c, 160, d)),
                           ("mixed_6", lambda c: TorchInceptionC(c, 160, d)), ("mixed_7", lambda c: TorchInceptionC(c, 192, d)),
                           ("mixed_8", lambda c: TorchInceptionD(c, d)), ("mixed_9", lambda c: TorchInceptionE(c, True, d)),
                           ("mixed_10", lambda c: TorchInceptionE(c, False, d))):
            block = make(c)
            blocks.append((name, block))
            c = block.out_channels
        self.num_features = c
        self.layers = nn.Sequential(OrderedDict(stem + blocks + [("pool2", nn.AvgPool2d(8))]))
        self.output = nn.Linear(c, num_classes)

    def forward(self, img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False):
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float16 if use_fp16 else torch.float32)
        theta = torch.eye(2, 3, device=x.device)  # TF1 resize_bilinear: source pixel = i * in / 299
        theta[0, 2] += theta[0, 0] / width - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / height - theta[1, 1] / 299
        theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
        grid = F.affine_grid(theta, [batch_size, channels, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = (x - 128) / 128
        features = self.layers(x).reshape(-1, self.num_features).to(torch.float32)
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return F.softmax(logits, dim=1)


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
            elif name.endswith(("running_var", ".var")):
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


# ---------------------------------------------------------------------------------------------------------------
# C3D (UCF101) as TGANv2's Chainer model computes it, in torch: conv1a..conv5b, fc6..fc8, the mean clip as a
# buffer, forward(x) on uint8 clips -> probabilities.

class TorchC3D(nn.Module):
    def __init__(self, num_classes: int = 101, width_divisor: int = 1):
        super().__init__()
        d, c = width_divisor, 3
        for name, width in (("conv1a", 64), ("conv2a", 128), ("conv3a", 256), ("conv3b", 256), ("conv4a", 512),
                            ("conv4b", 512), ("conv5a", 512), ("conv5b", 512)):
            self.add_module(name, nn.Conv3d(c, width // d, 3, padding=1))
            c = width // d
        self.fc6 = nn.Linear(c * 16, 4096 // d)
        self.fc7 = nn.Linear(4096 // d, 4096 // d)
        self.fc8 = nn.Linear(4096 // d, num_classes)
        self.register_buffer("mean", torch.zeros(3, 16, 112, 112))

    def forward(self, x):
        x = x.float() * (2.0 / 255.0) - 1.0
        x = x.flip(1) * 128.0  # RGB -> BGR
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=True)
        x = x.reshape(b, t, c, 112, 112).permute(0, 2, 1, 3, 4) + (128.0 - self.mean)
        x = F.max_pool3d(F.relu(self.conv1a(x)), (1, 2, 2), ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv2a(x)), 2, ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv3b(F.relu(self.conv3a(x)))), 2, ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv4b(F.relu(self.conv4a(x)))), 2, ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv5b(F.relu(self.conv5a(x)))), 2, ceil_mode=True)
        x = F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))
        return F.softmax(self.fc8(x), dim=1)
