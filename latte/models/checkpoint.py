"""Loading latte-ms checkpoints into cells: every parameter filled, every key used, or a clear error."""
import os

import mindspore as ms

from latte.convert.io import read_meta

# parameter -> the config key that usually explains a shape mismatch on it
_SHAPE_HINTS = {
    "temp_embed": "num_frames",
    "pos_embed": "image_size (or model_name: patch size)",
    "y_embedder.embedding_table": "num_classes / class_dropout_prob",
    "x_embedder.proj.weight": "model_name (hidden size, patch size) or patch_embedder",
    "final_layer.linear.weight": "model_name (patch size) or learn_sigma",
}
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def read_weights(path, what="checkpoint", converter="tools/latte_converter.py"):
    """Reads a MindSpore .ckpt into name -> Parameter; torch files get a pointer to the converter."""
    if not path:
        raise ValueError(f"{what} path is empty")
    if path.endswith(_TORCH_SUFFIXES):
        raise ValueError(f"{what} {path} is a torch/safetensors file: convert it first with "
                         f"'python {converter} --source {path} --target {os.path.splitext(path)[0]}.ckpt'")
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path} not found")
    try:
        return ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError for damaged files
        raise ValueError(f"{what} {path} is not a readable MindSpore checkpoint ({err})") from err


def load_strict(net, weights, path, what="checkpoint", describe=""):
    """Loads name -> Parameter into `net`; raises naming every missing/unused key and shape mismatch.

    Names are relative to `net` (structural), so a net already nested in another cell still matches.
    """
    params = dict(net.parameters_and_names())
    weights = {k: v for k, v in weights.items() if hasattr(v, "shape")}
    missing = sorted(set(params) - set(weights))
    unused = sorted(set(weights) - set(params))
    wrong = []
    for name in sorted(set(params) & set(weights)):
        if tuple(params[name].shape) != tuple(weights[name].shape):
            hint = _SHAPE_HINTS.get(name)
            wrong.append(f"{name}: checkpoint {tuple(weights[name].shape)} vs model {tuple(params[name].shape)}"
                         + (f" (check {hint})" if hint else ""))
    if missing or unused or wrong:
        parts = [f"{what} {path} does not fit {describe or type(net).__name__}"]
        if wrong:
            parts.append("shape mismatches: " + "; ".join(wrong[:6]))
        if missing:
            parts.append(f"{len(missing)} parameters missing from the checkpoint: {', '.join(missing[:6])}")
        if unused:
            parts.append(f"{len(unused)} checkpoint keys the model does not have: {', '.join(unused[:6])}")
        raise ValueError(". ".join(parts))
    for name, param in params.items():
        value = weights[name]
        param.set_data(ms.Tensor(value.asnumpy(), param.dtype) if value.dtype != param.dtype else value)


def load_latte_checkpoint(net, path, describe=""):
    load_strict(net, read_weights(path), path, "checkpoint", describe)


def check_diffusion_record(cfg, path, keys):
    """Raises when the diffusion recorded with checkpoint `path` (by train.py) differs from `cfg`'s `keys`."""
    recorded = read_meta(path).get("diffusion", {})
    wrong = [f"{k}: {recorded[k]!r} (config: {getattr(cfg, k)!r})" for k in keys
             if k in recorded and recorded[k] != getattr(cfg, k)]
    if wrong:
        raise ValueError(f"checkpoint {path} was trained with a different diffusion: {'; '.join(wrong)}. "
                         "Set these keys in the config (or on the command line) to the trained values")
