"""The durable buffer between detectors and the uplink.

An event counts as accepted only once its transaction has committed (WAL,
``synchronous=FULL``: it survives kill -9 and power loss). It leaves the ``events`` table
only when the broker acknowledged it; non-telemetry events then move to ``delivered`` so
reports can be made on the hub. The payload is serialised once, at commit, so every retry
sends the same bytes with the same ``id`` and ``seq``.

``seq`` is handed out once and never again, whatever happens to the commit (a failed
commit leaves a gap, never a repeat), and never goes backwards across restarts, lost
WALs or a store rebuilt after corruption (see :mod:`agent.store.seqfloor`).

Size is bounded by ``max_bytes``, the WAL included: telemetry, then delivered history,
then info are evicted oldest first (counted and logged); alarms and warnings never are.
When the disk itself is full the store degrades to "telemetry and info dropped, alarms and
warnings stored", freeing what it can (its reserve file, stores moved aside earlier, the
WAL, evictable rows) for as long as anything can be freed, and re-arms the reserve once
space returns (:meth:`SqliteStore.maintain`).

Damaged rows are never published: a row whose payload does not match it is moved to
``damaged`` and reported (``store_damaged_row``). Losses the store can detect on open (an
empty or missing file, lost transactions, corruption) are reported as ``store_reset``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import StoreError, StoreFullError, StoreLockedError, StoreWriteError
from agent.model import Event, Priority
from agent.store import recovery
from agent.store.rows import check_row, damaged_row_data
from agent.store.seqfloor import Floor, SeqFloor
from agent.store.space import Reserve, disk_free, file_size, reserve_size, wal_limit
from agent.store.spill import Spill

if TYPE_CHECKING:
    from agent.store.arc_delivery import SqliteArcDeliveryStore
    from agent.store.component_state import SqliteComponentState

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
CREATE TABLE IF NOT EXISTS damaged(
    seq, id, prio, type, device_id, wall, payload, reason TEXT, found_wall REAL
);
"""
_EVICTABLE = (Priority.TELEMETRY, Priority.INFO)
_CHECK_EVERY_BYTES = 64 * 1024
_ROW_OVERHEAD = 48  # SQLite record and index bytes beside the payload (estimate)
_FULL_RETRIES = 3
_DEGRADED_CHECK_S = 5.0
_Row = tuple[int, str, int, str, str, float, bytes]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    seq: int
    priority: Priority
    payload: bytes
    id: str = ""


@dataclass(frozen=True, slots=True)
class StoreNotice:
    """Something the hub must report about its own store (a ``warning`` event)."""

    type: str                     # store_reset | store_damaged_row
    data: dict[str, Any] = field(default_factory=dict)


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
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_FULL)
    return "full" in str(exc)


