"""load_latte: any converted or trained Latte checkpoint -> the network its record describes, strictly loaded.

    net = load_latte("models/latte1.ckpt")                 # LatteT2V (tools/latte_converter.py on Latte-1)
    net = load_latte("models/ucf101.ckpt", dtype="fp16")   # class-conditional / unconditional Latte

The `<ckpt>.json` record says what the weights are: "kind" ("latte": the class / unconditional Latte of
latte/models/latte.py; "latte_t2v": LatteT2V) and "config" (the constructor's keyword arguments), as
tools/latte_converter.py and train.py write it. Keyword overrides win over the record (e.g. latent_size,
enable_flash_attention); model_name expands to its registry spec (Latte or LatteT2V, as the kind says), which the
other keywords override, so a file without a record loads when the overrides describe it.
"""
import logging
from collections import OrderedDict

from mindspore.nn.utils import no_init_parameters

from latte.checkpoint_io import CheckpointError, load_strict, read_ms_checkpoint
from latte.env import resolve_dtype
from latte.models.precision import apply_amp
from latte.models.registry import KIND_CLASS, KIND_T2V, KINDS, model_spec, t2v_spec

logger = logging.getLogger(__name__)

T2V_MARKER = "adaln_single.linear.weight"  # a LatteT2V weight the class Latte does not have
_DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _network(kind, config):
    if kind == KIND_T2V:
        from latte.models.latte_t2v import LatteT2V

        return LatteT2V(**config)
    from latte.models.latte import Latte

    return Latte(**config)


def latte_architecture(meta, overrides, ckpt_path, params=()):
    """(kind, constructor kwargs) of a checkpoint from its record and the caller's overrides; without a record the
    kind is told by the weights (`params`: their names)."""
    if "kind" not in meta and "kind" in meta.get("config", {}):  # tools/vae_converter.py's record
        raise CheckpointError(f"{ckpt_path} holds a VAE ({meta['config']['kind']}), not a Latte transformer: give "
                              "it as vae_checkpoint, and the .ckpt of tools/latte_converter.py as checkpoint")
    kind = meta.get("kind") or (KIND_T2V if T2V_MARKER in params else KIND_CLASS)
    if kind not in KINDS:
        raise CheckpointError(f"{ckpt_path}: its record says kind={kind!r}, not a Latte ({' or '.join(KINDS)}); "
                              "load it with the loader of that kind")
    config = dict(meta.get("config", {}))
    model_name = overrides.pop("model_name", None)
    if model_name is not None:
        try:
            config.update(model_spec(model_name) if kind == KIND_CLASS else t2v_spec(model_name))
        except ValueError as err:
            raise CheckpointError(f"{ckpt_path} holds a {kind}: {err}") from None
    config.update(overrides)
    if not config:
        raise CheckpointError(f"{ckpt_path} has no architecture record ({ckpt_path}.json): convert it with "
                              "tools/latte_converter.py, or pass model_name and the model keys")
    return kind, config


# mindone's Latte checkpoints (mindspore-lab/mindone examples/latte): its converter names the label table after
# nn.Embedding's parameter, and its trainer saves the network under the `network.` prefix of the loss cell
MINDONE_PREFIX = "network."
_LABEL_MINDONE, _LABEL = "y_embedder.embedding_table.embedding_table", "y_embedder.embedding_table"


def mindone_to_ms(params):
    """A mindone Latte .ckpt's names -> latte-ms names (others unchanged). Returns (params, whether any changed)."""
    out, changed = OrderedDict(), False
    for key, value in params.items():
        new = key
        while new.startswith(MINDONE_PREFIX):
            new = new[len(MINDONE_PREFIX):]
        if new == _LABEL_MINDONE:
            new = _LABEL
        changed |= new != key
        out[new] = value
    return out, changed


def load_latte(ckpt_path, dtype=None, describe="", **overrides):
    """The Latte of `ckpt_path` with its weights loaded strictly, in eval mode, computing in `dtype`.

    dtype: 'fp32' | 'fp16' | 'bf16' or a MindSpore dtype; None: fp32 on CPU, fp16 on Ascend/GPU. Below fp32 the
    net runs under AMP O2 with norms and softmax in fp32 (latte.models.precision.apply_amp); weights stay fp32.
    """
    import mindspore as ms

    params, meta = read_ms_checkpoint(ckpt_path, what="Latte checkpoint")
    params, renamed = mindone_to_ms(params)
    if renamed:
        logger.info("%s: read mindone's parameter names (network. prefix, label table)", ckpt_path)
    kind, config = latte_architecture(meta, dict(overrides), ckpt_path, params)
    try:
        with no_init_parameters():
            net = _network(kind, config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt_path}: cannot build the {kind} it records ({err})") from None
    load_strict(net, params, what=f"checkpoint {ckpt_path}", describe=describe)
    net.set_train(False)
    name = _DTYPE_NAMES.get(str(dtype).lower(), dtype) if dtype is not None else None
    return apply_amp(net, resolve_dtype(name, ms.get_context("device_target")))
