"""The ARC's acknowledgements, kept with the events (table ``arc_delivery``).

Why a table of its own: an event leaves ``events`` when the MQTT broker acknowledges it, but
the ARC path is independent of MQTT (either may be down). One row per event sent to the
ARC, written when the event is committed (state ``pending``) and updated when the receiver
answers: ``acked`` (with the receiver, the DC-09 sequence number, the time), or ``refused``
(every receiver answered DUH even to the generic code). Pending rows are sent again after a
restart. ``report`` reads the ACK latency from here.

The table is created with ``CREATE TABLE IF NOT EXISTS`` when the ARC path starts: stores
from before it keep working and gain the table (an additive migration).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from agent.errors import StoreError
from agent.model import Priority

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS arc_delivery(
    event_id TEXT PRIMARY KEY,
    seq INTEGER,
    prio INTEGER NOT NULL,
    type TEXT NOT NULL,
    device_id TEXT NOT NULL,
    code INTEGER NOT NULL,
    zone INTEGER NOT NULL,
    wall REAL NOT NULL,
    queued_wall REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    receiver TEXT,
    dc09_seq INTEGER,
    acked_wall REAL,
    latency_ms REAL,
    answer TEXT
);
CREATE INDEX IF NOT EXISTS arc_delivery_by_state ON arc_delivery(state);
CREATE TABLE IF NOT EXISTS arc_state(key TEXT PRIMARY KEY, value);
"""
PENDING, ACKED, REFUSED = "pending", "acked", "refused"


@dataclass(frozen=True, slots=True)
class ArcRow:
    event_id: str
    seq: int | None
    priority: Priority
    type: str
    device_id: str
    code: int
    zone: int
    wall: float
    queued_wall: float
    state: str = PENDING
    attempts: int = 0
    receiver: str | None = None
    dc09_seq: int | None = None
    acked_wall: float | None = None
    latency_ms: float | None = None


class UnqueuedAlarm(NamedTuple):
    """An alarm committed (in ``events`` or MQTT's history) that never got a row here."""

    event_id: str
    seq: int
    prio: int
    type: str
    device_id: str
    wall: float
    payload: bytes


_COLUMNS = ("event_id, seq, prio, type, device_id, code, zone, wall, queued_wall, state,"
            " attempts, receiver, dc09_seq, acked_wall, latency_ms")


