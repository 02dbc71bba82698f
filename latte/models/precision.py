"""Mixed precision (AMP O2): compute in fp16/bf16, keep norms, softmax and timestep sinusoids in fp32, weights stay
fp32."""
import logging

import mindspore as ms
from mindspore import amp, nn
from mindspore.ops import functional as F

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
    wrapped = amp.custom_mixed_precision(net, black_list=FP32_CELLS, dtype=dtype)
    if callable(getattr(net, "construct_with_cfg", None)):  # MindSpore's float32-output wrapper drops it
        return Float32Outputs(wrapped._backbone)
    return wrapped


class Float32Outputs(nn.Cell):
    """An AMP network with float32 outputs, as custom_mixed_precision's own wrapper, that keeps the model's
    construct_with_cfg (classifier-free guidance sampling under fp16/bf16)."""

    def __init__(self, backbone):
        super().__init__(auto_prefix=False)  # parameter names stay the model's
        self._backbone = backbone
        self._get_attr_from_cell(backbone)

    def construct(self, *args, **kwargs):
        return F.mixed_precision_cast(ms.float32, self._backbone(*args, **kwargs))

    def construct_with_cfg(self, *args):
        return F.mixed_precision_cast(ms.float32, self._backbone.construct_with_cfg(*args))
