"""The embedded backend: one SQLite file in WAL mode, ``synchronous=FULL`` (a commit that
returned is on disk before the broker hears the acknowledgement)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.ingest.db import CommitResult, IngestDbError, SqlIngestDb
from agent.ingest.records import EventRecord, Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    hub_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, type TEXT NOT NULL,
    priority TEXT NOT NULL, device_id TEXT, ts TEXT NOT NULL, clock_synced BOOLEAN NOT NULL,
    data TEXT NOT NULL, received_at REAL NOT NULL, stored_at REAL NOT NULL,
    PRIMARY KEY (hub_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_priority ON events (priority, received_at);
CREATE TABLE IF NOT EXISTS hubs (
    hub_id TEXT PRIMARY KEY, state TEXT, status_ts TEXT, reason TEXT, version TEXT,
    last_event_ts TEXT, last_event_type TEXT, last_seen REAL, backlog TEXT, backlog_ts TEXT,
    events INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS devices (
    hub_id TEXT NOT NULL, device_id TEXT NOT NULL, doc TEXT NOT NULL, online BOOLEAN,
    battery REAL, updated_at REAL NOT NULL, PRIMARY KEY (hub_id, device_id)
);
CREATE TABLE IF NOT EXISTS desired_config (
    hub_id TEXT PRIMARY KEY, version INTEGER NOT NULL, payload BLOB NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    n INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


class SqliteIngestDb(SqlIngestDb):
    P = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            # Opened on one thread, used by the ingester's (one thread at a time).
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise IngestDbError(f"{self.path}: cannot open the ingest database: {exc}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params)

    def _insert_events(self, events: list[EventRecord], now: float) -> set[tuple[str, str]]:
        new: set[tuple[str, str]] = set()
        for e in events:
            cur = self.conn.execute(
                "INSERT INTO events (hub_id, id, seq, type, priority, device_id, ts, "
                "clock_synced, data, received_at, stored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (hub_id, id) DO NOTHING",
                (e.hub_id, e.id, e.seq, e.type, e.priority, e.device_id, e.ts, e.clock_synced,
                 e.data, e.received_at, now))
            if cur.rowcount == 1:
                new.add((e.hub_id, e.id))
        return new

    def commit(self, records: Sequence[Record]) -> CommitResult:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._apply(records)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise IngestDbError(f"{self.path}: commit failed: {exc}") from None

    def close(self) -> None:
        self.conn.close()
