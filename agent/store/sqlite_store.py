"""The durable buffer between detectors and the uplink.

An event counts as accepted only once its transaction has committed (WAL,
``synchronous=FULL``: it survives kill -9 and power loss). It leaves the ``events`` table
only when the broker acknowledged it; non-telemetry events then move to ``delivered`` so
reports can be made on the hub. The payload is serialised once, at commit, so every retry
sends the same bytes with the same ``id`` and ``seq``.

Size is bounded by ``max_bytes``: telemetry, then delivered history, then info are evicted
oldest first (counted and logged); alarms and warnings never are. A reserve file of
``reserve_bytes`` is kept beside the database and given up only when the disk is full and
an alarm or warning must be stored.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.errors import StoreError, StoreFullError
from agent.model import Event, Priority

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    prio INTEGER NOT NULL,
    type TEXT NOT NULL,
    device_id TEXT NOT NULL,
    wall REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_prio ON events(prio);
CREATE TABLE IF NOT EXISTS delivered(
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    prio INTEGER NOT NULL,
    type TEXT NOT NULL,
    device_id TEXT NOT NULL,
    wall REAL NOT NULL,
    acked_wall REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_by_wall ON delivered(wall);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
"""
_EVICTABLE = (Priority.TELEMETRY, Priority.INFO)
_CHECK_EVERY_BYTES = 64 * 1024
_ROW_OVERHEAD = 48  # SQLite record and index bytes beside the payload (estimate)
_Row = tuple[int, str, int, str, str, float, bytes]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    seq: int
    priority: Priority
    payload: bytes


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending (unacknowledged) events per priority."""

    counts: dict[str, int]
    oldest_wall: dict[str, float]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def write_many(db: sqlite3.Connection,
               statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
    """Run ``statements`` in one transaction on a connection shared with the event store
    (components keep their own tables beside it). Inside a transaction already open they
    join it; otherwise a failure rolls back and raises ``sqlite3.Error``."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            db.execute(sql, params)
        if own:
            db.execute("COMMIT")
    except sqlite3.Error:
        if own and db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


