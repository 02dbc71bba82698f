"""The metric detectors by name: building a cell from a converted checkpoint's record and loading it strictly."""
from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint
from latte.metrics.c3d import C3D, C3DConfig
from latte.metrics.i3d import I3D, I3DConfig
from latte.metrics.inception import Inception, InceptionConfig

CONVERTER = "tools/metrics_converter.py"
DETECTORS = {"i3d": (I3DConfig, I3D), "inception": (InceptionConfig, Inception),
             "c3d": (C3DConfig, C3D)}


def build_detector(name, config_fields, **call_options):
    """The cell of detector `name` from its config fields; call_options are the detector's call flags and input
    size (I3D: input_hw, rescale, resize, return_features; Inception: input_hw, return_features,
    no_output_bias; C3D: input_hw)."""
    if name not in DETECTORS:
        raise CheckpointError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    config_cls, cell_cls = DETECTORS[name]
    try:
        config = config_cls.from_dict(config_fields)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"detector {name} config {config_fields}: {err}") from None
    return cell_cls(config, **call_options)


def load_detector(path, expected, **call_options):
    """The converted detector in `path` (a .ckpt written by tools/metrics_converter.py), strictly loaded;
    `expected` is the detector name the metric needs."""
    params, meta = read_ms_checkpoint(path, what=f"{expected} detector", converter=CONVERTER)
    found = meta.get("detector")
    if found != expected:
        raise CheckpointError(f"{path} holds detector {found!r} (its .json record), but this metric needs "
                              f"{expected!r}: convert the {expected} file with {CONVERTER}")
    net = build_detector(expected, meta.get("config", {}), **call_options)
    load_strict(net, params, what=f"checkpoint {path}", describe=f"the {expected} detector")
    net.set_train(False)
    return net


def detector_by_size(path, expected, **call_options):
    """`detector_for(hw)` of features.gather_features: the detector in `path` built and loaded once per frame
    size (H, W) it is asked for (the resize to the detector's input is fixed at construction)."""
    cells = {}

    def detector_for(hw):
        hw = tuple(int(n) for n in hw)
        if hw not in cells:
            cells[hw] = load_detector(path, expected, input_hw=hw, **call_options)
        return cells[hw]
    return detector_for
