"""Which formulation of the hot kernels a model uses, chosen once per device at construction and logged once.

- "builtin": MindSpore's own fused kernels (Ascend, GPU): nn.GELU, ops.LayerNorm, the per-op AdamW.
- "native": on CPU, the fused float32 kernels of cpu_kernels.cc (see native.py), several times faster than
  MindSpore 2.10's CPU GeLU, LayerNorm and elementwise chains.
- "composite": on CPU without a C++ compiler: the same math from MindSpore ops in their fastest exact CPU form
  (GELU as x * sigmoid(2u), which ran ~4x faster than the GeLU kernel).
"""
import logging

import mindspore as ms

from latte.kernels.native import library_threads, native_library

logger = logging.getLogger(__name__)

KERNEL_BACKENDS = ("builtin", "native", "composite")
_logged = set()


def kernel_backend(device_target=None):
    """('builtin' | 'native' | 'composite', reason) for this device; logs each distinct decision once."""
    device_target = device_target or ms.get_context("device_target")
    if device_target != "CPU":
        backend, reason = "builtin", f"MindSpore's fused kernels on {device_target}"
    else:
        library, why_not = native_library()
        if library:
            threads, norm_threads = library_threads(library)
            backend, reason = "native", (f"fused CPU kernels from {library}; threads per kernel: {threads}, "
                                         f"{norm_threads} for the VAE's GroupNorm")
        else:
            backend, reason = "composite", f"MindSpore CPU ops ({why_not})"
    if (backend, reason) not in _logged:
        _logged.add((backend, reason))
        logger.info("kernels: %s (%s)", backend, reason)
    return backend, reason


def check_backend(backend):
    if backend not in KERNEL_BACKENDS:
        raise ValueError(f"kernel backend {backend!r} is not one of {KERNEL_BACKENDS}")
    return backend


def native_float32(tensors, kernels=None):
    """Whether the native (float32) kernels serve `tensors`: the backend (`kernels`, or this device's) is native
    and every tensor is float32 (AMP keeps weights, hence their gradients, float32)."""
    return (kernels or kernel_backend()[0]) == "native" and all(t.dtype == ms.float32 for t in tensors)
