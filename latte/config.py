"""One config system: typed dataclasses, mirrored by yaml files and command-line flags.

- `load_config(SampleConfig, argv)` reads `-c file.yaml`, then applies `--key value` flags (CLI wins).
- Every key must be a field: an unknown key, in yaml or on the command line, is an error naming the key and
  the closest valid one. Values are checked against the field's type.
- Nested dataclass fields are yaml mappings and dotted flags (`--data_config.data_folder DIR`).
- A field with metadata `include` (e.g. `data_config_file`) names a yaml file whose top-level mapping of that
  name is the base of the nested field; keys given inline or on the command line override it.
- `field(default, help, choices=..., minimum=...)` declares a key: its help and choices show in --help, and a
  value outside its choices or below its minimum is a ConfigError naming the (dotted) key. A list field with
  `split=False` takes a string as one item (a prompt may hold commas); by default "a,b" is two items.
- A config class may define `fill_defaults(given)` (a classmethod): defaults that depend on the keys given, e.g.
  sample.py's model keys from the checkpoint's record. Then `validate()` checks the keys together.
- `save_config(cfg, path)` writes the resolved config, which is what ran.
"""
import argparse
import dataclasses
import difflib
import logging
import os
import typing

import yaml

logger = logging.getLogger(__name__)

CONFIG_FLAGS = ("-c", "--config")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class ConfigError(ValueError):
    """A config value or key a user gave is wrong; the message names it and the fix."""


def field(default=dataclasses.MISSING, help="", include=None, choices=None, minimum=None,
          default_factory=dataclasses.MISSING, split=True):
    """A dataclass field with help text (shown by --help), optional allowed values (`choices`; for a list, of
    each item) and an optional lower bound (`minimum`; None values pass: "not set"). split=False: a string
    given to a list field is one item, never cut at commas."""
    meta = {"help": help, "include": include, "choices": choices, "minimum": minimum, "split": split}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_fields(cfg, prefix=""):
    """Raises ConfigError for the first field of dataclass `cfg` outside its `choices` or below its `minimum`.

    Called for every config built by from_dict, and by dataclasses that check themselves in __post_init__.
    """
    for f in dataclasses.fields(cfg):
        value, choices, minimum = getattr(cfg, f.name), f.metadata.get("choices"), f.metadata.get("minimum")
        is_list = isinstance(value, (list, tuple))
        for item in (value if is_list else [value]) if choices is not None else []:
            if item not in choices:
                what = f"has {item!r}, which" if is_list else f"={value!r}"
                raise ConfigError(f"{prefix}{f.name}{what} is not one of {list(choices)}")
        if minimum is not None and value is not None and not is_list and value < minimum:
            raise ConfigError(f"{prefix}{f.name}={value!r} must be >= {minimum}")


# ---------------------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------------------

