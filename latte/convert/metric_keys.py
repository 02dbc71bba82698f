"""Key mapping of the released metric detectors (TorchScript state dicts) to the MindSpore cells of
latte/metrics: module paths are kept, BatchNorm parameters take MindSpore's names, BatchNorm's step counters
(num_batches_tracked, a training record) are left out. The 2015 Inception's names pass unchanged (its
BatchNorm is `beta`, `mean`, `var` on the convolution unit, as in the cell)."""
from collections import OrderedDict

from latte.checkpoint_io import CheckpointError

BN_RENAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
TORCH_ONLY_SUFFIX = "num_batches_tracked"
# a key every file of a detector holds, which locates a wrapper prefix ("model.", "module." ...) if there is one
ANCHOR_KEYS = {"i3d": "Conv3d_1a_7x7.conv3d.weight", "inception": "layers.conv.weight", "c3d": "conv1a.weight"}
# detector -> (its first convolution's weight, that convolution's full width, the classifier's weight)
ARCHITECTURE_KEYS = {"i3d": ("Conv3d_1a_7x7.conv3d.weight", 64, "logits.conv3d.weight"),
                     "inception": ("layers.conv.weight", 32, "output.weight"),
                     "c3d": ("conv1a.weight", 64, "fc8.weight")}


def strip_wrapper_prefix(state, detector, path):
    """(state without the prefix in front of the detector's anchor key, the prefix)."""
    anchor = ANCHOR_KEYS[detector]
    hits = [k for k in state if k == anchor or k.endswith("." + anchor)]
    if len(hits) != 1:
        raise CheckpointError(f"{path}: not a {detector} detector file (expected one key ending in {anchor}, "
                              f"found {len(hits)}); give the released {detector} TorchScript file")
    prefix = hits[0][: -len(anchor)]
    outside = [k for k in state if not k.startswith(prefix)]
    if outside:
        raise CheckpointError(f"{path}: keys outside the detector's '{prefix}' prefix: {', '.join(outside[:6])}")
    return OrderedDict((k[len(prefix):], v) for k, v in state.items()), prefix


def rename_detector_key(key):
    """The MindSpore name of one torch key, or None for torch-only bookkeeping."""
    module, _, leaf = key.rpartition(".")
    if leaf == TORCH_ONLY_SUFFIX:
        return None
    if module.endswith(".bn") or module == "bn":
        if leaf not in BN_RENAMES:
            raise CheckpointError(f"unexpected BatchNorm entry {key}")
        return f"{module}.{BN_RENAMES[leaf]}"
    return key


def convert_detector_state(state):
    """(MindSpore name -> array, torch-only keys left out)."""
    params, skipped = OrderedDict(), []
    for key, value in state.items():
        name = rename_detector_key(key)
        if name is None:
            skipped.append(key)
        else:
            params[name] = value
    return params, skipped


def infer_detector_config(detector, params):
    """The detector's config fields from the converted weights: classes from the classifier, the width divisor
    from the first convolution (tiny test files divide every width)."""
    stem_key, full_width, classes_key = ARCHITECTURE_KEYS[detector]
    stem = params[stem_key].shape[0]
    if full_width % stem:
        raise CheckpointError(f"{stem_key} has {stem} output channels, not a divisor of {full_width}")
    return {"num_classes": int(params[classes_key].shape[0]), "width_divisor": full_width // stem}
