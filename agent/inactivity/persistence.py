"""The inactivity rules' own tables in the agent's SQLite database.

The event store's schema is not touched: these tables are created beside it with
``CREATE TABLE IF NOT EXISTS``. What survives a restart:

- ``inactivity_state``: the engine snapshot (last activity, mats, away, countdowns) with
  the monotonic time, wall time, boot id and clock sync state at which it was taken, so
  the next start can tell how long it was down; and the learned routine.
- ``inactivity_stillness``: per local day and hour, the longest stillness and how much of
  the hour was observed (the learned routine's input; a few KB per month).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from datetime import date
from typing import Any

from agent.errors import StoreError
from agent.inactivity.household import HouseholdRecorder
from agent.inactivity.routine import HourStat, Routine
from agent.store.sqlite_store import write_many

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS inactivity_state(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inactivity_stillness(
    day TEXT NOT NULL,
    hour INTEGER NOT NULL,
    max_still_s REAL NOT NULL,
    observed_s REAL NOT NULL,
    PRIMARY KEY (day, hour)
);
"""


class InactivityStore:
    """Small typed access to the tables above, over a connection owned by someone else."""

    def __init__(self, db: sqlite3.Connection, create: bool = True) -> None:
        """``create=False`` for a read-only look (``tec-agent routine``)."""
        self.db = db
        if not create:
            return
        try:
            write_many(self.db, [(s, ()) for s in SCHEMA.split(";") if s.strip()])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create inactivity tables: {exc}") from exc

    # -- key/value ---------------------------------------------------------------------------
    def _get(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM inactivity_state WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            log.warning("inactivity state '%s' is unreadable; starting afresh", key)
            return None

    def _put(self, key: str, value: Any) -> tuple[str, tuple[Any, ...]]:
        return ("INSERT OR REPLACE INTO inactivity_state VALUES (?, ?)",
                (key, json.dumps(value, separators=(",", ":"))))

    def load_snapshot(self) -> dict[str, Any] | None:
        snap = self._get("snapshot")
        return snap if isinstance(snap, dict) else None

    def load_routine(self) -> Routine | None:
        doc = self._get("routine")
        if not isinstance(doc, dict):
            return None
        try:
            return Routine.from_dict(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("stored learned routine is unreadable (%s); relearning", exc)
            return None

    def load_household(self) -> HouseholdRecorder | None:
        doc = self._get("household")
        if not isinstance(doc, dict):
            return None
        try:
            return HouseholdRecorder.from_dict(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("stored household records are unreadable (%s); relearning", exc)
            return None

    def load_bins(self) -> dict[tuple[date, int], HourStat]:
        out: dict[tuple[date, int], HourStat] = {}
        for day, hour, mx, obs in self.db.execute(
            "SELECT day, hour, max_still_s, observed_s FROM inactivity_stillness"
        ):
            try:
                out[(date.fromisoformat(day), int(hour))] = HourStat(float(mx), float(obs))
            except ValueError:
                continue
        return out

    def save(
        self,
        snapshot: dict[str, Any] | None = None,
        routine: Routine | None = None,
        household: HouseholdRecorder | None = None,
        bins: Mapping[tuple[date, int], HourStat] | None = None,
        prune_before: date | None = None,
    ) -> None:
        """Write what is given in one transaction."""
        stmts: list[tuple[str, tuple[Any, ...]]] = []
        if snapshot is not None:
            stmts.append(self._put("snapshot", snapshot))
        if routine is not None:
            stmts.append(self._put("routine", routine.as_dict()))
        if household is not None:
            stmts.append(self._put("household", household.as_dict()))
        for (day, hour), st in (bins or {}).items():
            stmts.append(("INSERT OR REPLACE INTO inactivity_stillness VALUES (?, ?, ?, ?)",
                          (day.isoformat(), hour, st.max_still_s, st.observed_s)))
        if prune_before is not None:
            stmts.append(("DELETE FROM inactivity_stillness WHERE day < ?",
                          (prune_before.isoformat(),)))
        if stmts:
            write_many(self.db, stmts)
