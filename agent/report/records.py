"""Read stored events for reports: pending ones from ``events``, delivered ones from
``delivered``, through a read-only connection so a report never blocks or alters the
running agent's writes (WAL lets readers and the writer proceed together).

Telemetry is left out: it is deleted once delivered, so it could not be counted
consistently, and outcome figures do not need it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.model import Priority
from agent.store import history

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One stored non-telemetry event as a report sees it."""

    seq: int
    id: str
    priority: Priority
    type: str
    device_id: str
    wall: float
    acked_wall: float | None          # None: still waiting for the broker
    clock_synced: bool = True
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    @property
    def delivered(self) -> bool:
        return self.acked_wall is not None


def _record(row: tuple[Any, ...]) -> Record:
    seq, event_id, prio, type_, device_id, wall, acked_wall, payload = row
    try:
        doc = json.loads(payload)
        data = doc.get("data") or {}
        synced = bool(doc.get("clock_synced", True))
    except (ValueError, AttributeError, TypeError):
        log.warning("stored event %s has an unreadable payload; counting it without data", seq)
        data, synced = {}, True
    return Record(int(seq), str(event_id), Priority(int(prio)), str(type_), str(device_id),
                  float(wall), None if acked_wall is None else float(acked_wall), synced,
                  data if isinstance(data, dict) else {})


def read_records(db: sqlite3.Connection, start_wall: float, end_wall: float) -> Iterator[Record]:
    """Non-telemetry events stamped in ``[start_wall, end_wall)``, oldest first."""
    for row in history.read_records(db, start_wall, end_wall):
        yield _record(row)


def last_before(db: sqlite3.Connection, types: tuple[str, ...], before_wall: float) -> list[Record]:
    """The latest event of any of ``types`` per device stamped before ``before_wall``.

    Device supervision state carries across period boundaries: a device that went offline
    yesterday and has not come back is offline from the start of today.
    """
    return [_record(row) for row in history.last_before(db, types, before_wall)]


records_from = history.records_from
open_readonly = history.open_readonly
