"""Typed, frozen stage configs with YAML and command-line overrides.

A YAML file only sets defaults of a stage's dataclass fields; command-line
options override the YAML; the resolved dataclass is what gets saved beside
every artefact. Unknown keys are an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pathda.errors import ConfigError

C = TypeVar("C")


def load_yaml(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Read a YAML mapping (optionally one top-level ``section`` of it)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    if section is not None:
        data = data.get(section, {}) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: section '{section}' must be a mapping")
    return data


def build_config(cls: type[C], *layers: Mapping[str, Any] | None, source: str = "config") -> C:
    """Build ``cls`` from mappings applied in order (later wins); ``None`` values are skipped.

    Values are coerced to the field's annotated type (paths, tuples, numbers), so a
    YAML list becomes a tuple and a string a ``Path`` where the field says so. A class
    may list renamed fields in ``RENAMED = {old: new}``: old keys still work, with a
    ``FutureWarning``, for one release; a new name may point into a nested config
    (``"tissue.mpp"``). Nested configs (a dataclass-typed field such as ``tissue``) take a
    mapping and merge field by field across layers.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    renamed: Mapping[str, str] = getattr(cls, "RENAMED", {})
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            key = key.replace("-", "_")
            if key in renamed:
                warnings.warn(
                    f"{source}: option '{key}' is deprecated; call it '{renamed[key]}'",
                    FutureWarning,
                    stacklevel=2,
                )
                key = renamed[key]
            key, _, sub = key.partition(".")  # "tissue.mpp": one field of a nested config
            if key not in fields:
                valid = ", ".join(sorted(fields))
                raise ConfigError(f"{source}: unknown option '{key}'; valid options: {valid}")
            if value is None:
                continue
            if sub:
                value = {sub: value}
            if _is_config_class(hints[key]) and isinstance(value, Mapping):
                # Nested settings merge field by field across layers (YAML, then flags).
                earlier = merged.get(key)
                nested = dict(earlier) if isinstance(earlier, Mapping) else {}
                nested.update({k: v for k, v in value.items() if v is not None})
                merged[key] = nested
            else:
                merged[key] = _coerce(value, hints[key], f"{source}: {key}")
    for key, value in merged.items():
        if _is_config_class(hints[key]) and isinstance(value, Mapping):
            merged[key] = build_config(hints[key], value, source=f"{source}: {key}")
    try:
        return cls(**merged)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def _is_config_class(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: cannot interpret {value!r} as {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in items)
    if hint is Path:
        return Path(value)
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is str:
        return str(value)
    return value
