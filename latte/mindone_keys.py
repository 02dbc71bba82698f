"""mindone's Latte config keys, read as latte-ms keys: their yaml files run unchanged.

mindone (mindspore-lab/mindone, examples/latte) names some settings differently. Each key that has a meaning
here is mapped to ours and the mapping is said once (a warning, so it shows before logging is set up); a key
that contradicts one of ours given in the same file, or asks for something latte-ms does not do, is an error
that says why.

    top level    use_fp16: true -> dtype: fp16 (false -> fp32); use_model_dtype: X -> dtype: X;
                 dataset_name -> dropped (the layout is data_config.train_data_type here)
    data_config  sample_size -> image_size, sample_n_frames -> num_frames (checked against the top-level keys);
                 sample_stride (the same name); use_safer_augment: true -> random_flip: false (and false -> true),
                 dropped for a cache (latents are not augmented); train_data_type: npz -> numpy (a mindone cache
                 converted by tools/mindone_cache.py); use_image_num: null -> 0;
                 csv_path -> caption_file; image_video_joint and use_image_num are ours too (data_config,
                 image-video joint training) and pass unchanged
"""
import logging

from latte.config import ConfigError
from latte.data.config import CACHE_DATA_TYPES, NUMPY

MINDONE_NPZ = "npz"  # mindone's one-.npz-per-video cache (latte/data/mindone_cache.py)

logger = logging.getLogger(__name__)


def _say(where, key, meaning):
    logger.warning("%s: mindone key %s read as %s", where, key, meaning)


def _set(data, key, value, where, source):
    """data[key] = value unless data already gives another value for it (an error naming both)."""
    if key in data and data[key] != value:
        raise ConfigError(f"{where}: {source} means {key}: {value!r}, but {key}: {data[key]!r} is also given; keep "
                          "one of them")
    data[key] = value


def _true(value):
    return value in (True, "true", "True", 1)


def _rename(source, key, target, ours, where, convert=lambda value: value):
    """Moves source[key] to target[ours] (converted), saying so."""
    if key not in source:
        return
    value = source.pop(key)
    new = convert(value)
    _set(target, ours, new, where, f"{key}: {value}")
    _say(where, f"{key}: {value}", f"{ours}: {new}")


def translate_mindone_keys(data, where):
    """A config mapping with mindone's keys replaced by latte-ms keys (a new dict; nested data_config too)."""
    data = dict(data)
    _rename(data, "use_fp16", data, "dtype", where, lambda value: "fp16" if _true(value) else "fp32")
    _rename(data, "use_model_dtype", data, "dtype", where)
    if "dataset_name" in data:
        _say(where, f"dataset_name: {data.pop('dataset_name')}", "nothing (here data_config.train_data_type says "
                                                                 "how the data folder is laid out)")
    if isinstance(data.get("data_config"), dict):
        data_config, inner = dict(data["data_config"]), f"{where} (data_config)"
        _rename(data_config, "sample_size", data, "image_size", inner)
        _rename(data_config, "sample_n_frames", data, "num_frames", inner)
        if data_config.get("train_data_type") == MINDONE_NPZ:
            data_config["train_data_type"] = NUMPY
            _say(inner, f"train_data_type: {MINDONE_NPZ}", f"train_data_type: {NUMPY} (a mindone cache is converted "
                                                           "into a latte-ms numpy cache by tools/mindone_cache.py)")
        if data_config.get("train_data_type") in CACHE_DATA_TYPES and "use_safer_augment" in data_config:
            _say(inner, f"use_safer_augment: {data_config.pop('use_safer_augment')}",
                 "nothing (a cache holds latents of frames transformed before caching; mindone does not augment them)")
        _rename(data_config, "use_safer_augment", data_config, "random_flip", inner, lambda value: not _true(value))
        if "use_image_num" in data_config and data_config["use_image_num"] is None:  # every mindone data yaml
            data_config["use_image_num"] = 0
            _say(inner, "use_image_num: null", "use_image_num: 0 (no images per clip)")
        _rename(data_config, "csv_path", data_config, "caption_file", inner)
        data["data_config"] = data_config
    return data
