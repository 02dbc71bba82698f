"""mindone's Latte config keys, read as latte-ms keys: their yaml files run unchanged.

mindone (mindspore-lab/mindone, examples/latte) names some settings differently. Each key that has a meaning
here is mapped to ours and the mapping is said once (a warning, so it shows before logging is set up); a key
that contradicts one of ours given in the same file, or asks for something latte-ms does not do, is an error
that says why.

    top level    use_fp16: true -> dtype: fp16 (false -> fp32); use_model_dtype: X -> dtype: X;
                 dataset_name -> dropped (the layout is data_config.train_data_type here)
    data_config  sample_size -> image_size, sample_n_frames -> num_frames (checked against the top-level keys);
                 sample_stride (the same name); use_safer_augment: true -> random_flip: false (and false -> true);
                 csv_path -> caption_file; image_video_joint: false / use_image_num: 0 -> dropped
"""
import logging

from latte.config import ConfigError

logger = logging.getLogger(__name__)

JOINT_UNSUPPORTED = ("image-video joint training (mindone's image_video_joint / use_image_num) is not in latte-ms "
                     "yet: set image_video_joint: false")


def _say(where, key, meaning):
    logger.warning("%s: mindone key %s read as %s", where, key, meaning)


def _set(data, key, value, where, source):
    """data[key] = value unless data already gives another value for it (an error naming both)."""
    if key in data and data[key] != value:
        raise ConfigError(f"{where}: {source} means {key}: {value!r}, but {key}: {data[key]!r} is also given; keep "
                          "one of them")
    data[key] = value


def translate_mindone_keys(data, where, model_keys=True):
    """A config mapping with mindone's keys replaced by latte-ms keys (a new dict; nested data_config too).
    model_keys: the config has image_size / num_frames / dtype (train.py, sample.py)."""
    data = dict(data)
    if "use_fp16" in data:
        value = data.pop("use_fp16")
        dtype = "fp16" if value in (True, "true", "True", 1) else "fp32"
        _set(data, "dtype", dtype, where, f"use_fp16: {value}")
        _say(where, f"use_fp16: {value}", f"dtype: {dtype}")
    if "use_model_dtype" in data:
        value = data.pop("use_model_dtype")
        _set(data, "dtype", value, where, f"use_model_dtype: {value}")
        _say(where, f"use_model_dtype: {value}", f"dtype: {value}")
    if "dataset_name" in data:
        _say(where, f"dataset_name: {data.pop('dataset_name')}", "nothing (here data_config.train_data_type says "
                                                                 "how the data folder is laid out)")
    if isinstance(data.get("data_config"), dict):
        data["data_config"] = _translate_data(data, dict(data["data_config"]), where, model_keys)
    return data


def _translate_data(top, data, where, model_keys):
    where = f"{where} (data_config)"
    for theirs, ours in (("sample_size", "image_size"), ("sample_n_frames", "num_frames")):
        if theirs in data:
            value = data.pop(theirs)
            if model_keys:
                _set(top, ours, value, where, f"{theirs}: {value}")
                _say(where, f"{theirs}: {value}", f"{ours}: {value} (top level)")
            else:
                _say(where, f"{theirs}: {value}", "nothing (this command does not read it)")
    if "use_safer_augment" in data:
        value = data.pop("use_safer_augment")
        flip = not (value in (True, "true", "True", 1))
        _set(data, "random_flip", flip, where, f"use_safer_augment: {value}")
        _say(where, f"use_safer_augment: {value}", f"random_flip: {flip}")
    if "csv_path" in data:
        value = data.pop("csv_path")
        _set(data, "caption_file", value, where, f"csv_path: {value}")
        _say(where, f"csv_path: {value}", f"caption_file: {value}")
    for key in ("image_video_joint", "use_image_num"):
        if key in data:
            value = data.pop(key)
            if value not in (False, None, 0, "false", "False", "0"):
                raise ConfigError(f"{where}: {key}: {value!r}: {JOINT_UNSUPPORTED}")
            _say(where, f"{key}: {value}", "nothing (video-only training, as here)")
    return data
