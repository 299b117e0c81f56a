"""The ingester's database port, and what both backends (SQLite, PostgreSQL) share.

One :meth:`IngestDb.commit` per batch of messages, one transaction: events are inserted
idempotently on ``(hub_id, id)`` (a redelivered or re-sent event is counted as a duplicate,
never stored twice), hub and device state are updated, and only when the transaction has
committed may the caller acknowledge the messages to the broker.

Schema (a contract for the services that read it; ``ts`` fields are the hubs' ISO 8601 UTC
text, ``received_at``/``stored_at``/``last_seen`` the ingester's Unix seconds):

- ``events(hub_id, id, seq, type, priority, device_id, ts, clock_synced, data, received_at,
  stored_at)``, primary key ``(hub_id, id)``; ``data`` is JSON (``jsonb`` on PostgreSQL).
- ``hubs(hub_id, state, status_ts, reason, version, last_event_ts, last_event_type,
  last_seen, backlog, backlog_ts, events, duplicates)``: ``state``/``status_ts`` from the
  hub's ``status`` topic (a newer ``ts`` wins), ``backlog`` from its daily summary event.
- ``devices(hub_id, device_id, doc, online, battery, updated_at)``: the retained device state.
- ``desired_config(hub_id, version, payload, stored_at)``: the newest full config support
  pushed to each hub (``config/set``, signed; the highest version wins), handed to the hub
  on ``config/desired`` when it asks on ``config/request`` with an older version.
- ``rejected(n, topic, payload, reason, received_at)``: messages that could not be stored as
  what their topic says (malformed JSON, a ``hub_id`` other than the topic's), kept for a
  person to look at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from agent.errors import AgentError, ConfigError
from agent.ingest.records import (
    ConfigRequest,
    DesiredConfig,
    DeviceRecord,
    EventRecord,
    Record,
    Rejected,
    StatusRecord,
)

DEFAULT_DB = "sqlite:///./ingest.db"
NOTIFY_CHANNEL = "tec_alarm"  # PostgreSQL LISTEN channel: one NOTIFY per new alarm


class IngestDbError(AgentError, OSError):
    """The database could not commit (connection lost, disk full): nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    inserted: int
    duplicates: int
    rejected: int
    alarms: tuple[EventRecord, ...]  # alarms new in this commit (not duplicates)
    requests: tuple[ConfigRequest, ...] = ()   # hubs asking for their desired config


@dataclass(frozen=True, slots=True)
class HubRow:
    hub_id: str
    state: str | None
    status_ts: str | None
    reason: str | None
    version: str | None
    last_event_ts: str | None
    last_event_type: str | None
    last_seen: float | None
    backlog: dict[str, Any] | None
    backlog_ts: str | None
    events: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class DeviceRow:
    hub_id: str
    device_id: str
    online: bool | None
    battery: float | None


class IngestDb(Protocol):
    """Where the ingester stores; both backends pass the same contract tests."""

    def commit(self, records: Sequence[Record]) -> CommitResult: ...

    def hubs(self) -> list[HubRow]: ...

    def devices(self) -> list[DeviceRow]: ...

    def event_count(self) -> int: ...

    def desired_config(self, hub_id: str) -> tuple[int, bytes] | None: ...

    def event_rows(self, hub_prefix: str) -> list[tuple[str, str, str, str, float]]: ...

    def close(self) -> None: ...


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_db(url: str) -> IngestDb:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``postgresql://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ConfigError(f"--db {url!r}: expected sqlite:///FILE (sqlite:////abs/FILE)")
        from agent.ingest.sqlite_db import SqliteIngestDb

        return SqliteIngestDb(url[len("sqlite:///"):])
    if scheme in ("postgresql", "postgres"):
        try:
            from agent.ingest.postgres_db import PostgresIngestDb
        except ImportError:
            raise ConfigError("--db postgresql://...: psycopg is not installed (pip install "
                              "'psycopg[binary]', or '.[ingest]' in a checkout)") from None
        return PostgresIngestDb(url)
    raise ConfigError(f"--db {redact_url(url)!r}: expected sqlite:///FILE or postgresql://...")


@dataclass
class _HubDelta:
    events: int = 0
    duplicates: int = 0
    last_event: EventRecord | None = None
    last_seen: float | None = None
    summary: EventRecord | None = None

    def saw(self, rec: EventRecord) -> None:
        self.last_seen = max(self.last_seen or 0.0, rec.received_at)


