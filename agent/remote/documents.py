"""Config documents (the TOML-shaped dicts): merge, redaction, and what changed.

- ``merge_patch`` is RFC 7396 JSON Merge Patch: tables merge key by key, anything else
  (numbers, strings, arrays such as ``gpio.devices``) is replaced whole, and ``null``
  deletes a key (back to its default).
- Secret fields carry ``metadata["secret"] = True`` in their config dataclass. They are
  shown as ``"***"`` in ``config/current``; a pushed document may send ``"***"`` back to
  mean "keep the value this hub has" (matched by device ``id`` inside arrays of tables),
  so support can edit a redacted copy without ever seeing a secret.
- ``changed_keys`` names what differs between two configs, never the values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints

from agent.config.schema import to_dict

REDACTED = "***"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: returns a new document; neither argument is modified."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def without_nulls(doc: Any) -> Any:
    """Drop ``None`` values (TOML has no null; a missing key means the default)."""
    if isinstance(doc, dict):
        return {k: without_nulls(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, (list, tuple)):
        return [without_nulls(v) for v in doc]
    return doc


def _inner(tp: Any) -> Any:
    """``X | None`` -> X; ``tuple[X, ...]`` stays as is."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _item_type(tp: Any) -> Any | None:
    tp = _inner(tp)
    if get_origin(tp) is tuple:
        return _inner(get_args(tp)[0])
    return None


def redact(cfg: Any) -> Any:
    """``to_dict(cfg)`` with every set secret replaced by ``"***"``."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        out = {}
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if f.metadata.get("secret") and value is not None:
                out[f.name] = REDACTED
            else:
                out[f.name] = redact(value)
        return out
    if isinstance(cfg, tuple):
        return [redact(x) for x in cfg]
    return cfg


def restore_secrets(doc: Any, current: Any, cls: type) -> Any:
    """Replace ``"***"`` in secret fields of ``doc`` by the value ``current`` has there.

    ``cls`` is the config dataclass ``doc`` describes, ``current`` the running instance
    (or None). An ``"***"`` with nothing to restore is left as is, so validation rejects it.
    """
    if not isinstance(doc, dict) or not dataclasses.is_dataclass(cls):
        return doc
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = dict(doc)
    for key, value in doc.items():
        f = fields.get(key)
        if f is None:
            continue
        cur = getattr(current, key, None) if current is not None else None
        tp = _inner(hints[key])
        if f.metadata.get("secret") and value == REDACTED:
            if cur is not None:
                out[key] = cur
        elif dataclasses.is_dataclass(tp) and isinstance(value, dict):
            out[key] = restore_secrets(value, cur, typing.cast(type, tp))
        elif (item := _item_type(hints[key])) is not None and dataclasses.is_dataclass(item) \
                and isinstance(value, list):
            item_cls = typing.cast(type, item)
            out[key] = [restore_secrets(v, _match(v, i, cur), item_cls)
                        for i, v in enumerate(value)]
    return out


def _match(item: Any, index: int, current: Any) -> Any:
    """The running element ``item`` stands for: same ``id`` if it has one, else same index."""
    if not isinstance(current, tuple):
        return None
    if isinstance(item, dict) and "id" in item:
        return next((c for c in current if getattr(c, "id", None) == item["id"]), None)
    return current[index] if index < len(current) else None


def changed_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """Key paths whose values differ between two configs (dataclasses or dicts)."""
    if dataclasses.is_dataclass(old) and not isinstance(old, type):
        old = to_dict(old)
    if dataclasses.is_dataclass(new) and not isinstance(new, type):
        new = to_dict(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out.extend(changed_keys(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out.extend(changed_keys(a, b, f"{path}[{i}]"))
        return out
    return [] if old == new else [path or "(root)"]


def key_matches(key: str, prefix: str) -> bool:
    """``gpio.devices[0].pin`` is under ``gpio.devices`` and ``gpio``, not under ``gpio.dev``."""
    return key == prefix or key.startswith((prefix + ".", prefix + "["))

