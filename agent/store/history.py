"""Read-only queries over the event store's tables for reports and the installer's check.

A read-only connection never blocks or alters the running agent's writes (WAL lets readers
and the writer proceed together). Rows come back as the tables hold them; ``agent/report``
gives them meaning.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from agent.model import Priority
from agent.store.lock import STORE_CREATED_META  # the agent notes its store's creation there

Row = tuple[Any, ...]   # seq, id, prio, type, device_id, wall, acked_wall, payload


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


def read_records(db: sqlite3.Connection, start_wall: float, end_wall: float) -> Iterator[Row]:
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
            yield row
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read events: {exc}") from exc


def last_before(db: sqlite3.Connection, types: tuple[str, ...], before_wall: float) -> list[Row]:
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
    latest: dict[str, Row] = {}
    try:
        for row in db.execute(query, (*types, before_wall, *types, before_wall)):
            latest[str(row[4])] = row
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
