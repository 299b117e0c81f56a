"""The ingester's database port: the same assertions against SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest

from agent.ingest.db import NOTIFY_CHANNEL, open_db
from agent.ingest.records import EventRecord, Rejected, StatusRecord, parse
from agent.model import Event, Priority, iso_utc


def event_msg(hub: str, n: int, priority: Priority = Priority.INFO, type_: str = "motion",
              data: dict | None = None, ts_wall: float | None = None) -> tuple[str, bytes]:
    ev = Event(id=f"{hub}-ev-{n}", type=type_, priority=priority, device_id="pir-1",
               mono=0.0, wall=ts_wall if ts_wall is not None else 1_790_000_000.0 + n,
               clock_synced=True, data=data or {"n": n}, seq=n)
    return f"tec/v1/{hub}/event", json.dumps(ev.to_json_dict(hub)).encode()


def rec(topic_payload: tuple[str, bytes]):
    return parse(*topic_payload, received_at=time.time())


def status(hub: str, state: str, ts: str, reason: str | None = None):
    doc = {"state": state, "hub_id": hub, "version": "0.1.0", "ts": ts}
    if reason:
        doc["reason"] = reason
    return parse(f"tec/v1/{hub}/status", json.dumps(doc).encode(), time.time())


def test_events_are_stored_once_and_duplicates_counted(ingest_db_url: str) -> None:
    db = open_db(ingest_db_url)
    try:
        first = db.commit([rec(event_msg("hub-a", n)) for n in range(5)])
        assert (first.inserted, first.duplicates) == (5, 0)
        # Redelivery of two of them, one twice in the same batch, plus one new one.
        again = db.commit([rec(event_msg("hub-a", 1)), rec(event_msg("hub-a", 3)),
                           rec(event_msg("hub-a", 3)), rec(event_msg("hub-a", 5))])
        assert (again.inserted, again.duplicates) == (1, 3)
        # The same event id from another hub is another event.
        other = db.commit([rec(event_msg("hub-b", 1))])
        assert (other.inserted, other.duplicates) == (1, 0)
        assert db.event_count() == 7
        hubs = {h.hub_id: h for h in db.hubs()}
        assert (hubs["hub-a"].events, hubs["hub-a"].duplicates) == (6, 3)
        assert hubs["hub-a"].last_event_type == "motion"
        assert hubs["hub-a"].last_event_ts == iso_utc(1_790_000_000.0 + 5)
    finally:
        db.close()


def test_alarms_returned_only_when_new(ingest_db_url: str) -> None:
    db = open_db(ingest_db_url)
    try:
        res = db.commit([rec(event_msg("hub-a", 1, Priority.ALARM, "pull_cord")),
                         rec(event_msg("hub-a", 2))])
        assert [a.id for a in res.alarms] == ["hub-a-ev-1"]
        assert db.commit([rec(event_msg("hub-a", 1, Priority.ALARM, "pull_cord"))]).alarms == ()
    finally:
        db.close()


def test_status_newer_wins_and_device_state(ingest_db_url: str) -> None:
    db = open_db(ingest_db_url)
    try:
        db.commit([status("hub-a", "online", "2026-12-01T10:00:00.000Z")])
        # An older retained status arriving late must not overwrite the newer one.
        db.commit([status("hub-a", "offline", "2026-12-01T09:00:00.000Z", "connection lost")])
        (hub,) = db.hubs()
        assert (hub.state, hub.status_ts, hub.version) == ("online", "2026-12-01T10:00:00.000Z",
                                                           "0.1.0")
        db.commit([status("hub-a", "offline", "2026-12-01T11:00:00.000Z", "connection lost")])
        (hub,) = db.hubs()
        assert (hub.state, hub.reason) == ("offline", "connection lost")
        dev = {"kind": "ble", "last_seen": None, "battery": 12.0, "rssi": -70, "online": False}
        db.commit([parse("tec/v1/hub-a/device/pendant-1", json.dumps(dev).encode(), time.time())])
        dev["online"] = True
        db.commit([parse("tec/v1/hub-a/device/pendant-1", json.dumps(dev).encode(), time.time())])
        (d,) = db.devices()
        assert (d.hub_id, d.device_id, d.online, d.battery) == ("hub-a", "pendant-1", True, 12.0)
    finally:
        db.close()


def test_backlog_from_daily_summary(ingest_db_url: str) -> None:
    db = open_db(ingest_db_url)
    try:
        backlog = {"alarm": 0, "warning": 1, "info": 2, "telemetry": 40, "total": 43,
                   "oldest_age_s": 12.5}
        db.commit([rec(event_msg("hub-a", 1, type_="summary", data={"backlog": backlog}))])
        db.commit([rec(event_msg("hub-a", 2))])
        (hub,) = db.hubs()
        assert hub.backlog == backlog
        assert hub.last_event_type == "motion"
    finally:
        db.close()


def test_malformed_and_foreign_messages_are_kept_as_rejected(ingest_db_url: str) -> None:
    db = open_db(ingest_db_url)
    try:
        topic, payload = event_msg("hub-b", 1)
        spoof = parse("tec/v1/hub-a/event", payload, time.time())  # hub-b's event on hub-a
        junk = parse("tec/v1/hub-a/event", b"{not json", time.time())
        assert isinstance(spoof, Rejected) and isinstance(junk, Rejected)
        res = db.commit([spoof, junk])
        assert (res.inserted, res.rejected) == (0, 2)
        assert db.event_count() == 0
    finally:
        db.close()


def test_records_parse_with_a_tenant_prefix() -> None:
    topic, payload = event_msg("hub-a", 1)
    r = parse("council-a/" + topic, payload, 0.0, prefix="council-a")
    assert isinstance(r, EventRecord) and r.hub_id == "hub-a"
    # Without the prefix configured, the tenant's topic is not ours.
    assert isinstance(parse("council-a/" + topic, payload, 0.0), Rejected)
    s = parse("tec/v1/hub-a/status", b'{"state":"online","ts":"x"}', 0.0)
    assert isinstance(s, StatusRecord)


def test_postgres_notify_is_sent_with_the_commit(postgres_url: str) -> None:
    import psycopg

    listener = psycopg.connect(postgres_url, autocommit=True)
    try:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        db = open_db(postgres_url)
        try:
            db.commit([rec(event_msg("hub-a", 1, Priority.ALARM, "pull_cord")),
                       rec(event_msg("hub-a", 2))])
            db.commit([rec(event_msg("hub-a", 1, Priority.ALARM, "pull_cord"))])  # duplicate
            got = [json.loads(n.payload) for n in listener.notifies(timeout=2.0)]
        finally:
            db.close()
        assert [(g["hub_id"], g["id"], g["type"]) for g in got] == [
            ("hub-a", "hub-a-ev-1", "pull_cord")]
    finally:
        listener.close()


def test_bad_url_is_refused() -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="expected sqlite"):
        open_db("mysql://x")