class SqliteStore:
    """SQLite event store. Use from one thread (the agent loop) only."""

    def __init__(
        self,
        path: str | Path,
        hub_id: str,
        max_bytes: int = 256 * 1024 * 1024,
        reserve_bytes: int = 1024 * 1024,
        keep_history_days: int = 400,
    ) -> None:
        self.path = Path(path)
        self.hub_id = hub_id
        self.max_bytes = max_bytes
        self.reserve_bytes = min(reserve_bytes, max_bytes // 4)
        self.keep_history_days = keep_history_days
        self.evicted: dict[str, int] = {p.label: 0 for p in Priority}
        self.dropped: dict[str, int] = {p.label: 0 for p in Priority}
        self.recovered_from: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._next_seq = 1
        self._bytes_since_check = 0
        self._page_size = 4096

    # -- lifecycle -------------------------------------------------------------------
    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def open(self) -> None:
        """Open (creating if needed). A corrupt database is moved aside, never fatal."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open_checked()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            self.recovered_from = self._move_aside(str(exc))
            try:
                self._open_checked()
            except sqlite3.Error as exc2:
                raise StoreError(f"cannot create event store {self.path}: {exc2}") from exc2
        self._ensure_reserve()

    def _open_checked(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=OFF")
        result = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result}")
        db.executescript(_SCHEMA)
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        row = db.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM events), 0),"
            " coalesce((SELECT max(seq) FROM delivered), 0),"
            " coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key='last_seq'), 0))"
        ).fetchone()
        self._next_seq = int(row[0]) + 1
        if self._next_seq == 1:
            # A fresh (or recovered) database: start above anything an earlier one issued,
            # so seq stays increasing per hub even after a corrupt file was moved aside.
            self._next_seq = self._seed_seq()

    def _seed_seq(self) -> int:
        return int(time.time() * 1000) if self.recovered_from is not None else 1

    def _move_aside(self, why: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        log.error(
            "event store %s is corrupt or unreadable (%s): moved aside to %s, starting a fresh one",
            self.path, why, target,
        )
        return target

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._next_seq - 1,))
            except sqlite3.Error:
                pass
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None

    def _close_quietly(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("event store is not open")
        return self._db

    # -- reserve against a full disk -----------------------------------------------------
    def _ensure_reserve(self) -> None:
        if self.reserve_bytes <= 0 or self.reserve_path.exists():
            return
        try:
            with open(self.reserve_path, "wb") as fh:
                fh.write(b"\0" * self.reserve_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.warning("cannot create store reserve file %s: %s", self.reserve_path, exc)
            try:
                self.reserve_path.unlink()
            except OSError:
                pass

    def _release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        log.critical("disk full: released the %d-byte reserve to store alarms", self.reserve_bytes)
        return True

    # -- writing ---------------------------------------------------------------------------
    def append(
        self,
        events: Sequence[Event],
        before_commit: Callable[[list[PendingEvent]], None] | None = None,
    ) -> list[Event]:
        """Commit ``events`` in one transaction and return them with ``seq`` set.

        Telemetry and info that do not fit the budget are dropped (counted, logged, and
        left out of the result); alarms and warnings are always stored while the disk can
        hold them. Raises :class:`StoreError` only if an alarm or warning cannot be stored.

        ``before_commit(rows)`` sees the serialised rows before the transaction is written, so
        the uplink can send an alarm while the fsync runs; an event only counts as accepted
        once this returns.
        """
        if not events:
            return []
        rows, out = self._serialise(events)
        rows, out = self._make_room(rows, out)
        try:
            self._insert(rows, before_commit)
            return out
        except sqlite3.Error as exc:
            self._rollback()
            if not _is_disk_full(exc):
                raise StoreError(f"cannot write event store {self.path}: {exc}") from exc
            return self._append_disk_full(rows, out, exc)

    def _append_disk_full(self, rows: list[_Row], out: list[Event],
                          exc: sqlite3.Error) -> list[Event]:
        keep = [i for i, e in enumerate(out) if e.priority <= Priority.WARNING]
        for e in out:
            if e.priority > Priority.WARNING:
                self.dropped[e.priority.label] += 1
        log.error("disk full while storing %d events (%s); dropping %d non-urgent",
                  len(out), exc, len(out) - len(keep))
        if not keep:
            return []
        self._release_reserve()
        try:
            self._evict(self.reserve_bytes or 1 << 20)
            self._insert([rows[i] for i in keep])
            return [out[i] for i in keep]
        except sqlite3.Error as exc2:
            self._rollback()
            raise StoreFullError(
                f"disk full: cannot store {len(keep)} alarm/warning events: {exc2}") from exc2

    def _serialise(self, events: Sequence[Event]) -> tuple[list[_Row], list[Event]]:
        """Assign seqs and serialise once: every retry sends these very bytes."""
        out: list[Event] = []
        rows: list[_Row] = []
        seq = self._next_seq
        for e in events:
            stored = replace(e, seq=seq)
            payload = json.dumps(stored.to_json_dict(self.hub_id), separators=(",", ":")).encode()
            rows.append((seq, e.id, int(e.priority), e.type, e.device_id, e.wall, payload))
            out.append(stored)
            seq += 1
        return rows, out

    def _insert(self, rows: list[_Row],
                before_commit: Callable[[list[PendingEvent]], None] | None = None) -> None:
        if not rows:
            return
        if before_commit is not None:
            before_commit([PendingEvent(r[0], Priority(r[2]), r[6]) for r in rows])
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        self._next_seq = max(self._next_seq, rows[-1][0] + 1)

    def used_bytes(self) -> int:
        """Bytes of live pages in the database (freed pages are reused, so not counted)."""
        page_count = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((page_count - free) * self._page_size)

    def _make_room(self, rows: list[_Row], out: list[Event]) -> tuple[list[_Row], list[Event]]:
        """Keep the store within budget: evict old telemetry/history/info; if the batch itself
        is too big, drop its own oldest telemetry. Alarms and warnings always pass."""
        incoming = sum(len(r[6]) + _ROW_OVERHEAD for r in rows)
        self._bytes_since_check += incoming
        budget = self.max_bytes - self.reserve_bytes
        if self._bytes_since_check < _CHECK_EVERY_BYTES and incoming < budget // 8:
            return rows, out
        self._bytes_since_check = 0
        used = self.used_bytes() + incoming
        if used <= budget:
            return rows, out
        # Free down to 95 % of the budget so eviction runs in batches, not per insert.
        deficit = self._evict(used - int(budget * 0.95))
        if deficit <= 0:
            return rows, out
        keep_rows: list[_Row] = []
        keep_out: list[Event] = []
        dropped = 0
        for row, ev in zip(rows, out):
            if deficit > 0 and ev.priority in _EVICTABLE:
                deficit -= len(row[6]) + _ROW_OVERHEAD
                self.evicted[ev.priority.label] += 1
                dropped += 1
                continue
            keep_rows.append(row)
            keep_out.append(ev)
        if dropped:
            log.warning("event store full: dropped %d oldest incoming telemetry/info events",
                        dropped)
        return keep_rows, keep_out

    def _evict(self, need: int) -> int:
        """Delete oldest telemetry, then delivered history, then info, to free ``need`` bytes.
        Returns what is still missing (<= 0: enough was freed)."""
        db = self.db
        for prio in (Priority.TELEMETRY, None, Priority.INFO):
            if need <= 0:
                break
            table, where = ("delivered", "1") if prio is None else ("events", f"prio={int(prio)}")
            while need > 0:
                avg = db.execute(
                    f"SELECT avg(length(payload)), count(*) FROM {table} WHERE {where}"
                ).fetchone()
                if not avg[1]:
                    break
                n = max(64, int(need / max(avg[0] + _ROW_OVERHEAD, 64)) + 1)
                before = self.used_bytes()
                cur = db.execute(
                    f"DELETE FROM {table} WHERE seq IN "
                    f"(SELECT seq FROM {table} WHERE {where} ORDER BY seq LIMIT ?)",
                    (n,),
                )
                removed = cur.rowcount
                label = "history" if prio is None else prio.label
                if prio is not None:
                    self.evicted[prio.label] += removed
                log.warning("event store over budget: evicted %d oldest %s events", removed, label)
                need -= max(before - self.used_bytes(), removed * _ROW_OVERHEAD)
                if removed < n:
                    break
        if need > 0:
            log.warning(
                "event store over budget with only alarms and warnings left (%d bytes over)",
                need,
            )
        return need

    def _rollback(self) -> None:
        try:
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # -- reading and acknowledging -----------------------------------------------------------
    def next_batch(self, after: dict[Priority, int], limit: int) -> list[PendingEvent]:
        """Up to ``limit`` pending events, alarms first, each priority past its cursor."""
        out: list[PendingEvent] = []
        db = self.db
        for prio in Priority:
            if len(out) >= limit:
                break
            rows = db.execute(
                "SELECT seq, payload FROM events WHERE prio=? AND seq>? ORDER BY seq LIMIT ?",
                (int(prio), after.get(prio, 0), limit - len(out)),
            ).fetchall()
            out.extend(PendingEvent(seq, prio, payload) for seq, payload in rows)
        return out

    def pending_alarms(self, exclude_escalated: bool = True) -> list[dict[str, Any]]:
        """Alarms still waiting for the broker, as published (oldest first). With
        ``exclude_escalated``, alarms an ``alarm_escalated`` record names are left out."""
        rows = self.db.execute(
            "SELECT payload FROM events WHERE prio=? ORDER BY seq", (int(Priority.ALARM),)
        ).fetchall()
        done: set[str] = set()
        if exclude_escalated:
            for table in ("events", "delivered"):
                done.update(
                    str(r[0]) for r in self.db.execute(
                        "SELECT json_extract(CAST(payload AS TEXT), '$.data.event_id') FROM "
                        f"{table} WHERE type='alarm_escalated'"
                    ) if r[0] is not None
                )
        out = []
        for (payload,) in rows:
            doc = json.loads(payload)
            if doc.get("id") not in done:
                out.append(doc)
        return out

    def has_pending(self, priority: Priority, after_seq: int) -> bool:
        """Whether an event of ``priority`` with seq above ``after_seq`` is waiting."""
        return self.db.execute(
            "SELECT 1 FROM events WHERE prio=? AND seq>? LIMIT 1", (int(priority), after_seq)
        ).fetchone() is not None

    def ack(self, seqs: Sequence[int], acked_wall: float | None = None) -> None:
        """The broker has these: move non-telemetry to history, delete the rest."""
        if not seqs:
            return
        acked_wall = time.time() if acked_wall is None else acked_wall
        db = self.db
        # Losing an acknowledgement to a power cut only means sending the event again, so
        # this transaction skips the fsync that inserts must pay.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            for i in range(0, len(seqs), 500):
                chunk = list(seqs[i : i + 500])
                marks = ",".join("?" * len(chunk))
                if self.keep_history_days > 0:
                    db.execute(
                        "INSERT OR REPLACE INTO delivered"
                        " SELECT seq, id, prio, type, device_id, wall, ?,"
                        f" payload FROM events WHERE seq IN ({marks}) AND prio < ?",
                        (acked_wall, *chunk, int(Priority.TELEMETRY)),
                    )
                db.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk)
            # The highest seq ever issued survives the table emptying (seq never goes back).
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._next_seq - 1,))
            db.execute("COMMIT")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            self._rollback()
            db.execute("PRAGMA synchronous=FULL")
            # The events stay pending and will be sent again: at least once, never lost.
            log.error("cannot record acknowledgement of %d events: %s", len(seqs), exc)

    def prune_history(self, now_wall: float | None = None) -> int:
        if self.keep_history_days <= 0:
            return 0
        cutoff = (time.time() if now_wall is None else now_wall) - self.keep_history_days * 86400
        cur = self.db.execute("DELETE FROM delivered WHERE wall < ?", (cutoff,))
        self._ensure_reserve()
        return cur.rowcount

    def backlog(self) -> Backlog:
        return backlog_of(self.db)

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def backlog_of(db: sqlite3.Connection) -> Backlog:
    counts = {p.label: 0 for p in Priority}
    oldest: dict[str, float] = {}
    for prio, n, first in db.execute(
        "SELECT prio, count(*), min(wall) FROM events GROUP BY prio"
    ).fetchall():
        label = Priority(prio).label
        counts[label] = int(n)
        oldest[label] = float(first)
    return Backlog(counts, oldest)


def read_backlog(path: str | Path) -> Backlog:
    """Backlog from a store file without taking part in its writes (for ``status``)."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no event store at {p}")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
        try:
            return backlog_of(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {p}: {exc}") from exc
