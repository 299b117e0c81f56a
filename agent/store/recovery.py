"""What to do when the store's database will not open: wait, refuse, or salvage.

Only real corruption (SQLite says the file is corrupt or not a database, or
``quick_check`` fails) moves a store aside. Another process holding the file's lock is
waited on and then reported; any other error (permissions, I/O) is reported as it is,
and the file is left where it is.

A store moved aside is not given up: :func:`salvage` copies every row that can still be
read, table by table (pending events first), into the fresh database. It reads by rowid
ranges and splits a range that fails in two until the unreadable pages are fenced off, so
one bad page costs only the rows on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.store.rows import check_row, damaged_row_data

log = logging.getLogger(__name__)

_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_FAILED_QUERY_BUDGET = 50_000
_FIRST_TABLES = ("events", "delivered", "meta")


class CorruptStoreError(sqlite3.DatabaseError):
    """``quick_check`` found damage SQLite did not report on its own."""


def classify(exc: sqlite3.Error) -> str:
    """``"busy"`` (another process holds the lock), ``"corrupt"`` or ``"other"``."""
    if isinstance(exc, CorruptStoreError):
        return "corrupt"
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        primary = code & 0xFF
        if primary in _BUSY:
            return "busy"
        if primary in _CORRUPT:
            return "corrupt"
        return "other"
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "busy"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return "corrupt"
    return "other"


def move_aside(path: Path, why: str) -> Path:
    """Rename the database and its WAL/SHM to ``<name>.corrupt-<time>`` (kept for salvage
    and for whoever investigates the card)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(target) + suffix))
    log.error("event store %s is corrupt (%s): moved aside to %s; salvaging what is readable",
              path, why, target)
    return target


def moved_aside_files(path: Path) -> list[Path]:
    """Earlier stores moved aside, oldest first (the disk-full path may delete them)."""
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


@dataclass
class SalvageReport:
    copied: dict[str, int] = field(default_factory=dict)
    pending_alarms: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)
    unreadable_ranges: int = 0
    unreadable_tables: list[str] = field(default_factory=list)
    error: str = ""

    def as_data(self) -> dict[str, Any]:
        return {
            "salvaged_pending": self.copied.get("events", 0),
            "salvaged_pending_alarms": self.pending_alarms,
            "salvaged_history": self.copied.get("delivered", 0),
            "salvaged_other_rows": sum(n for t, n in self.copied.items()
                                       if t not in ("events", "delivered")),
            "damaged_rows": len(self.damaged),
            "unreadable_ranges": self.unreadable_ranges,
            "unreadable_tables": list(self.unreadable_tables),
            **({"salvage_error": self.error} if self.error else {}),
        }


_PROGRESS_EVERY = 5000  # rows (or failed ranges) between progress calls


