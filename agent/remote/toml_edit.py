"""Write an accepted config into the installer's own file, keeping its comments and layout.

A support desk pushes a whole config (often ``remote get-config`` output, every default
spelt out) or a merge. Writing that document over the hub's file would throw away the
installer's comments and turn every default into an explicit value that a later agent
version can no longer improve. So the file is *edited* (tomlkit, style-preserving): only
keys whose effective value changed are touched; a key whose value is unchanged stays as it
was written, or stays absent if it was a default.

The result is checked: it must load as exactly the new config. If it does not (or the file
is missing or unreadable), the whole document is written with :func:`toml_writer.dumps`,
as before: correct, only less tidy.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from agent.config import parse_config
from agent.config.schema import to_dict
from agent.errors import ConfigError
from agent.remote.toml_writer import dumps

log = logging.getLogger(__name__)

HEADER_MARK = "# Last changed by tec-agent remote support:"
_OLD_HEADER_FIRST = "# Written by tec-agent: remote config version"


def edited_text(path: Path, doc: dict[str, Any], note: str, header: str) -> str:
    """The text to write to ``path`` for the new document ``doc`` (nulls already removed):
    the file edited in place, with ``note`` on its first line; else ``doc`` in full under
    ``header``."""
    new = parse_config(doc)
    try:
        text = path.read_text(encoding="utf-8")
        old = parse_config(tomllib.loads(text))
        edited = tomlkit.parse(text)
        _sync(edited, old, new)
        out = _with_header(tomlkit.dumps(edited).rstrip("\n") + "\n", note)
        if parse_config(tomllib.loads(out)) == new:
            return out
        log.warning("editing %s in place gave a different config; writing it in full", path)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError,
            tomlkit.exceptions.TOMLKitError, TypeError, ValueError) as exc:
        log.warning("cannot edit %s in place (%s); writing it in full", path, exc)
    return dumps(doc, header)


def _with_header(text: str, note: str) -> str:
    """Replace the agent's own header (if any) at the top with one line for this push."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith(HEADER_MARK):
        lines = lines[1:]
    elif lines and lines[0].startswith(_OLD_HEADER_FIRST):
        # The three-line header of files written whole by earlier versions, and its blank.
        while lines and lines[0].startswith("#"):
            lines = lines[1:]
        if lines and not lines[0].strip():
            lines = lines[1:]
    return f"{HEADER_MARK} {note}\n" + "".join(lines)


def _is_item_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and any(dataclasses.is_dataclass(x) for x in value)


def _sync(table: Any, old: Any, new: Any) -> None:
    """Edit ``table`` (the file's table for ``old``) so that it describes ``new``."""
    for f in dataclasses.fields(new):
        name = f.name
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue  # unchanged: leave it as written (or absent, a default)
        if dataclasses.is_dataclass(after):
            if name in table and isinstance(table[name], (Table, dict)):
                _sync(table[name], before, after)
            else:
                table[name] = _minimal(after)
        elif _is_item_tuple(after) or _is_item_tuple(before):
            _sync_items(table, name, before, after)
        elif after is None:
            if name in table:
                del table[name]
        else:
            table[name] = to_dict(after)


def _sync_items(table: Any, name: str, before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
    """An array of tables (devices, rules): items are matched by ``id`` where they have one,
    else by position; a matched item is edited in place, a new one is written minimal."""
    existing = table.get(name)
    if not after:
        if name in table:
            del table[name]
        return
    if not isinstance(existing, AoT) or len(existing) != len(before):
        table[name] = _aot(after)
        return

    def key(item: Any, index: int) -> Any:
        return getattr(item, "id", None) or index

    keys_before = [key(x, i) for i, x in enumerate(before)]
    if keys_before == [key(x, i) for i, x in enumerate(after)]:
        for i, item in enumerate(after):
            _sync(existing[i], before[i], item)
        return
    index = {k: i for i, k in enumerate(keys_before)}
    # Added, removed or reordered items: rebuild the array, editing the items that stay.
    aot = tomlkit.aot()
    for i, item in enumerate(after):
        j = index.get(key(item, i))
        if j is not None and getattr(item, "id", None) is not None:
            kept = existing[j]
            _sync(kept, before[j], item)
            aot.append(kept)
        else:
            aot.append(_minimal(item))
    table[name] = aot


def _minimal(obj: Any) -> Any:
    """A new table holding only what differs from the defaults (and required fields)."""
    t = tomlkit.table()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if value is None or value == default:
            continue
        if dataclasses.is_dataclass(value):
            t[f.name] = _minimal(value)
        elif _is_item_tuple(value):
            t[f.name] = _aot(value)
        else:
            t[f.name] = to_dict(value)
    return t


def _aot(items: tuple[Any, ...]) -> AoT:
    aot = tomlkit.aot()
    for x in items:
        aot.append(_minimal(x))
    return aot


__all__ = ["HEADER_MARK", "edited_text"]
