"""Checks shared by config sections across layers.

Kept outside the ``agent.config`` package so that driver config modules can import it
without importing the root config (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def unique_entries(
    entries: Iterable[Any],
    prefix: str,
    field_name: str,
    value_of: Callable[[Any], Any],
    show: Callable[[Any], str] = str,
    id_label: str = "device id",
) -> list[str]:
    """Problems for entries of an array of tables (``prefix[i]``) that repeat an earlier
    entry's ``id`` or the resource ``field_name`` (a pin, an address, a port)."""
    problems: list[str] = []
    owners: dict[Any, str] = {}
    ids: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{prefix}[{i}]"
        value = value_of(entry)
        if value in owners:
            problems.append(f"{where}.{field_name}: {show(value)} of '{entry.id}' already used by "
                            f"'{owners[value]}'")
        else:
            owners[value] = entry.id
        if entry.id in ids:
            problems.append(f"{where}.id: duplicate {id_label} '{entry.id}'")
        ids.add(entry.id)
    return problems
