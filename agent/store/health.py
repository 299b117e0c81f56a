"""What ``tec-agent status`` can tell about a store's health without taking part in it.

Read from the files beside the database (never written): whether the disk-full reserve is
armed, how many refused alarms wait in the spill file for the next start, how many damaged
rows were quarantined, which earlier stores were moved aside after corruption, and how much
the disk has left. The running agent's own view (degraded, storage_failed) is in its
events and its StatusText.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent.store.recovery import moved_aside_files
from agent.store.space import disk_free, file_size
from agent.store.spill import Spill


def store_health(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    damaged: int | None
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
        try:
            row = db.execute("SELECT count(*) FROM damaged").fetchone()
            damaged = int(row[0])
        finally:
            db.close()
    except sqlite3.Error:
        damaged = None      # an older store without the table, or unreadable
    return {
        "reserve_bytes": file_size(p.with_name(p.name + ".reserve")),
        "spilled_events": len(Spill(p.with_name(p.name + ".spill")).read()),
        "damaged_rows": damaged,
        "moved_aside": [f.name for f in moved_aside_files(p) if not f.name.endswith(
            ("-wal", "-shm"))],
        "disk_free_bytes": disk_free(p.parent),
    }


def describe(health: dict[str, Any]) -> str:
    """One line for people: what is fine is short, what needs a look says so."""
    parts = []
    reserve = health["reserve_bytes"]
    parts.append(f"reserve {reserve / 2**20:.1f} MB" if reserve else "reserve NOT armed")
    free = health["disk_free_bytes"]
    if free is not None:
        parts.append(f"disk {free / 2**20:.0f} MB free")
    if health["spilled_events"]:
        parts.append(f"{health['spilled_events']} refused alarm(s)/warning(s) in the spill "
                     "file, stored at the next start")
    if health["damaged_rows"]:
        parts.append(f"{health['damaged_rows']} damaged row(s) quarantined (table damaged)")
    if health["moved_aside"]:
        parts.append(f"{len(health['moved_aside'])} corrupt store(s) moved aside: "
                     + ", ".join(health["moved_aside"]))
    return "; ".join(parts)
