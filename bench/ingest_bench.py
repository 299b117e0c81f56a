"""Ingester benchmark: events per second into PostgreSQL.

- ``ingest_events_per_s``: one ``Ingester`` (MQTT 5 shared subscription, batch commits,
  manual acknowledgement after each commit) draining N real event messages that a private
  mosquitto queued in its persistent session while it was away, into a private PostgreSQL
  (Debian's server, ``fsync=on``): N / (time from the ingester's start to the N-th row
  committed). The queue is filled first so the publishers do not share the 2 cores with it.
  Baseline, same run, same server and rows: a bare loop of single-row
  ``INSERT ... ON CONFLICT DO NOTHING`` statements, each its own transaction (what a naive
  consumer that must not acknowledge before the row is durable does per message), timed on
  the first 3,000 rows.

``ratio`` = value / baseline. Run through ``bench/run`` (or ``bench/run ingest``).
``BENCH_INGEST_N`` sets N (default 20000).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from agent.ingest.db import open_db
from agent.ingest.ingester import Ingester
from agent.ingest.mqtt_source import MqttSource, SourceSettings
from agent.model import Event, Priority
from agent.remote.client import BrokerUrl
from agent.sim.local_broker import LocalBroker
from agent.sim.local_postgres import LocalPostgres
from tests.harness import release_client

N = int(os.environ.get("BENCH_INGEST_N", "20000"))
HUBS = 100
BASELINE_ROWS = 3000


def emit(name: str, value: float, unit: str, baseline: float | None) -> None:
    ratio = round(value / baseline, 3) if baseline else None
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                      "baseline": None if baseline is None else round(baseline, 3),
                      "ratio": ratio}), flush=True)


def payloads() -> list[tuple[str, str]]:
    out = []
    for n in range(N):
        hub = f"hub-{n % HUBS:04d}"
        prio = Priority.ALARM if n % 100 == 0 else Priority.TELEMETRY
        ev = Event(type="motion", priority=prio, device_id="pir-hall",
                   data={"room": "hall", "n": n}, clock_synced=True, seq=n // HUBS)
        out.append((hub, json.dumps(ev.to_json_dict(hub), separators=(",", ":"))))
    return out


def baseline(url: str, rows: list[tuple[str, str]]) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bare (hub_id TEXT, id TEXT, doc JSONB, "
                     "PRIMARY KEY (hub_id, id))")
        # A sample: one fsync'd transaction per row is slow enough that its rate is steady
        # long before N rows.
        docs = [(hub, json.loads(p)["id"], p) for hub, p in rows[:BASELINE_ROWS]]
        t0 = time.perf_counter()
        for hub, ev_id, p in docs:
            conn.execute("INSERT INTO bare VALUES (%s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                         (hub, ev_id, p))
        return len(docs) / (time.perf_counter() - t0)


def source(broker: LocalBroker) -> MqttSource:
    return MqttSource(SourceSettings(BrokerUrl(broker.host, broker.port, broker.username, False),
                                     broker.password, "bench-ingest"))


def fill(broker: LocalBroker, rows: list[tuple[str, str]]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    pub.username_pw_set(broker.username, broker.password)
    pub.max_inflight_messages_set(100)
    pub.connect(broker.host, broker.port, 30)
    pub.loop_start()
    infos = [pub.publish(f"tec/v1/{hub}/event", p, qos=1) for hub, p in rows]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()
    release_client(pub)


def measure(broker: LocalBroker, url: str, rows: list[tuple[str, str]]) -> float:
    # 1. Make the persistent session and its shared subscription, then go away.
    first = source(broker)
    first.start()
    first.stop()
    # 2. Queue N events in that session.
    fill(broker, rows)
    # 3. Drain them.
    db = open_db(url)
    reader = open_db(url)
    src = source(broker)
    ing = Ingester(src, db)
    t0 = time.perf_counter()
    src.start()
    thread = threading.Thread(target=ing.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while ing.stats.inserted < len(rows) and time.monotonic() < deadline:
        time.sleep(0.005)  # a benchmark's poll of a counter, not a test's wait
    elapsed = time.perf_counter() - t0
    ing.stop()
    thread.join(10)
    src.stop()
    stored = reader.event_count()
    db.close()
    reader.close()
    if stored != len(rows):
        raise SystemExit(f"ingest bench: {stored} of {len(rows)} stored")
    return len(rows) / elapsed


def main() -> None:
    rows = payloads()
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres() as pg, \
            LocalBroker(workdir=Path(tmp) / "broker") as broker:
        base = baseline(pg.create_database("bench_bare"), rows)
        value = measure(broker, pg.create_database("bench_ingest"), rows)
    emit("ingest_events_per_s", value, "events/s", base)


if __name__ == "__main__":
    main()
