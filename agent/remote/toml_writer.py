"""Write a config document as TOML (the standard library only reads TOML).

Only what config documents hold is supported: tables, arrays of tables, strings,
integers, floats, booleans and arrays of those. ``dumps`` parses its own output back and
compares, so a bug here can never write a file that loads as something else.
"""

from __future__ import annotations

import math
import re
import tomllib
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(
            f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None
        ) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit(lines: list[str], path: list[str], table: dict[str, Any], header: str | None) -> None:
    scalars = [(k, v) for k, v in table.items()
               if v is not None and not isinstance(v, dict) and not _is_table_array(v)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, dict)]
    arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
    if header is not None and (scalars or not (tables or arrays) or header.startswith("[[")):
        if lines:
            lines.append("")
        lines.append(header)
    for k, v in scalars:
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables:
        sub = [*path, k]
        _emit(lines, sub, v, "[" + ".".join(map(_key, sub)) + "]")
    for k, items in arrays:
        sub = [*path, k]
        for item in items:
            _emit(lines, sub, item, "[[" + ".".join(map(_key, sub)) + "]]")


def _plain(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _plain(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, (list, tuple)):
        return [_plain(v) for v in doc]
    return doc


def dumps(doc: dict[str, Any], header: str = "") -> str:
    """TOML text for ``doc`` (``None`` values are left out: they mean "the default")."""
    lines: list[str] = [f"# {line}" if line else "#" for line in header.splitlines()]
    if lines:
        lines.append("")
    body: list[str] = []
    _emit(body, [], doc, None)
    text = "\n".join(lines + body) + "\n"
    back = tomllib.loads(text)
    if back != _plain(doc):  # pragma: no cover - a bug in this writer
        raise ValueError("TOML writer round trip mismatch")
    return text