def _type_name(tp):
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def coerce(value, tp, key):
    """Returns `value` converted to the annotated type `tp`, or raises ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = args[0] if args else str
        return [coerce(v, item, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).lower() in _TRUE | _FALSE:
            return str(value).lower() in _TRUE
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")


def _hints(cls):
    return typing.get_type_hints(cls)


def _fields(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def _unknown_key_error(key, valid, where):
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint} (see --help for all keys)")


# ---------------------------------------------------------------------------------------------------------
# Building a config from mappings
# ---------------------------------------------------------------------------------------------------------

def _read_yaml(path, what="config"):
    if not os.path.isfile(path):
        raise ConfigError(f"{what} file {path!r} not found")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid yaml ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _merge(base, override):
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _include_fields(cls):
    return [name for name, f in _fields(cls).items() if f.metadata.get("include")]


def _resolve_includes(cls, data, where):
    """Loads `include` fields' files (found beside the including file first, then from the working directory); the
    field then holds the path of the file used, so the saved config says which one it was."""
    for name, f in _fields(cls).items():
        target = f.metadata.get("include")
        path = data.get(name)
        if not target or not path:
            continue
        path = _find_include(path, where)
        logger.info("%s: %s", name, path)
        data[name] = path
        included = _read_yaml(path, what=name)
        if set(included) - {target}:
            raise ConfigError(f"{path}: expected only a top-level {target!r} mapping, found "
                              f"{sorted(set(included) - {target})}")
        data[target] = _merge(included.get(target) or {}, data.get(target) or {})
    return data


def _find_include(path, where):
    """`path` relative to the including file's folder or one of its parents (so a user's
    `configs/training/data/x.yaml` is theirs, whatever the working directory), else as given (relative to the
    working directory)."""
    if os.path.isabs(path) or not where or not os.path.isfile(where):
        return path
    folder = os.path.dirname(os.path.abspath(where))
    while True:
        candidate = os.path.join(folder, path)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return path
        folder = parent


def from_dict(cls, data, where="config", prefix="", overrides=None):
    """Builds `cls` from a (possibly nested) mapping, validating every key and value.

    prefix: the dotted path of a nested config (`data_config.`), for error messages.
    overrides: {dotted key: value} of the command line, set after the files are read and their other projects'
    key names translated, so they win over both (an included file's path is set before it is read).
    """
    overrides = dict(overrides or {})
    data = dict(data)
    for name in _include_fields(cls):
        if name in overrides:
            data[name] = overrides.pop(name)
    data = _resolve_includes(cls, data, where)
    translate = getattr(cls, "translate_keys", None)
    if translate is not None:  # other projects' names for our keys (latte.mindone_keys)
        data = translate(data, where)
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    fields, hints = _fields(cls), _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key_error(key, list(fields), where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
            kwargs[key] = from_dict(tp, value, where=f"{where} ({key})", prefix=f"{prefix}{key}.")
            continue
        if isinstance(value, str) and not fields[key].metadata.get("split", True):
            value = [value]  # one item (a prompt), whatever it holds
        kwargs[key] = coerce(value, tp, prefix + key)
    fill_defaults = getattr(cls, "fill_defaults", None)
    if fill_defaults is not None:  # defaults that depend on given keys (sample.py: the checkpoint's record)
        kwargs = fill_defaults(kwargs)
    try:
        cfg = cls(**kwargs)
    except TypeError as err:  # a required field without a value
        raise ConfigError(f"{cls.__name__}: {err}") from None
    check_fields(cfg, prefix)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def to_dict(cfg):
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

def _flag_names(cls, prefix=""):
    """Dotted flag name -> (dataclass field, owner class) for every leaf field."""
    out = {}
    hints = _hints(cls)
    for name, f in _fields(cls).items():
        if dataclasses.is_dataclass(hints[name]):
            out.update(_flag_names(hints[name], f"{prefix}{name}."))
        else:
            out[prefix + name] = (f, hints[name])
    return out


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each key's help; the script's docstring (its usage examples) kept as written."""


def build_parser(cls, description=""):
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False, formatter_class=_HelpFormatter)
    parser.add_argument(*CONFIG_FLAGS, dest="config", default=None, help="yaml config file; flags override it")
    for flag, (f, tp) in _flag_names(cls).items():
        default = f.default if f.default is not dataclasses.MISSING else None
        choices, minimum = f.metadata.get("choices"), f.metadata.get("minimum")
        text = (f.metadata.get("help", "") + (f" Choices: {list(choices)}." if choices else "")
                + (f" At least {minimum}." if minimum is not None else ""))
        parser.add_argument(f"--{flag}", dest=flag, default=argparse.SUPPRESS, nargs="?", const="true",
                            metavar=_type_name(tp).upper(), help=f"{text} (default: {default!r})")
    return parser


def _set_dotted(data, dotted, value):
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or part not in node else node[part]
    node[parts[-1]] = value


def load_config(cls, argv=None, description=""):
    """Parses `-c yaml` plus `--key value` flags into `cls`. Unknown flags and keys are errors."""
    parser = build_parser(cls, description)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        key = flag.lstrip("-").split("=")[0]
        raise _unknown_key_error(key, list(_flag_names(cls)), "the command line")
    data = _read_yaml(args.config) if args.config else {}
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    return from_dict(cls, data, where=args.config or "the command line", overrides=overrides)


def given_keys(argv=None):
    """The keys a command line gives, unvalidated: the yaml of `-c` with each `--key value` flag's raw string on
    top (dotted flags stay dotted). For choosing the config class before parsing (sample.py reads the checkpoint's
    record first)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(*CONFIG_FLAGS, dest="config", default=None)
    args, rest = parser.parse_known_args(argv)
    data = _read_yaml(args.config) if args.config else {}
    for i, token in enumerate(rest):
        if not token.startswith("--"):
            continue
        key, has_value, value = token[2:].partition("=")
        if not has_value:  # --key value, or a bare --key (true)
            following = rest[i + 1] if i + 1 < len(rest) else "--"
            value = "true" if following.startswith("--") else following
        data[key] = value
    return data


def save_config(cfg, path):
    """Writes the resolved config as yaml (atomically), loadable again with -c."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
    os.replace(tmp, path)
