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
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.errors import StoreError
from agent.model import Priority
from agent.store.lock import STORE_CREATED_META  # the agent notes its store's creation there

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


def open_readonly(path: str | Path) -> sqlite3.Connection:
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no event store at {p}")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
        db.execute("SELECT 1 FROM delivered LIMIT 1").fetchall()
        return db
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {p}: {exc}") from exc


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
    query = (
        "SELECT seq, id, prio, type, device_id, wall, acked_wall, payload FROM delivered"
        " WHERE wall >= ? AND wall < ?"
        " UNION ALL"
        " SELECT seq, id, prio, type, device_id, wall, NULL, payload FROM events"
        " WHERE wall >= ? AND wall < ? AND prio < ?"
        " ORDER BY wall, seq"
    )
    args = (start_wall, end_wall, start_wall, end_wall, int(Priority.TELEMETRY))
    try:
        for row in db.execute(query, args):
            yield _record(row)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read events: {exc}") from exc


def last_before(db: sqlite3.Connection, types: tuple[str, ...], before_wall: float) -> list[Record]:
    """The latest event of any of ``types`` per device stamped before ``before_wall``.

    Device supervision state carries across period boundaries: a device that went offline
    yesterday and has not come back is offline from the start of today.
    """
    marks = ",".join("?" * len(types))
    query = (
        "SELECT seq, id, prio, type, device_id, wall, acked, payload FROM ("
        f" SELECT seq, id, prio, type, device_id, wall, acked_wall AS acked, payload FROM delivered"
        f"  WHERE type IN ({marks}) AND wall < ?"
        " UNION ALL"
        f" SELECT seq, id, prio, type, device_id, wall, NULL AS acked, payload FROM events"
        f"  WHERE type IN ({marks}) AND wall < ?"
        ") ORDER BY wall, seq"
    )
    latest: dict[str, Record] = {}
    try:
        for row in db.execute(query, (*types, before_wall, *types, before_wall)):
            rec = _record(row)
            latest[rec.device_id] = rec
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read events: {exc}") from exc
    return list(latest.values())




def records_from(db: sqlite3.Connection) -> float | None:
    """When the store's knowledge begins: the earlier of its creation (recorded by the agent
    since issue 17) and its oldest event still held (older stores, pruned history). None:
    an empty store, nothing known."""
    try:
        row = db.execute(
            "SELECT min(w) FROM (SELECT min(wall) AS w FROM delivered"
            " UNION ALL SELECT min(wall) FROM events"
            " UNION ALL SELECT CAST(value AS REAL) FROM meta WHERE key = ?)",
            (STORE_CREATED_META,)).fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read events: {exc}") from exc
    return None if row is None or row[0] is None else float(row[0])
