"""Mixed precision (AMP O2): compute in fp16/bf16, keep norms and softmax in fp32, weights stay fp32."""
import mindspore as ms
from mindspore import amp, nn

from latte.kernels import ModulatedLayerNorm, NoAffineLayerNorm

FP32_CELLS = [NoAffineLayerNorm, ModulatedLayerNorm, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Softmax]


def apply_amp(net, dtype):
    """Casts `net`'s compute to `dtype` except the FP32_CELLS; fp32 leaves the net untouched."""
    if dtype == ms.float32:
        return net
    return amp.custom_mixed_precision(net, black_list=FP32_CELLS, dtype=dtype)