class SqlIngestDb:
    """The commit logic, written once in SQL both SQLite (3.35+) and PostgreSQL accept;
    a backend supplies the connection, the placeholder and the event insert."""

    P = "?"  # placeholder

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _insert_events(self, events: list[EventRecord], now: float) -> set[tuple[str, str]]:
        """Insert with ON CONFLICT DO NOTHING; the keys that were new."""
        raise NotImplementedError

    def _notify(self, alarms: list[EventRecord]) -> None:
        """Tell listeners about new alarms inside the transaction (PostgreSQL only)."""

    def _apply(self, records: Sequence[Record]) -> CommitResult:
        """The body of one transaction. Rows are written in key order (events by
        ``(hub_id, id)``, hub rows by ``hub_id``) so two ingesters committing at once on
        PostgreSQL take row locks in the same order and do not deadlock."""
        batch = self._sort(records)
        ordered = [batch.events[k] for k in sorted(batch.events)]
        new_keys = self._insert_events(ordered, time.time()) if ordered else set()
        deltas, alarms = _tally(ordered, new_keys, batch.in_batch_dups)
        # One pass over hub rows in hub_id order; a hub's statuses keep their arrival order.
        by_hub: dict[str, list[StatusRecord]] = {}
        for status in batch.statuses:
            by_hub.setdefault(status.hub_id, []).append(status)
        for hub_id in sorted(set(by_hub) | set(deltas)):
            for status in by_hub.get(hub_id, []):
                self._status(status)
            if hub_id in deltas:
                self._hub_delta(hub_id, deltas[hub_id])
        for device in sorted(batch.devices, key=lambda r: (r.hub_id, r.device_id)):
            self._device(device)
        for hub_id in sorted(batch.desired):
            self._desired(batch.desired[hub_id])
        if alarms:
            self._notify(alarms)
        duplicates = sum(d.duplicates for d in deltas.values())
        return CommitResult(len(new_keys), duplicates, batch.rejected, tuple(alarms),
                            tuple(batch.requests))

    def _sort(self, records: Sequence[Record]) -> _Batch:
        """The batch's records by kind (rejected ones are written at once)."""
        batch = _Batch()
        for rec in records:
            if isinstance(rec, EventRecord):
                key = (rec.hub_id, rec.id)
                if key in batch.events:
                    batch.in_batch_dups.append(rec)
                else:
                    batch.events[key] = rec
            elif isinstance(rec, StatusRecord):
                batch.statuses.append(rec)
            elif isinstance(rec, DeviceRecord):
                batch.devices.append(rec)
            elif isinstance(rec, DesiredConfig):
                known = batch.desired.get(rec.hub_id)
                if known is None or rec.version > known.version:
                    batch.desired[rec.hub_id] = rec
            elif isinstance(rec, ConfigRequest):
                batch.requests.append(rec)
            elif isinstance(rec, Rejected):
                batch.rejected += 1
                self._execute(
                    f"INSERT INTO rejected (topic, payload, reason, received_at) "
                    f"VALUES ({self.P}, {self.P}, {self.P}, {self.P})",
                    (rec.topic, rec.payload, rec.reason, rec.received_at))
        return batch

    def _desired(self, rec: DesiredConfig) -> None:
        p = self.P
        self._execute(
            f"INSERT INTO desired_config (hub_id, version, payload, stored_at) "
            f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (hub_id) DO UPDATE SET "
            "version = excluded.version, payload = excluded.payload, "
            "stored_at = excluded.stored_at WHERE excluded.version > desired_config.version",
            (rec.hub_id, rec.version, rec.payload, rec.received_at))

    def _newer(self, col: str, ts_col: str) -> str:
        return (f"{col} = CASE WHEN excluded.{ts_col} IS NOT NULL AND (hubs.{ts_col} IS NULL "
                f"OR excluded.{ts_col} >= hubs.{ts_col}) THEN excluded.{col} ELSE hubs.{col} END")

    def _hub_delta(self, hub_id: str, d: _HubDelta) -> None:
        p = self.P
        last, summary = d.last_event, d.summary
        self._execute(
            "INSERT INTO hubs (hub_id, last_event_ts, last_event_type, last_seen, backlog, "
            f"backlog_ts, events, duplicates) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}) "
            "ON CONFLICT (hub_id) DO UPDATE SET "
            + ", ".join([
                self._newer("last_event_type", "last_event_ts"),
                self._newer("last_event_ts", "last_event_ts"),
                self._newer("backlog", "backlog_ts"),
                self._newer("backlog_ts", "backlog_ts"),
                "last_seen = CASE WHEN hubs.last_seen IS NULL OR excluded.last_seen > "
                "hubs.last_seen THEN excluded.last_seen ELSE hubs.last_seen END",
                "events = hubs.events + excluded.events",
                "duplicates = hubs.duplicates + excluded.duplicates",
            ]),
            (hub_id, last.ts if last else None, last.type if last else None, d.last_seen,
             json.dumps(summary.backlog()) if summary else None, summary.ts if summary else None,
             d.events, d.duplicates))

    def _status(self, rec: StatusRecord) -> None:
        p = self.P
        self._execute(
            f"INSERT INTO hubs (hub_id, state, status_ts, reason, version, events, duplicates) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, 0, 0) ON CONFLICT (hub_id) DO UPDATE SET "
            "state = excluded.state, status_ts = excluded.status_ts, reason = excluded.reason, "
            "version = COALESCE(excluded.version, hubs.version) "
            "WHERE hubs.status_ts IS NULL OR excluded.status_ts >= hubs.status_ts",
            (rec.hub_id, rec.state, rec.ts, rec.reason, rec.version))

    def _device(self, rec: DeviceRecord) -> None:
        p = self.P
        self._execute(
            f"INSERT INTO hubs (hub_id, events, duplicates) VALUES ({p}, 0, 0) "
            "ON CONFLICT (hub_id) DO NOTHING", (rec.hub_id,))
        self._execute(
            f"INSERT INTO devices (hub_id, device_id, doc, online, battery, updated_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (hub_id, device_id) DO UPDATE "
            "SET doc = excluded.doc, online = excluded.online, battery = excluded.battery, "
            "updated_at = excluded.updated_at",
            (rec.hub_id, rec.device_id, rec.doc, rec.online, rec.battery, rec.received_at))

    # -- reads -------------------------------------------------------------------------------
    def hubs(self) -> list[HubRow]:
        rows = self._execute(
            "SELECT hub_id, state, status_ts, reason, version, last_event_ts, last_event_type, "
            "last_seen, backlog, backlog_ts, events, duplicates FROM hubs ORDER BY hub_id"
        ).fetchall()
        return [HubRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                       json.loads(r[8]) if r[8] else None, r[9], int(r[10]), int(r[11]))
                for r in rows]

    def devices(self) -> list[DeviceRow]:
        rows = self._execute(
            "SELECT hub_id, device_id, online, battery FROM devices ORDER BY hub_id, device_id"
        ).fetchall()
        return [DeviceRow(r[0], r[1], None if r[2] is None else bool(r[2]), r[3]) for r in rows]

    def event_count(self) -> int:
        return int(self._execute("SELECT count(*) FROM events").fetchone()[0])

    def event_rows(self, hub_prefix: str) -> list[tuple[str, str, str, str, float]]:
        """``(hub_id, id, priority, ts, stored_at)`` of the hubs whose id starts with
        ``hub_prefix`` (the fleet simulator's check and latency figures)."""
        rows = self._execute(f"SELECT hub_id, id, priority, ts, stored_at FROM events WHERE "
                             f"hub_id LIKE {self.P}", (hub_prefix + "%",)).fetchall()
        return [(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]

    def desired_config(self, hub_id: str) -> tuple[int, bytes] | None:
        row = self._execute(f"SELECT version, payload FROM desired_config WHERE hub_id = "
                            f"{self.P}", (hub_id,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))


__all__ = ["CommitResult", "DEFAULT_DB", "DeviceRow", "HubRow", "IngestDb", "IngestDbError",
           "NOTIFY_CHANNEL", "open_db", "redact_url"]


@dataclass
class _Batch:
    """One commit's records, sorted by kind."""

    events: dict[tuple[str, str], EventRecord] = field(default_factory=dict)
    in_batch_dups: list[EventRecord] = field(default_factory=list)
    statuses: list[StatusRecord] = field(default_factory=list)
    devices: list[DeviceRecord] = field(default_factory=list)
    desired: dict[str, DesiredConfig] = field(default_factory=dict)
    requests: list[ConfigRequest] = field(default_factory=list)
    rejected: int = 0


def _tally(ordered: Sequence[EventRecord], new_keys: set[tuple[str, str]],
           in_batch_dups: Sequence[EventRecord]) -> tuple[dict[str, _HubDelta],
                                                          list[EventRecord]]:
    """Per hub: events new and repeated, the latest event and daily summary; the new alarms."""
    deltas: dict[str, _HubDelta] = {}
    alarms: list[EventRecord] = []
    for rec in ordered:
        d = deltas.setdefault(rec.hub_id, _HubDelta())
        d.saw(rec)
        if (rec.hub_id, rec.id) not in new_keys:
            d.duplicates += 1
            continue
        d.events += 1
        if d.last_event is None or rec.ts >= d.last_event.ts:
            d.last_event = rec
        if rec.backlog() is not None and (d.summary is None or rec.ts >= d.summary.ts):
            d.summary = rec
        if rec.is_alarm:
            alarms.append(rec)
    for rec in in_batch_dups:
        d = deltas.setdefault(rec.hub_id, _HubDelta())
        d.saw(rec)
        d.duplicates += 1
    return deltas, alarms
