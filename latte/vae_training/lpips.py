"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") with
VGG16 features, in MindSpore; frozen, used as a loss through its input gradient.

    lpips = load_lpips("models/lpips_vgg.ckpt")   # written by tools/lpips_converter.py
    d = lpips(x, y)                               # (N, C, H, W) in [-1, 1], C = 1 or 3 -> (N,) distances

The math: scale the input with fixed shift/scale constants, run VGG16's convolutional part and take the
ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; normalise each feature vector over channels,
square the difference of the two images' features, weight channels with a 1x1 linear head per layer,
average over positions and sum over layers. Grayscale inputs are repeated to three channels.
"""
import os

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint
from latte.io import RGB_CHANNELS

VGG16_CHANNELS = (64, 128, 256, 512, 512)  # width of each of the five slices
CONVS_PER_SLICE = (2, 2, 3, 3, 3)  # 3x3 convs (each followed by ReLU) per slice; a 2x2 max-pool opens slices 2..5
SHIFT = (-0.030, -0.088, -0.188)  # the LPIPS scaling layer: (x - shift) / scale, per RGB channel
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # added to the channel norm before dividing (as LPIPS)
# torchvision vgg16().features indices of the 13 convs (ReLUs and max-pools sit between them)
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
MODEL_NAME = "LPIPS-VGG16"


def conv_widths(channels=VGG16_CHANNELS):
    """(in, out) channels of each 3x3 conv, in order."""
    pairs, width = [], RGB_CHANNELS
    for out, count in zip(channels, CONVS_PER_SLICE):
        for _ in range(count):
            pairs.append((width, out))
            width = out
    return pairs


class LPIPS(nn.Cell):
    """VGG16 features + linear heads. Parameters: convs.{0..12}.weight/bias (VGG), lins.{0..4}.weight (heads).

    `channels` other than VGG16's only serve tests (a tiny network with the same structure).
    """

    def __init__(self, channels=VGG16_CHANNELS):
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        if len(self.channels) != len(CONVS_PER_SLICE):
            raise ValueError(f"LPIPS needs {len(CONVS_PER_SLICE)} slice widths, got {self.channels}")
        self.convs = nn.CellList([nn.Conv2d(i, o, 3, pad_mode="pad", padding=1, has_bias=True)
                                  for i, o in conv_widths(self.channels)])
        self.lins = nn.CellList([nn.Conv2d(c, 1, 1, pad_mode="valid", has_bias=False) for c in self.channels])
        self.shift = ms.Tensor(np.array(SHIFT, np.float32).reshape(1, RGB_CHANNELS, 1, 1))
        self.scale = ms.Tensor(np.array(SCALE, np.float32).reshape(1, RGB_CHANNELS, 1, 1))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.slice_ends = tuple(int(e) for e in np.cumsum(CONVS_PER_SLICE))  # conv count at each slice's end
        for p in self.get_parameters():
            p.requires_grad = False
        self.set_train(False)

    def _prepare(self, x):
        if x.shape[1] == 1:
            x = ops.tile(x, (1, RGB_CHANNELS, 1, 1))  # (N, 1, H, W) -> (N, 3, H, W)
        return (x - self.shift) / self.scale

    def construct(self, x, y):
        n = x.shape[0]
        h = ops.cat((self._prepare(x), self._prepare(y)), axis=0)  # both images in one pass: (2N, 3, H, W)
        total = ops.zeros((n,), ms.float32)
        layer = 0
        for k in range(len(self.convs)):
            if k > 0 and k in self.slice_ends:
                h = self.pool(h)  # a new slice starts with a 2x2 max-pool
            h = ops.relu(self.convs[k](h))
            if k + 1 in self.slice_ends:  # the slice's last ReLU output is an LPIPS layer
                feats = h / (ops.sqrt(ops.sum(h * h, dim=1, keepdim=True)) + NORM_EPS)  # unit vectors over C
                diff = (feats[:n] - feats[n:]) ** 2  # (N, C_k, h, w)
                total = total + ops.mean(self.lins[layer](diff), axis=(1, 2, 3))  # head, spatial mean -> (N,)
                layer += 1
        return total


def lpips_meta(channels=VGG16_CHANNELS, **extra):
    return dict({"model": MODEL_NAME, "channels": list(channels)}, **extra)


def load_lpips(path):
    """The frozen LPIPS recorded in `path` (+ its .json sidecar); every weight must fit, none left over."""
    if not os.path.isfile(path):
        raise CheckpointError(f"lpips_checkpoint {path}: no such file; write it with tools/lpips_converter.py "
                              "(see docs: perceptual loss weights)")
    params, meta = read_ms_checkpoint(path)
    if meta.get("model") != MODEL_NAME:
        raise CheckpointError(f"{path}: not an LPIPS checkpoint (its .json sidecar says model "
                              f"{meta.get('model')!r}); write it with tools/lpips_converter.py")
    net = LPIPS(meta.get("channels", VGG16_CHANNELS))
    load_strict(net, params, what=path)
    net.set_train(False)
    return net


# ---------------------------------------------------------------------------------------------------------
# The files users have: torchvision's vgg16 weights and the lpips package's linear heads
# ---------------------------------------------------------------------------------------------------------

VGG_HEAD_PREFIX = "classifier."  # torchvision's fully connected head: not part of LPIPS, reported as unused
LIN_KEY = "lin{k}.model.1.weight"  # lpips v0.1 heads: Sequential(Dropout, Conv2d 1x1 without bias)


def vgg_key_map():
    """torchvision vgg16 key -> our name, for the 13 convs' weights and biases."""
    out = {}
    for k, index in enumerate(VGG16_CONV_INDICES):
        for kind in ("weight", "bias"):
            out[f"features.{index}.{kind}"] = f"convs.{k}.{kind}"
    return out


def convert_lpips_state(vgg_state, lin_state):
    """(params by our names, vgg head keys ignored, unknown keys) from the two source state dicts.

    Unknown keys are any source key that is neither mapped nor the VGG classifier head.
    """
    params, unknown, head = {}, [], []
    names = vgg_key_map()
    for key, value in vgg_state.items():
        if key in names:
            params[names[key]] = value
        elif key.startswith(VGG_HEAD_PREFIX):
            head.append(key)
        else:
            unknown.append(f"--vgg {key}")
    lin_names = {LIN_KEY.format(k=k): f"lins.{k}.weight" for k in range(len(VGG16_CHANNELS))}
    for key, value in lin_state.items():
        if key in lin_names:
            params[lin_names[key]] = value
        else:
            unknown.append(f"--lin {key}")
    return params, head, unknown
