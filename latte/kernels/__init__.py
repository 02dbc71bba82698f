"""Hot kernels of the models in the fastest exact formulation per device (see backend.py)."""
from latte.kernels.backend import KERNEL_BACKENDS, kernel_backend, native_float32
from latte.kernels.cells import (KERNEL_CELLS, GatedResidual, Linear, ModulatedLayerNorm, NoAffineLayerNorm, ScaledSoftmax, TanhGELU,
                                 adamw_in_place_kernel, float32_kernels_only,
                                 nonfinite_kernel)
from latte.kernels.group_norm import GroupNorm
from latte.kernels.native import library_threads, native_library
from latte.kernels.permute import Permute, SplitPermute

__all__ = ["GroupNorm", "KERNEL_BACKENDS", "kernel_backend", "native_float32", "library_threads", "native_library", "ModulatedLayerNorm", "NoAffineLayerNorm",
           "GatedResidual", "Linear", "Permute", "SplitPermute", "ScaledSoftmax", "TanhGELU",
           "adamw_in_place_kernel", "nonfinite_kernel", "KERNEL_CELLS", "float32_kernels_only"]
