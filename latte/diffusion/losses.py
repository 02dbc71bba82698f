"""Likelihood terms of the variational bound (Gaussian KL, discretized Gaussian decoder NLL), MindSpore ops.

All functions are elementwise with broadcasting and return nats; callers divide by ln 2 for bits.
"""
import math

from mindspore import ops

# The decoder NLL treats data as 8-bit values rescaled to [-1, 1]: bins of width 2/255 around each value.
HALF_BIN_WIDTH = 1.0 / 255.0
EDGE_VALUE = 0.999  # |x| beyond this is the lowest / highest bin, which extends to -inf / +inf
LOG_PROB_FLOOR = 1e-12  # probabilities are clamped here before taking the log
# Tanh approximation of the standard normal CDF: 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
CDF_TANH_SCALE = math.sqrt(2.0 / math.pi)
CDF_CUBIC_COEF = 0.044715


def mean_flat(x):
    """Mean over all non-batch axes: (B, ...) -> (B,)."""
    return x.mean(axis=tuple(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + ops.exp(logvar1 - logvar2)
                  + ops.square(mean1 - mean2) * ops.exp(-logvar2))


def _cdf_logit(x):
    """2u for the tanh approximation Phi(x) ~ 0.5 * (1 + tanh(u)) = sigmoid(2u)."""
    return 2.0 * CDF_TANH_SCALE * (x + CDF_CUBIC_COEF * x * x * x)


def approx_standard_normal_cdf(x):
    """The tanh approximation of the standard normal CDF that the official code uses, as sigmoid(2u).

    Same function; sigmoid because MindSpore's fp32 CPU tanh kernel is off by up to 1e-4 (measured; its sigmoid
    by 8e-7), which wrecks the small bin masses of the decoder NLL.
    """
    return ops.sigmoid(_cdf_logit(x))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log probability (nats) of 8-bit-like data x in [-1, 1] under N(means, exp(log_scales)^2), per element.

    Each value owns the bin [x - 1/255, x + 1/255]; the bins at the edges (|x| > 0.999) extend to infinity.
    """
    if x.shape != means.shape or x.shape != log_scales.shape:
        raise ValueError(f"x {x.shape}, means {means.shape} and log_scales {log_scales.shape} must match")
    centered = x - means
    inv_std = ops.exp(-log_scales)
    logit_plus = _cdf_logit(inv_std * (centered + HALF_BIN_WIDTH))
    logit_min = _cdf_logit(inv_std * (centered - HALF_BIN_WIDTH))
    cdf_plus = ops.sigmoid(logit_plus)
    cdf_min = ops.sigmoid(logit_min)
    log_cdf_plus = ops.log(cdf_plus.clamp(min=LOG_PROB_FLOOR))
    log_one_minus_cdf_min = ops.log(ops.sigmoid(-logit_min).clamp(min=LOG_PROB_FLOOR))  # 1 - sigmoid(a), exactly
    log_cdf_delta = ops.log((cdf_plus - cdf_min).clamp(min=LOG_PROB_FLOOR))
    upper_or_inner = ops.where(x > EDGE_VALUE, log_one_minus_cdf_min, log_cdf_delta)
    return ops.where(x < -EDGE_VALUE, log_cdf_plus, upper_or_inner)
