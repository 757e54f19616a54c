"""Typed configs: one dataclass per stage, loaded from YAML plus dotted ``key=value`` overrides.

Every field carries a one-line ``help`` (``opt(default, "why")``) that ``rlhfkit <stage> --help``
prints. Unknown keys and wrong types fail before any work is done, naming the key (and the file).
Nested dataclasses are config groups (``train.lr=1e-5``). Values on the command line are parsed as
YAML scalars, so ``lora.enabled=true`` and ``lr=3e-5`` mean what they look like.

A renamed key keeps working for one release: the config class lists it in ``RENAMED_KEYS``
(``{"old": "new"}``); the old spelling is read as the new one with a one-line deprecation warning.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from rlhfkit.errors import RlhfkitError


class ConfigError(RlhfkitError, ValueError):
    """A config problem; the message names the key (and the file when there is one)."""


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None):  # noqa: A002
    """A documented config field. Mutable defaults go through ``factory``."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` against annotation ``tp``; raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{key}: expected one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def build(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data = _renamed(cls, data, prefix)
    for key in data:
        if key not in names:
            close = ", ".join(sorted(names))
            raise ConfigError(f"{prefix}{key}: unknown config key (known here: {close})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
                value = _merge(_default_dict(f), value)  # a group keeps its stage-specific defaults
            kwargs[f.name] = _coerce(value, hints[f.name], f"{prefix}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{f.name}: required config key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as err:
            raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from err
    return obj


def _renamed(cls: type, data: dict, prefix: str) -> dict:
    """Old spellings in ``cls.RENAMED_KEYS`` -> their new keys, each with a deprecation warning."""
    renamed = getattr(cls, "RENAMED_KEYS", {})
    if not any(old in data for old in renamed):
        return data
    from rlhfkit.run import warn

    out = dict(data)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{prefix}{old}: renamed to {prefix}{new}; set only {prefix}{new}")
        warn(f"{prefix}{old} is deprecated and will be removed in the next release: use {prefix}{new}")
        out[new] = out.pop(old)
    return out


def _default_dict(f: dataclasses.Field) -> dict:
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.asdict(f.default_factory())
    if f.default is not dataclasses.MISSING and dataclasses.is_dataclass(f.default):
        return dataclasses.asdict(f.default)
    return {}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last one
    silently, so ``lr: 1e-5`` further up a file would quietly not apply)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first_line: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            seen = key in first_line
        except TypeError:  # an unhashable key: construct_mapping reports it
            break
        if seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first_line[key] + 1})",
                key_node.start_mark)
        first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(text: str) -> Any:
    """Parse YAML safely, rejecting duplicated keys (``yaml.YAMLError`` names the line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"{text}: an override must look like key=value (e.g. train.lr=1e-5)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{text}: bad key in override")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.constructor.ConstructorError as err:  # e.g. a duplicated key in a {a: 1, a: 2} value
        raise ConfigError(f"{text}: {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: '{part}' is not a config group")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of keys to values")
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> Any:
    """YAML file (optional) + dotted overrides -> a validated ``cls`` instance."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides)
    try:
        return build(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def flatten_keys(data: Any, prefix: str = "") -> dict:
    """A nested mapping as dotted keys: ``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    if isinstance(data, dict):
        out: dict = {}
        for key, value in data.items():
            out.update(flatten_keys(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    from rlhfkit.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[str]:
    """One line per key, ``key = default   help``, for ``--help``. A group shows the defaults the
    stage gives it (its ``default_factory``), not the group class's own."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if instance is not None:
            default = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "required"
        if dataclasses.is_dataclass(tp):
            lines.extend(describe(tp, f"{prefix}{f.name}.", default if default != "required" else None))
            continue
        lines.append(f"  {prefix}{f.name} = {default!r}   {f.metadata.get('help', '')}")
    return lines