def _row(r: tuple[Any, ...]) -> ArcRow:
    return ArcRow(r[0], r[1], Priority(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                  r[11], r[12], r[13], r[14])


class SqliteArcDeliveryStore:
    """:class:`agent.ports.ArcDeliveryStore` over ``arc_delivery`` in the agent's database
    (the store's connection, the loop's thread; made by ``SqliteStore.arc_delivery()``).
    Each call is its own transaction, without an fsync (see :class:`_Tx`): at least once,
    never lost."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def add(self, rows: Sequence[ArcRow]) -> None:
        """Queue events for the ARC (an event already queued is left as it is)."""
        if not rows:
            return
        with self._tx():
            self.db.executemany(
                "INSERT OR IGNORE INTO arc_delivery(event_id, seq, prio, type, device_id, code,"
                " zone, wall, queued_wall) VALUES (?,?,?,?,?,?,?,?,?)",
                [(r.event_id, r.seq, int(r.priority), r.type, r.device_id, r.code, r.zone,
                  r.wall, r.queued_wall) for r in rows])

    def attempted(self, event_id: str) -> None:
        with self._tx():
            self.db.execute("UPDATE arc_delivery SET attempts=attempts+1 WHERE event_id=?",
                            (event_id,))

    def acked(self, event_id: str, receiver: str, dc09_seq: int, latency_ms: float | None,
              answer: str, acked_wall: float | None = None) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE arc_delivery SET state=?, receiver=?, dc09_seq=?, acked_wall=?,"
                " latency_ms=?, answer=? WHERE event_id=?",
                (ACKED, receiver, dc09_seq, time.time() if acked_wall is None else acked_wall,
                 latency_ms, answer, event_id))

    def refused(self, event_id: str, answer: str) -> None:
        with self._tx():
            self.db.execute("UPDATE arc_delivery SET state=?, answer=? WHERE event_id=?",
                            (REFUSED, answer, event_id))

    def pending(self) -> list[ArcRow]:
        """Unacknowledged, by priority then age (an alarm before a warning)."""
        return [_row(r) for r in self.db.execute(
            f"SELECT {_COLUMNS} FROM arc_delivery WHERE state=? ORDER BY prio, wall",
            (PENDING,))]

    def get(self, event_id: str) -> ArcRow | None:
        r = self.db.execute(f"SELECT {_COLUMNS} FROM arc_delivery WHERE event_id=?",
                            (event_id,)).fetchone()
        return None if r is None else _row(r)

    def unqueued_alarms(self, since_wall: float) -> list[UnqueuedAlarm]:
        """Events committed but never queued here (a crash between the commit and the
        queueing): (id, seq, prio, type, device_id, wall, payload) of alarms since
        ``since_wall``, in ``events`` or already in MQTT's history."""
        out: list[UnqueuedAlarm] = []
        for table in ("events", "delivered"):
            out.extend(UnqueuedAlarm(*r) for r in self.db.execute(
                f"SELECT id, seq, prio, type, device_id, wall, payload FROM {table}"
                " WHERE prio=? AND wall>=? AND id NOT IN (SELECT event_id FROM arc_delivery)",
                (int(Priority.ALARM), since_wall)).fetchall())
        return out

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM arc_state WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO arc_state VALUES (?, ?)", (key, value))

    def _tx(self) -> _Tx:
        return _Tx(self.db)


class MemoryArcDeliveryStore:
    """The same contract in memory (offline replays, tests): nothing survives the process,
    and no event store lies beside it, so no alarm is ever unqueued."""

    def __init__(self) -> None:
        self.rows: dict[str, ArcRow] = {}
        self.state: dict[str, str] = {}

    def add(self, rows: Sequence[ArcRow]) -> None:
        for r in rows:
            self.rows.setdefault(r.event_id, replace(r, state=PENDING, attempts=0))

    def attempted(self, event_id: str) -> None:
        row = self.rows.get(event_id)
        if row is not None:
            self.rows[event_id] = replace(row, attempts=row.attempts + 1)

    def acked(self, event_id: str, receiver: str, dc09_seq: int, latency_ms: float | None,
              answer: str, acked_wall: float | None = None) -> None:
        row = self.rows.get(event_id)
        if row is not None:
            self.rows[event_id] = replace(
                row, state=ACKED, receiver=receiver, dc09_seq=dc09_seq, latency_ms=latency_ms,
                acked_wall=time.time() if acked_wall is None else acked_wall)

    def refused(self, event_id: str, answer: str) -> None:
        row = self.rows.get(event_id)
        if row is not None:
            self.rows[event_id] = replace(row, state=REFUSED)

    def pending(self) -> list[ArcRow]:
        return sorted((r for r in self.rows.values() if r.state == PENDING),
                      key=lambda r: (int(r.priority), r.wall))

    def get(self, event_id: str) -> ArcRow | None:
        return self.rows.get(event_id)

    def unqueued_alarms(self, since_wall: float) -> list[UnqueuedAlarm]:
        return []

    def get_state(self, key: str) -> str | None:
        return self.state.get(key)

    def set_state(self, key: str, value: str) -> None:
        self.state[key] = value


class _Tx:
    """One transaction without the fsync (``synchronous=NORMAL`` in WAL mode): a row lost
    to a power cut only means the alarm is sent to the ARC again (the events themselves are
    committed with ``FULL`` by the store, and an alarm with no row here is queued again at
    start). Paying an fsync here would put one between the commit and the ARC."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        try:
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"ARC delivery rows: {exc}") from exc

    def __exit__(self, exc_type: object, exc: BaseException | None, _tb: object) -> None:
        """A failing or full card is a :class:`StoreError` (the ARC path sends anyway)."""
        try:
            self.db.execute("COMMIT" if exc is None else "ROLLBACK")
        except sqlite3.Error as end:
            if exc is None:
                raise StoreError(f"ARC delivery rows: {end}") from end
        finally:
            try:
                self.db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error:
                log.exception("cannot restore synchronous=FULL after an ARC delivery write")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"ARC delivery rows: {exc}") from exc


def arc_summary(db: sqlite3.Connection, start: float, end: float) -> dict[str, int] | None:
    """Counts by state of the alarms in [start, end) sent to the ARC; None when the store
    has no ARC table."""
    try:
        rows = db.execute(
            "SELECT state, count(*) FROM arc_delivery WHERE prio=? AND wall>=? AND wall<?"
            " GROUP BY state", (int(Priority.ALARM), start, end)).fetchall()
    except sqlite3.OperationalError:
        return None
    out = {PENDING: 0, ACKED: 0, REFUSED: 0}
    out.update({str(k): int(v) for k, v in rows})
    return out


def read_arc_status(path: str) -> dict[str, Any] | None:
    """For ``status``: what waits for the ARC (count, oldest age, most attempts) and the last
    acknowledgement, read-only; None when the store has no ARC table or cannot be read."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        pending = db.execute(
            "SELECT count(*), min(wall), max(attempts) FROM arc_delivery WHERE state=?",
            (PENDING,)).fetchone()
        refused = db.execute("SELECT count(*) FROM arc_delivery WHERE state=?",
                             (REFUSED,)).fetchone()[0]
        last = db.execute(
            "SELECT acked_wall, receiver, latency_ms FROM arc_delivery WHERE state=?"
            " ORDER BY acked_wall DESC LIMIT 1", (ACKED,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    now = time.time()
    return {
        "pending": int(pending[0]),
        "oldest_pending_age_s": round(max(0.0, now - pending[1]), 1) if pending[1] else None,
        "most_attempts": int(pending[2] or 0),
        "refused": int(refused),
        "last_ack_age_s": round(max(0.0, now - last[0]), 1) if last else None,
        "last_ack_receiver": last[1] if last else None,
        "last_ack_latency_ms": round(last[2], 1) if last and last[2] is not None else None,
    }


def read_latencies(db: sqlite3.Connection, since_wall: float = 0.0,
                   until_wall: float = float("inf")) -> list[float]:
    """ARC acknowledgement latencies (ms, commit to ACK) of alarms acked since
    ``since_wall``; empty when the store has no ARC table (no ARC path ever ran)."""
    try:
        rows = db.execute(
            "SELECT latency_ms FROM arc_delivery WHERE state=? AND prio=? AND wall>=?"
            " AND wall<? AND latency_ms IS NOT NULL ORDER BY latency_ms",
            (ACKED, int(Priority.ALARM), since_wall, until_wall)).fetchall()
    except sqlite3.OperationalError:
        return []
    return [float(r[0]) for r in rows]
