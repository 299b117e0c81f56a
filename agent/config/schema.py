"""A small declarative loader: TOML tables into frozen dataclasses, every problem named.

Each config section is a frozen dataclass. Field constraints live in ``field(metadata=...)``:

- ``min`` / ``max``: numeric range (inclusive)
- ``choices``: allowed values
- ``pattern``: a regular expression a string must match in full
- ``file``: the path must name an existing, readable file
- ``doc``: one line for the config reference
- ``secret``: the value is a secret (a BLE bindkey): no problem message ever shows it, not
  even a mistyped one (a mistyped key is mostly the real key)

A dataclass may define ``validate(self, path) -> list[str]`` for checks across fields
(pin conflicts, window ordering). Problems are collected, never raised one at a time, so
``check-config`` can print them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")

_TYPE_NAMES = {int: "int", float: "number", str: "string", bool: "bool"}


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any, secret: bool = False) -> str:
    """What a wrong value was, for a problem message. Tables and arrays are described by
    their shape only: they may hold a secret (an inline ``{bindkey = ...}`` in the wrong
    place) and no message may echo one. A secret field's value is never shown."""
    if secret:
        return f"{_kind(value)} (not shown: a secret)"
    if isinstance(value, (dict, list)):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"a table (keys: {', '.join(sorted(map(str, value))[:8])})" if value else \
            "an empty table"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, bool):
        return "a bool"
    return {int: "an int", float: "a number", str: "a string"}.get(type(value),
                                                                    type(value).__name__)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(tp: Any, value: Any, path: str, meta: dict[str, Any], errors: list[str]) -> Any:
    optional, tp = _is_optional(tp)
    secret = bool(meta.get("secret"))
    if value is None:
        if optional:
            return None
        errors.append(f"{path}: required")
        return None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a table, got {_describe(value, secret)}")
            return None
        return load_dataclass(tp, value, path, errors)
    origin = get_origin(tp)
    if origin is tuple:
        (item_tp, *_rest) = get_args(tp)
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array, got {_describe(value, secret)}")
            return None
        return tuple(
            _convert(item_tp, item, _join(path, i), meta, errors) for i, item in enumerate(value)
        )
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected number, got {_describe(value, secret)}")
            return None
        value = float(value)
    elif tp in (int, str, bool):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            errors.append(f"{path}: expected {_TYPE_NAMES[tp]}, got {_describe(value, secret)}")
            return None
    else:  # pragma: no cover - a programming error in a section definition
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    return _check_constraints(value, path, meta, errors)


def _check_constraints(value: Any, path: str, meta: dict[str, Any], errors: list[str]) -> Any:
    secret = bool(meta.get("secret"))
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
        errors.append(f"{path}: expected {rng}, got {_describe(value, secret)}")
        return None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        errors.append(f"{path}: expected one of {', '.join(map(str, choices))},"
                      f" got {_describe(value, secret)}")
        return None
    pattern = meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        hint = meta.get("pattern_hint", f"must match {pattern}")
        errors.append(f"{path}: {hint}, got {_describe(value, secret)}")
        return None
    if meta.get("file"):
        if not os.path.isfile(value):
            errors.append(f"{path}: file not found: {value}")
            return None
        if not os.access(value, os.R_OK):
            errors.append(f"{path}: file not readable: {value}")
            return None
    if meta.get("dir") and not os.path.isdir(value):
        errors.append(f"{path}: directory not found: {value}")
        return None
    return value


def load_dataclass(cls: type[T], table: dict[str, Any], path: str, errors: list[str]) -> T:
    """Build ``cls`` from ``table``; append one line per problem to ``errors``.

    On any problem the returned object may hold ``None`` in failed fields: callers must
    check ``errors`` before using it.
    """
    start = len(errors)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in table:
        if key not in fields:
            errors.append(f"{_join(path, key)}: unknown key{_did_you_mean(str(key), fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in table:
            kwargs[name] = _convert(hints[name], table[name], key_path, dict(f.metadata), errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{key_path}: required")
            kwargs[name] = None
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        errors.append(f"{path or 'config'}: {exc}")
        return typing.cast(T, None)
    if len(errors) == start:
        validate = getattr(obj, "validate", None)
        if callable(validate):
            errors.extend(validate(path))
    return obj


def _did_you_mean(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_ENTRY = re.compile(r"([A-Za-z0-9_]+)\[(\d+)\]")
_PATH = re.compile(r"[A-Za-z0-9_]+(?:\[\d+\])?(?:\.[A-Za-z0-9_]+(?:\[\d+\])?)*")


def name_entries(problem: str, doc: dict[str, Any]) -> str:
    """Name the array entries in a problem's key path by their ``id``, as installers know
    them: ``gpio.devices[1].pin: ...`` becomes ``gpio.devices[1] ('pir-hall').pin: ...``."""
    m = _PATH.match(problem)
    if not m or "[" not in m.group(0) or problem[m.end():m.end() + 1] not in (":", ""):
        return problem
    node: Any = doc
    out: list[str] = []
    for part in m.group(0).split("."):
        entry = _ENTRY.fullmatch(part)
        name = entry.group(1) if entry else part
        node = node.get(name) if isinstance(node, dict) else None
        if entry:
            i = int(entry.group(2))
            node = node[i] if isinstance(node, list) and i < len(node) else None
            ident = node.get("id") if isinstance(node, dict) else None
            if isinstance(ident, str) and ident.isprintable() and len(ident) <= 64:
                part = f"{part} ({ident!r})"
        out.append(part)
    return ".".join(out) + problem[m.end():]


def to_dict(obj: Any) -> Any:
    """The TOML-shaped form of a config object (for redaction, diffs and re-serialising)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(x) for x in obj]
    return obj
