"""The service backend: PostgreSQL through psycopg 3.

Events of a batch go in with one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
NOTHING RETURNING`` (one round trip per batch, and the keys that were new). Every new alarm
is also sent with ``pg_notify('tec_alarm', ...)`` inside the same transaction: PostgreSQL
delivers a NOTIFY only when its transaction commits, so a response service that
``LISTEN tec_alarm`` hears of an alarm exactly when it is in the table, never before and
never for a duplicate. A lost connection is reopened on the next commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from agent.ingest.db import NOTIFY_CHANNEL, CommitResult, IngestDbError, SqlIngestDb, redact_url
from agent.ingest.records import EventRecord, Record

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        hub_id TEXT NOT NULL, id TEXT NOT NULL, seq BIGINT, type TEXT NOT NULL,
        priority TEXT NOT NULL, device_id TEXT, ts TEXT NOT NULL, clock_synced BOOLEAN NOT NULL,
        data JSONB NOT NULL, received_at DOUBLE PRECISION NOT NULL,
        stored_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (hub_id, id))""",
    "CREATE INDEX IF NOT EXISTS events_by_priority ON events (priority, received_at)",
    """CREATE TABLE IF NOT EXISTS hubs (
        hub_id TEXT PRIMARY KEY, state TEXT, status_ts TEXT, reason TEXT, version TEXT,
        last_event_ts TEXT, last_event_type TEXT, last_seen DOUBLE PRECISION, backlog TEXT,
        backlog_ts TEXT, events BIGINT NOT NULL DEFAULT 0,
        duplicates BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS devices (
        hub_id TEXT NOT NULL, device_id TEXT NOT NULL, doc TEXT NOT NULL, online BOOLEAN,
        battery DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (hub_id, device_id))""",
    """CREATE TABLE IF NOT EXISTS desired_config (
        hub_id TEXT PRIMARY KEY, version BIGINT NOT NULL, payload BYTEA NOT NULL,
        stored_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected (
        n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, topic TEXT NOT NULL,
        payload BYTEA NOT NULL, reason TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL)""",
]

INSERT_EVENTS = """
INSERT INTO events (hub_id, id, seq, type, priority, device_id, ts, clock_synced, data,
                    received_at, stored_at)
SELECT h, i, s, t, p, d, ts, c, j::jsonb, r, %s
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[],
            %s::text[], %s::boolean[], %s::text[], %s::float8[]) AS x(h, i, s, t, p, d, ts, c, j, r)
ON CONFLICT (hub_id, id) DO NOTHING
RETURNING hub_id, id
"""


class PostgresIngestDb(SqlIngestDb):
    P = "%s"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact_url(url)
        self.conn: psycopg.Connection[Any] | None = None
        self._connect()
        assert self.conn is not None
        try:
            with self.conn.transaction():
                # Two ingesters starting at once would race on CREATE TABLE IF NOT EXISTS.
                self.conn.execute("SELECT pg_advisory_xact_lock(7265620)")
                for stmt in SCHEMA:
                    self.conn.execute(stmt)
        except psycopg.Error as exc:
            raise IngestDbError(f"{self.where}: cannot create the schema: {exc}") from None

    def _connect(self) -> None:
        try:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise IngestDbError(f"{self.where}: cannot connect: {exc}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        assert self.conn is not None
        return self.conn.execute(sql, params)

    def _insert_events(self, events: list[EventRecord], now: float) -> set[tuple[str, str]]:
        cols: list[list[Any]] = [[] for _ in range(10)]
        for e in events:
            for col, value in zip(cols, (e.hub_id, e.id, e.seq, e.type, e.priority, e.device_id,
                                         e.ts, e.clock_synced, e.data, e.received_at), strict=True):
                col.append(value)
        rows = self._execute(INSERT_EVENTS, (now, *cols)).fetchall()
        return {(r[0], r[1]) for r in rows}

    def _notify(self, alarms: list[EventRecord]) -> None:
        for a in alarms:
            self._execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, json.dumps(a.notice())))

    def commit(self, records: Sequence[Record]) -> CommitResult:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self._connect()
        assert self.conn is not None
        try:
            with self.conn.transaction():
                return self._apply(records)
        except psycopg.Error as exc:
            if self.conn.broken:
                self.conn.close()
            raise IngestDbError(f"{self.where}: commit failed: {exc}") from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
