"""Mixed precision (AMP O2): compute in fp16/bf16, keep norms, softmax and timestep sinusoids in fp32, weights stay
fp32."""
import logging

import mindspore as ms
from mindspore import amp, nn

from latte.kernels import ModulatedLayerNorm, NoAffineLayerNorm, float32_kernels_only
from latte.models.layers import TimestepSinusoid

FP32_CELLS = [NoAffineLayerNorm, ModulatedLayerNorm, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Softmax,
              TimestepSinusoid]


def apply_amp(net, dtype):
    """Casts `net`'s compute to `dtype` except the FP32_CELLS; fp32 leaves the net untouched."""
    if dtype == ms.float32:
        return net
    if float32_kernels_only(net):
        logging.getLogger(__name__).info("kernels: composite for %s compute (the native CPU kernels are float32)",
                                         dtype)
    return amp.custom_mixed_precision(net, black_list=FP32_CELLS, dtype=dtype)