class SqliteStore:
    """SQLite event store. Use from one thread (the agent loop) only.

    ``connect`` is the seam to SQLite (``sqlite3.connect``'s signature): tests hand in a
    connection class that fails chosen statements. ``on_notice`` hears about losses and
    damage the store found (set it before :meth:`open` to hear about those found there);
    ``on_progress`` hears, every few thousand rows, that a long salvage at open goes on.
    """

    def __init__(
        self,
        path: str | Path,
        hub_id: str,
        max_bytes: int = 256 * 1024 * 1024,
        reserve_bytes: int = 4 * 1024 * 1024,
        keep_history_days: int = 400,
        *,
        connect: Callable[..., sqlite3.Connection] = sqlite3.connect,
        lock_timeout_s: float = 30.0,
        file_mode: int = 0o640,
        on_notice: Callable[[StoreNotice], None] | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.hub_id = hub_id
        self.max_bytes = max_bytes
        self.reserve_bytes = min(reserve_bytes, max_bytes // 4)
        self.keep_history_days = keep_history_days
        self.lock_timeout_s = lock_timeout_s
        self.file_mode = file_mode
        self.on_notice = on_notice
        self.on_progress = on_progress   # long work at open (salvage): "still busy, why"
        self.evicted: dict[str, int] = {p.label: 0 for p in Priority}
        self.dropped: dict[str, int] = {p.label: 0 for p in Priority}
        self.recovered_from: Path | None = None
        self.degraded = False           # disk full: only alarms and warnings are stored
        self._connect = connect
        self._db: sqlite3.Connection | None = None
        self._floor = SeqFloor(self.path.with_name(self.path.name + ".seq"))
        self._reserve = Reserve(self.reserve_path, self.reserve_bytes)
        self._spill = Spill(self.path.with_name(self.path.name + ".spill"))
        self._refused: dict[str, PendingEvent] = {}   # by id: refused rows now spilled
        self._next_seq = 1
        self._bytes_since_check = 0
        self._page_size = 4096
        self._degraded_checked = 0.0

    # -- lifecycle -------------------------------------------------------------------
    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    @property
    def spill_path(self) -> Path:
        return self._spill.path

    @property
    def wal_path(self) -> Path:
        return Path(str(self.path) + "-wal")

    def open(self) -> None:
        """Open (creating if needed). Waits for another process's lock (then raises
        :class:`StoreLockedError`); moves a corrupt database aside and salvages what is
        readable; reports detected losses as ``store_reset`` notices."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reserve.size = reserve_size(self.reserve_bytes, self.path.parent,
                                          file_size(self.reserve_path))
        if self._reserve.size < self.reserve_bytes:
            log.warning("store reserve cut to %d bytes (a quarter of the free disk; %d"
                        " configured)", self._reserve.size, self.reserve_bytes)
        previous = self._floor.read()
        had_store = previous is not None or self.reserve_path.exists()
        reset: dict[str, Any] | None = None
        if not self.path.exists() and had_store:
            reset = {"reason": "missing_file",
                     "detail": "the database file was missing; a new one was started"}
        elif self.path.exists() and file_size(self.path) == 0 and had_store:
            reset = {"reason": "empty_file",
                     "detail": "the database file was empty (zero bytes); a new one was started"}
        self._prepare_file()
        salvage = self._open_with_recovery()
        db_max = self._db_max()
        committed_before = previous.committed if previous else 0
        if salvage is not None:
            reset = {"reason": "corrupt", "detail": salvage[0], "moved_to": str(salvage[1]),
                     **salvage[2].as_data()}
            for row in salvage[2].damaged:
                self._notice("store_damaged_row", row)
        elif reset is None and db_max < committed_before:
            reset = {"reason": "lost_transactions",
                     "detail": "events committed earlier are missing from the database"
                               " (its WAL was deleted or damaged, or an older copy was"
                               " restored)"}
        next_seq = max(db_max, committed_before, previous.reserved if previous else 0) + 1
        if reset is not None and previous is None:
            # Nothing recorded how far seq had gone: stay above anything the old store could
            # have issued (the wall clock in ms; a Pi without NTP may be behind, hence max).
            next_seq = max(next_seq, int(time.time() * 1000))
        self._next_seq = next_seq
        if reset is not None:
            reset.update({"last_seq_in_store": db_max, "last_seq_committed": committed_before,
                          "next_seq": next_seq})
            if committed_before > db_max:
                reset["events_lost_at_most"] = committed_before - db_max
            log.error("event store %s: %s (%s)", self.path, reset["reason"], reset["detail"])
            self._notice("store_reset", reset)
        self._floor.open(Floor(next_seq - 1, db_max))
        self._floor.reserve(next_seq)
        self._import_spill()
        self._spill.allocate()
        self._reserve.arm()
        self._apply_wal_limit()

    def _import_spill(self) -> None:
        """Alarms and warnings an earlier run could not commit and spilled: into the
        database now, as pending, with the seqs they were given."""
        records = self._spill.read()
        if not records:
            return
        rows: list[_Row] = []
        for rec in records:
            try:
                seq, prio, event_id = int(rec["seq"]), int(rec["prio"]), str(rec["id"])
                payload = str(rec["payload"]).encode()
                doc = json.loads(payload)
            except (KeyError, TypeError, ValueError):
                log.error("alarm spill file: unreadable record skipped")
                continue
            if check_row(seq, event_id, prio, payload) is not None:
                log.error("alarm spill file: damaged record seq %s skipped", seq)
                continue
            known = self.db.execute("SELECT 1 FROM events WHERE id=? UNION ALL"
                                    " SELECT 1 FROM delivered WHERE id=?",
                                    (event_id, event_id)).fetchone()
            if known is None:
                rows.append((seq, event_id, prio, str(doc["type"]), str(doc["device_id"]),
                             time.time(), payload))
        try:
            write_many(self.db, [("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", r)
                                 for r in rows])
        except sqlite3.Error as exc:
            log.critical("cannot import %d spilled alarms/warnings: %s (kept in %s)",
                         len(rows), exc, self._spill.path)
            return
        log.warning("imported %d alarms/warnings an earlier run could not store", len(rows))
        self._spill.clear()

    def _prepare_file(self) -> None:
        """Create the database file with the store's mode (SQLite gives its WAL and SHM the
        same mode) and narrow a file created wider by an older version."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.file_mode)
            os.close(fd)
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists() and p.stat().st_mode & 0o7777 & ~self.file_mode:
                    os.chmod(p, self.file_mode)
        except OSError as exc:
            raise StoreError(f"cannot create event store {self.path}: {exc.strerror}") from exc

    def _open_with_recovery(self) -> tuple[str, Path, recovery.SalvageReport] | None:
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                self._open_checked()
                return None
            except sqlite3.Error as exc:
                self._close_quietly()
                kind = recovery.classify(exc)
                if kind == "busy":
                    if time.monotonic() < deadline:
                        log.warning("event store %s is locked by another process; waiting",
                                    self.path)
                        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
                        continue
                    raise StoreLockedError(
                        f"event store {self.path} is locked by another process (waited"
                        f" {self.lock_timeout_s:.0f} s; is a second tec-agent or a sqlite3"
                        " shell using it?); left untouched") from exc
                if kind != "corrupt":
                    raise StoreError(f"cannot open event store {self.path}: {exc}") from exc
                moved = recovery.move_aside(self.path, str(exc))
                self.recovered_from = moved
                self._prepare_file()
                try:
                    self._open_checked()
                except sqlite3.Error as exc2:
                    raise StoreError(
                        f"cannot create event store {self.path}: {exc2}") from exc2
                report = recovery.salvage(moved, self.db, self._connect, self._salvaging)
                return str(exc), moved, report

    def _salvaging(self, rows: int) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress(f"salvaging a corrupt event store: {rows} rows read")
            except Exception:
                log.exception("store progress handler failed")

    def _open_checked(self) -> None:
        db = self._connect(self.path, isolation_level=None, timeout=5.0)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=OFF")
        result = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if result != "ok":
            raise recovery.CorruptStoreError(f"quick_check: {result}")
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        self._apply_wal_limit()
        # A write at open: a lock held by another process shows here, not at the first alarm.
        db.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("COMMIT")

    def _wal_limit(self) -> int:
        return wal_limit(self.max_bytes, self._reserve.size if self._reserve.armed else 0)

    def _apply_wal_limit(self) -> None:
        """Size the WAL to the reserve armed now (after open, release and re-arming)."""
        limit = self._wal_limit()
        try:
            self.db.execute(f"PRAGMA journal_size_limit={limit}")
            self.db.execute(f"PRAGMA wal_autocheckpoint={max(16, limit // self._page_size)}")
        except sqlite3.Error as exc:
            log.warning("cannot set the WAL limit: %s", exc)

    def _db_max(self) -> int:
        row = self.db.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM events), 0),"
            " coalesce((SELECT max(seq) FROM delivered), 0),"
            " coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key='last_seq'), 0))"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._next_seq - 1,))
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._db.close()
            self._db = None
            self._floor.release(self._next_seq - 1)
        self._floor.close()

    def _close_quietly(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("event store is not open")
        return self._db

    def _notice(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(StoreNotice(kind, data))
            except Exception:
                log.exception("store notice handler failed")

    # -- writing ---------------------------------------------------------------------------
    def append(
        self,
        events: Sequence[Event],
        before_commit: Callable[[list[PendingEvent]], None] | None = None,
    ) -> list[Event]:
        """Commit ``events`` in one transaction and return them with ``seq`` set.

        Telemetry and info that do not fit the budget (or any disk, while degraded) are
        dropped (counted, logged, and left out of the result); alarms and warnings are always
        stored while any byte can be freed. Raises :class:`StoreError` if an alarm or warning
        cannot be stored (:class:`StoreFullError` for a full disk, with ``rows``: what was
        not stored, serialised with the seqs they were given).

        ``before_commit(rows)`` sees the serialised rows before the transaction is written, so
        the uplink can send an alarm while the fsync runs; an event only counts as accepted
        once this returns. Seqs handed out here are never handed out again, even if the
        commit fails.
        """
        if not events:
            return []
        rows, out = self._serialise(events)
        if self.degraded and not self._leave_degraded():
            rows, out = self._drop_evictable(rows, out, "disk full")
            if not rows:
                return []
        rows, out = self._make_room(rows, out)
        try:
            try:
                self._insert(rows, before_commit)
                if self.degraded:
                    self._checkpoint(truncate=True)
            except sqlite3.Error as exc:
                self._rollback()
                if not _is_disk_full(exc):
                    urgent = [PendingEvent(r[0], Priority(r[2]), r[6], r[1]) for r in rows
                              if r[2] <= Priority.WARNING]
                    raise StoreWriteError(f"cannot write event store {self.path}: {exc}",
                                          rows=urgent) from exc
                out = self._append_disk_full(rows, out, exc)
        except StoreWriteError as exc:
            self._spill_refused(exc.rows, [])
            raise
        self._spill_refused([], out)
        return out

    def _spill_refused(self, refused: list[PendingEvent], stored: list[Event]) -> None:
        """Keep the spill file equal to the alarms and warnings refused and not stored since
        (a retry stores them under new seqs: matched by id)."""
        if not refused and not self._refused:
            return
        changed = False
        for ev in stored:
            changed |= self._refused.pop(ev.id, None) is not None
        for row in refused:
            self._refused[row.id] = row
            changed = True
        if not changed:
            return
        if self._refused:
            self._spill.write([{"seq": r.seq, "prio": int(r.priority), "id": r.id,
                                "payload": r.payload.decode()} for r in self._refused.values()])
        else:
            self._spill.clear()

    def _append_disk_full(self, rows: list[_Row], out: list[Event],
                          exc: sqlite3.Error) -> list[Event]:
        if not self.degraded:
            log.critical("disk full (%s): storing only alarms and warnings until space"
                         " returns", exc)
        self.degraded = True
        self._degraded_checked = time.monotonic()
        rows, out = self._drop_evictable(rows, out, "disk full")
        if not rows:
            return []
        need = sum(len(r[6]) + _ROW_OVERHEAD for r in rows) + 8 * self._page_size
        error: sqlite3.Error = exc
        for attempt in range(_FULL_RETRIES):
            self._free_disk(need * (4 ** attempt))
            try:
                self._insert(rows)
                self._checkpoint(truncate=True)
                return out
            except sqlite3.Error as exc2:
                self._rollback()
                error = exc2
                if not _is_disk_full(exc2):
                    break
        pending = [PendingEvent(r[0], Priority(r[2]), r[6], r[1]) for r in rows]
        raise StoreFullError(
            f"disk full: cannot store {len(rows)} alarm/warning events: {error}",
            rows=pending) from error

    def _drop_evictable(self, rows: list[_Row], out: list[Event],
                        why: str) -> tuple[list[_Row], list[Event]]:
        keep = [i for i, e in enumerate(out) if e.priority not in _EVICTABLE]
        if len(keep) == len(out):
            return rows, out
        for e in out:
            if e.priority in _EVICTABLE:
                self.dropped[e.priority.label] += 1
        log.warning("%s: dropped %d telemetry/info events (alarms and warnings are kept)",
                    why, len(out) - len(keep))
        return [rows[i] for i in keep], [out[i] for i in keep]

    def _free_disk(self, need: int) -> None:
        """Give back disk space, least valuable first: the reserve, stores moved aside
        after corruption (already salvaged), the WAL, then evictable rows."""
        if self._reserve.release():
            self._apply_wal_limit()
        for old in recovery.moved_aside_files(self.path):
            try:
                size = file_size(old)
                old.unlink()
                log.critical("disk full: deleted %s (%d bytes), a store moved aside earlier",
                             old, size)
            except OSError as exc:
                log.error("disk full: cannot delete %s: %s", old, exc)
        self._checkpoint(truncate=True)
        try:
            self._evict(need)
        except sqlite3.Error as exc:
            self._rollback()
            log.error("disk full: cannot evict: %s", exc)
        self._checkpoint(truncate=True)

    def _leave_degraded(self) -> bool:
        """While degraded, look (at most every few seconds) whether space has returned."""
        now = time.monotonic()
        if now - self._degraded_checked < _DEGRADED_CHECK_S:
            return False
        self._degraded_checked = now
        return self.maintain()

    def maintain(self) -> bool:
        """Re-arm the reserve and leave the degraded state once the disk has room again
        (called by the agent every few seconds and on every append while degraded).
        Returns True when the store is back to normal."""
        if self._db is None:
            return not self.degraded
        free = disk_free(self.path.parent)
        size = self._reserve.size
        room = size + 2 * wal_limit(self.max_bytes, size)
        if free is not None and free < room + (0 if self._reserve.armed else size):
            return not self.degraded
        was_armed = self._reserve.armed
        if not self._reserve.arm():
            return not self.degraded
        if not was_armed:
            self._apply_wal_limit()
        if self.degraded:
            log.warning("disk space returned (%s bytes free): storing all events again, the"
                        " reserve is re-armed", free)
            self.degraded = False
        return True

    def _checkpoint(self, truncate: bool = False) -> None:
        try:
            self.db.execute(f"PRAGMA wal_checkpoint({'TRUNCATE' if truncate else 'PASSIVE'})")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)

    def _serialise(self, events: Sequence[Event]) -> tuple[list[_Row], list[Event]]:
        """Assign seqs and serialise once: every retry sends these very bytes. The seqs are
        used up here, before anything is written: a failed commit leaves a gap."""
        out: list[Event] = []
        rows: list[_Row] = []
        seq = self._next_seq
        for e in events:
            stored = replace(e, seq=seq)
            payload = json.dumps(stored.to_json_dict(self.hub_id), separators=(",", ":")).encode()
            rows.append((seq, e.id, int(e.priority), e.type, e.device_id, e.wall, payload))
            out.append(stored)
            seq += 1
        self._next_seq = seq
        # Durable before the early send can put any of these seqs on the wire.
        self._floor.reserve(seq - 1)
        return rows, out

    def _insert(self, rows: list[_Row],
                before_commit: Callable[[list[PendingEvent]], None] | None = None) -> None:
        if not rows:
            return
        if before_commit is not None:
            before_commit([PendingEvent(r[0], Priority(r[2]), r[6], r[1]) for r in rows])
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        self._floor.committed(rows[-1][0])
        if file_size(self.wal_path) > self._wal_limit():
            # A big batch grew the WAL past its limit; the autocheckpoint has copied it back,
            # but SQLite would shrink the file only at the next write.
            self._checkpoint(truncate=True)

    def used_bytes(self) -> int:
        """Bytes the store occupies: live pages of the database (freed pages are reused, so
        not counted) plus the WAL, where every write lands before a checkpoint."""
        page_count = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((page_count - free) * self._page_size) + file_size(self.wal_path)

    def _make_room(self, rows: list[_Row], out: list[Event]) -> tuple[list[_Row], list[Event]]:
        """Keep the store within budget: fold the WAL back, then evict old
        telemetry/history/info; if the batch itself is too big, drop its own oldest
        telemetry. Alarms and warnings always pass."""
        incoming = sum(len(r[6]) + _ROW_OVERHEAD for r in rows)
        self._bytes_since_check += incoming
        # The WAL may hold up to its limit beside the database's own pages.
        budget = self.max_bytes - self.reserve_bytes - self._wal_limit()
        if self._bytes_since_check < _CHECK_EVERY_BYTES and incoming < budget // 8:
            return rows, out
        self._bytes_since_check = 0
        used = self.used_bytes() + incoming
        if used <= budget:
            return rows, out
        self._checkpoint(truncate=True)
        used = self.used_bytes() + incoming
        if used <= budget:
            return rows, out
        # Free down to 95 % of the budget so eviction runs in batches, not per insert.
        try:
            deficit = self._evict(used - int(budget * 0.95))
        except sqlite3.Error as exc:
            self._rollback()
            log.error("event store over budget and eviction failed: %s", exc)
            deficit = used - budget
        if deficit <= 0:
            return rows, out
        keep_rows: list[_Row] = []
        keep_out: list[Event] = []
        dropped = 0
        for row, ev in zip(rows, out, strict=False):
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
        """Up to ``limit`` pending events, alarms first, each priority past its cursor.
        Rows that fail :func:`check_row` are quarantined and reported, never returned."""
        out: list[PendingEvent] = []
        db = self.db
        for prio in Priority:
            if len(out) >= limit:
                break
            rows = db.execute(
                "SELECT seq, id, prio, payload FROM events WHERE prio=? AND seq>? ORDER BY seq"
                " LIMIT ?", (int(prio), after.get(prio, 0), limit - len(out)),
            ).fetchall()
            out.extend(self._checked(rows))
        return out

    def pending_by_seq(self, seqs: Sequence[int]) -> list[PendingEvent]:
        """Those of ``seqs`` still pending (not acknowledged), in seq order; damaged rows
        are quarantined and left out, as in :meth:`next_batch`."""
        out: list[PendingEvent] = []
        db = self.db
        wanted = sorted(set(seqs))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"SELECT seq, id, prio, payload FROM events WHERE seq IN ({marks})"
                              " ORDER BY seq", chunk).fetchall()
            out.extend(self._checked(rows))
        return out

    def _checked(self, rows: Iterable[tuple[int, str, int, bytes]]) -> list[PendingEvent]:
        """``(seq, id, prio, payload)`` rows as pending events; a row that fails
        :func:`check_row` is quarantined and reported, never returned."""
        out: list[PendingEvent] = []
        for seq, event_id, prio, payload in rows:
            why = check_row(seq, event_id, int(prio), payload)
            if why is None:
                out.append(PendingEvent(seq, Priority(prio), payload, event_id))
            else:
                self._quarantine(seq, why)
        return out

    def _quarantine(self, seq: int, why: str) -> None:
        """Move a damaged row out of ``events`` (into ``damaged``) and report it."""
        row = self.db.execute("SELECT seq, id, prio, type, device_id, wall, payload"
                              " FROM events WHERE seq=?", (seq,)).fetchone()
        if row is None:
            return
        log.error("event store row seq %s is damaged (%s): not published; reported as"
                  " store_damaged_row", seq, why)
        try:
            write_many(self.db, [
                ("INSERT INTO damaged VALUES (?,?,?,?,?,?,?,?,?)", (*row, why, time.time())),
                ("DELETE FROM events WHERE seq=?", (seq,)),
            ])
        except sqlite3.Error as exc:
            log.error("cannot quarantine damaged row seq %s: %s", seq, exc)
        _seq, event_id, prio, etype, device_id, wall, payload = row
        self._notice("store_damaged_row", damaged_row_data(seq, event_id, prio, etype, device_id,
                                                           wall, payload, why))

    def pending_alarms(self, exclude_escalated: bool = True) -> list[dict[str, Any]]:
        """Alarms still waiting for the broker, as published (oldest first). With
        ``exclude_escalated``, alarms an ``alarm_escalated`` record names are left out.
        Damaged rows are left out (the uplink quarantines and reports them)."""
        rows = self.db.execute(
            "SELECT seq, id, payload FROM events WHERE prio=? ORDER BY seq",
            (int(Priority.ALARM),)).fetchall()
        done: set[str] = set()
        if exclude_escalated:
            for table in ("events", "delivered"):
                try:
                    found = self.db.execute(
                        "SELECT json_extract(CAST(payload AS TEXT), '$.data.event_id') FROM "
                        f"{table} WHERE type='alarm_escalated' AND json_valid(payload)"
                    ).fetchall()
                except sqlite3.Error as exc:
                    log.error("cannot read escalation records from %s: %s", table, exc)
                    continue
                done.update(str(r[0]) for r in found if r[0] is not None)
        out = []
        for seq, event_id, payload in rows:
            if check_row(seq, event_id, int(Priority.ALARM), payload) is not None:
                continue
            doc = json.loads(payload)
            if doc.get("id") not in done:
                out.append(doc)
        return out

    def has_pending(self, priority: Priority, after_seq: int,
                    exclude: Iterable[int] = ()) -> bool:
        """Whether an event of ``priority`` with seq above ``after_seq`` (and not in
        ``exclude``) is waiting."""
        skip = set(exclude)
        rows = self.db.execute(
            "SELECT seq FROM events WHERE prio=? AND seq>? ORDER BY seq LIMIT ?",
            (int(priority), after_seq, len(skip) + 1)).fetchall()
        return any(r[0] not in skip for r in rows)

    def ack(self, seqs: Sequence[int], acked_wall: float | None = None) -> None:
        """The broker has these: move non-telemetry to history, delete the rest."""
        if not seqs:
            return
        acked_wall = time.time() if acked_wall is None else acked_wall
        for attempt in range(2):
            try:
                self._ack_once(seqs, acked_wall)
                if self.degraded:
                    self._checkpoint(truncate=True)
                return
            except sqlite3.Error as exc:
                self._rollback()
                if attempt == 0 and _is_disk_full(exc):
                    self._free_disk(len(seqs) * _ROW_OVERHEAD + 8 * self._page_size)
                    continue
                # The events stay pending and will be sent again: at least once, never lost.
                log.error("cannot record acknowledgement of %d events: %s", len(seqs), exc)
                return

    def _ack_once(self, seqs: Sequence[int], acked_wall: float) -> None:
        db = self.db
        # Losing an acknowledgement to a power cut only means sending the event again, so
        # this transaction skips the fsync that inserts must pay.
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
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
        finally:
            self._rollback()
            db.execute("PRAGMA synchronous=FULL")

    def prune_history(self, now_wall: float | None = None) -> int:
        if self.keep_history_days <= 0:
            return 0
        cutoff = (time.time() if now_wall is None else now_wall) - self.keep_history_days * 86400
        cur = self.db.execute("DELETE FROM delivered WHERE wall < ?", (cutoff,))
        self.maintain()
        return cur.rowcount

    def backlog(self) -> Backlog:
        return backlog_of(self.db)

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def pending_urgent(self) -> list[tuple[str, int, Priority]]:
        """(id, seq, priority) of every stored, unacknowledged event above telemetry."""
        return [(str(event_id), int(seq), Priority(prio)) for event_id, seq, prio in
                self.db.execute("SELECT id, seq, prio FROM events WHERE prio < ?",
                                (int(Priority.TELEMETRY),))]

    def last_wall_of(self, device_id: str) -> float | None:
        """Wall time of the newest event from ``device_id`` held (pending or delivered)."""
        row = self.db.execute(
            "SELECT max(w) FROM (SELECT max(wall) AS w FROM delivered WHERE device_id = ?"
            " UNION ALL SELECT max(wall) FROM events WHERE device_id = ?)",
            (device_id, device_id),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def component_state(self, component: str) -> SqliteComponentState:
        """``component``'s own table beside the events (see ``component_state.py``)."""
        from agent.store.component_state import SqliteComponentState

        return SqliteComponentState(self.db, component)

    def arc_delivery(self) -> SqliteArcDeliveryStore:
        """The ARC path's delivery rows beside the events (see ``arc_delivery.py``); the
        table is made on first use. Raises :class:`StoreError` when it cannot be."""
        from agent.store.arc_delivery import SqliteArcDeliveryStore

        try:
            return SqliteArcDeliveryStore(self.db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot make the ARC delivery table: {exc}") from exc

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
