"""The detectors' input resizes as two interpolation matrices per frame: out = R_h @ frame @ R_w^T.

- interpolation_matrix: torch.nn.functional.interpolate, bilinear / trilinear with the frame count kept,
  align_corners=False, no antialiasing (I3D).
- tf_legacy_matrix: TensorFlow 1's resize_bilinear without half-pixel centres, source = i * in/out, which the 2015
  Inception's TorchScript port emulates with affine_grid + grid_sample(bilinear, padding "border").
"""
import numpy as np
from mindspore import Tensor, nn, ops


def interpolation_matrix(in_size, out_size):
    """(out_size, in_size) float32 weights of torch's linear interpolation with align_corners=False: source
    coordinate (i + 0.5) * in/out - 0.5 clamped at 0, neighbours floor and floor + 1 (clamped at the last).
    Coordinates are computed in float32 as torch's CPU kernel does (float64 ones differ by ~1e-5 relative)."""
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    scale = np.float32(in_size) / np.float32(out_size)
    for i in range(out_size):
        src = max(np.float32(np.float32(i + 0.5) * scale) - np.float32(0.5), np.float32(0.0))
        i0 = min(int(np.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        frac = float(np.float32(src - np.float32(i0)))
        matrix[i, i0] += 1.0 - frac
        matrix[i, i1] += frac
    return matrix.astype(np.float32)


def tf_legacy_matrix(in_size, out_size):
    """(out_size, in_size) float32 weights of TF1 resize_bilinear (align_corners=False, no half-pixel centres):
    source coordinate i * in/out clamped at the last pixel, neighbours floor and floor + 1 (clamped)."""
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        src = min(i * in_size / out_size, in_size - 1)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        matrix[i, i0] += 1.0 - frac
        matrix[i, i1] += frac
    return matrix.astype(np.float32)


def aligned_corners_matrix(in_size, out_size):
    """(out_size, in_size) float32 weights of bilinear interpolation with aligned corners."""
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    for i in range(out_size):
        src = i * scale
        i0 = min(int(np.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        matrix[i, i0] += 1.0 - frac
        matrix[i, i1] += frac
    return matrix.astype(np.float32)


class FrameResize(nn.Cell):
    """(..., H, W) -> (..., out_h, out_w) frame by frame; the leading axes (batch, channels, time) are kept.
    `weights` is the matrix builder (interpolation_matrix or tf_legacy_matrix)."""

    def __init__(self, in_hw, out_hw, weights=interpolation_matrix):
        super().__init__()
        self.out_hw = tuple(out_hw)
        self.rows = Tensor(weights(in_hw[0], out_hw[0]))  # (out_h, H)
        self.cols_t = Tensor(weights(in_hw[1], out_hw[1]).T.copy())  # (W, out_w)

    def construct(self, x):
        lead, (h, w) = x.shape[:-2], x.shape[-2:]
        flat = x.reshape(-1, h, w)  # (..., H, W) -> (N, H, W)
        out = ops.matmul(ops.matmul(self.rows, flat), self.cols_t)  # (N, out_h, out_w)
        return out.reshape(*lead, *self.out_hw)  # (N, out_h, out_w) -> (..., out_h, out_w)