class _Salvager:
    def __init__(self, src: sqlite3.Connection, dst: sqlite3.Connection,
                 report: SalvageReport,
                 progress: Callable[[int], None] | None = None) -> None:
        self.src = src
        self.dst = dst
        self.report = report
        self.budget = _FAILED_QUERY_BUDGET
        self._progress = progress
        self._done = 0

    def tick(self) -> None:
        """Count a row or a failed range; tell ``progress`` every few thousand (a large
        store on an SD card takes a while, and systemd must not kill the start meanwhile)."""
        self._done += 1
        if self._progress is not None and self._done % _PROGRESS_EVERY == 0:
            self._progress(self._done)

    def tables(self) -> list[tuple[str, str | None]]:
        try:
            rows = self.src.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='table'"
                " AND name NOT LIKE 'sqlite_%'").fetchall()
        except sqlite3.DatabaseError as exc:
            log.error("salvage: the schema of the damaged store is unreadable (%s);"
                      " trying the event tables by name", exc)
            rows = [(t, None) for t in _FIRST_TABLES]
        names = {str(r[0]): r[1] for r in rows}
        order = [t for t in _FIRST_TABLES if t in names]
        order += sorted(t for t in names if t not in _FIRST_TABLES)
        return [(t, names[t]) for t in order]

    def copy_table(self, table: str, sql: str | None,
                   check: Callable[[tuple[Any, ...]], str | None] | None) -> None:
        try:
            if sql:
                # exists already (the store's own tables, or a component's)
                with contextlib.suppress(sqlite3.OperationalError):
                    self.dst.execute(sql)
            cols = [r[1] for r in self.src.execute(f'PRAGMA table_info("{table}")')]
            dst_cols = {r[1] for r in self.dst.execute(f'PRAGMA table_info("{table}")')}
        except sqlite3.DatabaseError as exc:
            log.error("salvage: table %s is unreadable: %s", table, exc)
            self.report.unreadable_tables.append(table)
            return
        cols = [c for c in cols if c in dst_cols]
        if not cols:
            return
        col_sql = ",".join(f'"{c}"' for c in cols)
        select = (f'SELECT rowid,{col_sql} FROM "{table}" WHERE rowid BETWEEN ? AND ?'
                  " ORDER BY rowid")
        insert = (f'INSERT OR IGNORE INTO "{table}"(rowid,{col_sql}) VALUES '
                  f"({','.join('?' * (len(cols) + 1))})")
        lo, hi = self._bounds(table)
        stack = [(lo, hi)]
        n = 0
        self.dst.execute("BEGIN IMMEDIATE")
        try:
            while stack and self.budget > 0:
                a, b = stack.pop()
                last = a - 1
                try:
                    for row in self.src.execute(select, (a, b)):
                        last = row[0]
                        self.tick()
                        why = check(row) if check is not None else None
                        if why is not None:
                            self.report.damaged.append(self._damaged(row, why))
                            continue
                        self.dst.execute(insert, row)
                        n += 1
                except sqlite3.DatabaseError:
                    self.budget -= 1
                    self.tick()
                    a = last + 1
                    if a > b:
                        continue
                    if a == b:
                        self.report.unreadable_ranges += 1
                        continue
                    mid = (a + b) // 2
                    stack.append((mid + 1, b))
                    stack.append((a, mid))
            self.dst.execute("COMMIT")
        except sqlite3.Error:
            if self.dst.in_transaction:
                self.dst.execute("ROLLBACK")
            raise
        if self.budget <= 0:
            log.error("salvage: gave up on table %s after too many unreadable ranges", table)
            self.report.unreadable_tables.append(table)
        self.report.copied[table] = n

    def _bounds(self, table: str) -> tuple[int, int]:
        lo, hi = 1, 2**62
        try:
            row = self.src.execute(f'SELECT min(rowid), max(rowid) FROM "{table}"').fetchone()
            if row[0] is not None:
                lo, hi = int(row[0]), int(row[1])
        except sqlite3.DatabaseError:
            self.budget -= 1
        return lo, hi

    @staticmethod
    def _damaged(row: tuple[Any, ...], why: str) -> dict[str, Any]:
        # events(rowid, seq, id, prio, type, device_id, wall, payload)
        padded = list(row[1:]) + [None] * 7
        seq, event_id, prio, etype, device_id, wall, payload = padded[:7]
        return damaged_row_data(seq, event_id, prio, etype, device_id, wall, payload, why)


def salvage(src_path: Path, dst: sqlite3.Connection,
            connect: Callable[..., sqlite3.Connection] = sqlite3.connect,
            progress: Callable[[int], None] | None = None) -> SalvageReport:
    """Copy every readable row of the damaged database at ``src_path`` into ``dst`` (an
    open store with its schema), events first. Rows of ``events`` whose payload does not
    match the row are not copied but listed in ``report.damaged``. ``progress(n)`` is
    called every few thousand rows read."""
    report = SalvageReport()
    try:
        src = connect(src_path, isolation_level=None, timeout=1.0)
    except sqlite3.Error as exc:
        report.error = str(exc)
        return report
    try:
        with contextlib.suppress(sqlite3.Error):
            src.execute("PRAGMA query_only=1")
        worker = _Salvager(src, dst, report, progress)
        for table, sql in worker.tables():
            check = None
            if table == "events":
                def check(row: tuple[Any, ...]) -> str | None:
                    if len(row) < 8:
                        return "row has missing columns"
                    return check_row(row[1], row[2], row[3], row[7])
            try:
                worker.copy_table(table, sql, check)
            except sqlite3.Error as exc:
                log.error("salvage: could not write table %s into the fresh store: %s",
                          table, exc)
                report.unreadable_tables.append(table)
        with contextlib.suppress(sqlite3.Error):
            report.pending_alarms = int(dst.execute(
                "SELECT count(*) FROM events WHERE prio=0").fetchone()[0])
    finally:
        src.close()
    log.warning("salvage of %s: %s", src_path, report.as_data())
    return report
