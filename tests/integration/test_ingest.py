"""``tec-agent ingest`` on a real mosquitto, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.ingest.db import open_db
from agent.ingest.mqtt_source import SourceSettings
from agent.model import Event, Priority
from agent.remote.client import BrokerUrl
from tests.harness import (
    AgentRunner,
    InProcessIngester,
    TestBroker,
    agent_cmd,
    make_config,
    release_client,
    wait_until,
)


class FakeHub:
    """A hub's publishing side: real events (the agent's own JSON), QoS 1, retained status."""

    def __init__(self, broker: TestBroker, hub_id: str, prefix: str = "") -> None:
        self.hub_id = hub_id
        self.root = f"{prefix}/tec/v1" if prefix else "tec/v1"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{hub_id}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(broker.username, broker.password)
        self.client.max_inflight_messages_set(100)
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        self.events: list[Event] = []

    def event(self, n: int, priority: Priority = Priority.INFO, type_: str = "motion",
              data: dict | None = None) -> Event:
        ev = Event(type=type_, priority=priority, device_id="pir-1", data=data or {"n": n},
                   clock_synced=True, seq=n)
        self.events.append(ev)
        return ev

    def send(self, ev: Event) -> mqtt.MQTTMessageInfo:
        return self.client.publish(f"{self.root}/{self.hub_id}/event",
                                   json.dumps(ev.to_json_dict(self.hub_id)), qos=1)

    def retained(self, rest: str, doc: dict) -> None:
        self.client.publish(f"{self.root}/{self.hub_id}/{rest}", json.dumps(doc), qos=1,
                            retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)


def settings(broker: TestBroker, client_id: str, prefix: str = "") -> SourceSettings:
    return SourceSettings(BrokerUrl(broker.host, broker.port, broker.username, False),
                          broker.password, client_id, prefix=prefix)


class Running:
    """An in-process ingester on its own thread."""

    def __init__(self, broker: TestBroker, db_url: str, client_id: str = "ingest-1",
                 prefix: str = "", **kw: str) -> None:
        self.alarms: list = []
        s = settings(broker, client_id, prefix)
        self.db = open_db(db_url)
        self.running = InProcessIngester(replace(s, **kw) if kw else s, self.db, prefix=prefix,
                                         on_alarm=self.alarms.extend)
        self.source = self.running.source
        self.ingester = self.running.ingester
        self.reader = open_db(db_url)  # the test's own connection (the ingester's is its thread's)

    def close(self) -> None:
        self.running.close()
        self.db.close()
        self.reader.close()


@pytest.fixture
def hubs(mqtt_broker: TestBroker) -> Iterator[list[FakeHub]]:
    made: list[FakeHub] = []
    yield made
    for h in made:
        h.close()


def test_events_status_and_devices_reach_the_database(mqtt_broker: TestBroker,
                                                      ingest_db_url: str,
                                                      hubs: list[FakeHub]) -> None:
    a, b = FakeHub(mqtt_broker, "hub-a"), FakeHub(mqtt_broker, "hub-b")
    hubs += [a, b]
    # Retained before the ingester exists: it must pick them up on subscribe.
    a.retained("status", {"state": "online", "hub_id": "hub-a", "version": "0.1.0",
                          "ts": "2026-12-05T08:00:00.000Z"})
    a.retained("device/pendant-1", {"kind": "ble", "last_seen": None, "battery": 9.0,
                                    "rssi": -80, "online": False})
    ing = Running(mqtt_broker, ingest_db_url)
    try:
        alarm = a.event(1, Priority.ALARM, "pull_cord")
        sent = [alarm] + [a.event(n) for n in range(2, 50)] + [b.event(n) for n in range(1, 30)]
        for ev in sent:
            (a if ev in a.events else b).send(ev).wait_for_publish(5)
        # At-least-once: the same events again (a hub resending after a lost PUBACK).
        for ev in a.events[:10]:
            a.send(ev).wait_for_publish(5)
        wait_until(lambda: ing.ingester.stats.received >= len(sent) + 12, 15,
                   what="every message ingested")
        db = ing.reader
        assert db.event_count() == len(sent)
        rows = {h.hub_id: h for h in db.hubs()}
        assert (rows["hub-a"].events, rows["hub-a"].duplicates) == (49, 10)
        assert (rows["hub-b"].events, rows["hub-b"].duplicates) == (29, 0)
        assert (rows["hub-a"].state, rows["hub-a"].version) == ("online", "0.1.0")
        assert [(d.device_id, d.online, d.battery) for d in db.devices()] == [
            ("pendant-1", False, 9.0)]
        assert [x.id for x in ing.alarms] == [alarm.id]
        assert ing.ingester.stats.ack_skipped == 0
    finally:
        ing.close()


def test_tenant_prefix_is_followed(mqtt_broker: TestBroker, tmp_path: Path,
                                   hubs: list[FakeHub]) -> None:
    tenant, plain = FakeHub(mqtt_broker, "hub-t", "council-a"), FakeHub(mqtt_broker, "hub-p")
    hubs += [tenant, plain]
    ing = Running(mqtt_broker, f"sqlite:///{tmp_path / 'i.db'}", prefix="council-a")
    try:
        plain.send(plain.event(1)).wait_for_publish(5)
        tenant.send(tenant.event(1)).wait_for_publish(5)
        wait_until(lambda: ing.ingester.stats.received >= 1, 10, what="the tenant's event")
        assert [h.hub_id for h in ing.reader.hubs()] == ["hub-t"]
    finally:
        ing.close()


def test_two_ingesters_of_a_group_share_the_events(mqtt_broker: TestBroker, postgres_url: str,
                                                   hubs: list[FakeHub]) -> None:
    hub = FakeHub(mqtt_broker, "hub-a")
    hubs.append(hub)
    one, two = Running(mqtt_broker, postgres_url, "ingest-1"), \
        Running(mqtt_broker, postgres_url, "ingest-2")
    try:
        infos = [hub.send(hub.event(n)) for n in range(400)]
        for info in infos:
            info.wait_for_publish(10)
        wait_until(lambda: one.reader.event_count() == 400, 20, what="400 events stored")
        # An ingester counts a commit just after it returns: wait for the counts too.
        wait_until(lambda: one.ingester.stats.inserted + two.ingester.stats.inserted >= 400, 5,
                   what="both ingesters' counts")
        got = (one.ingester.stats.inserted, two.ingester.stats.inserted)
        assert sum(got) == 400 and min(got) > 0, got
    finally:
        one.close()
        two.close()


def test_a_real_agent_alarm_reaches_the_database(mqtt_broker: TestBroker, tmp_path: Path,
                                                 ingest_db_url: str) -> None:
    ing = Running(mqtt_broker, ingest_db_url)
    runner = AgentRunner(make_config(tmp_path, mqtt_broker, hub_id="hub-real")).start()
    try:
        runner.call(runner.agent.submit_event,
                    Event(type="pull_cord", priority=Priority.ALARM, device_id="cord-1"))
        wait_until(lambda: any(a.hub_id == "hub-real" for a in ing.alarms), 15,
                   what="the agent's alarm in the database")
        rows = {h.hub_id: h for h in ing.reader.hubs()}
        wait_until(lambda: {h.hub_id: h for h in ing.reader.hubs()}["hub-real"].state == "online",
                   10, what="the hub's status")
        assert rows["hub-real"].last_event_type == "pull_cord"
    finally:
        runner.stop()
        ing.close()


def _spawn(broker: TestBroker, db_url: str, log: Path,
           client_id: str = "ingest-crash") -> subprocess.Popen:
    with log.open("ab") as err:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            agent_cmd("ingest", "--broker", f"mqtt://{broker.username}@{broker.host}:{broker.port}",
                      "--password-file", str(broker.password_file), "--db", db_url,
                      "--client-id", client_id),
            stdout=subprocess.PIPE, stderr=err,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})


@pytest.mark.parametrize("kills", [2])
def test_kill_9_mid_stream_loses_nothing(mqtt_broker: TestBroker, ingest_db_url: str,
                                         tmp_path: Path, hubs: list[FakeHub],
                                         kills: int) -> None:
    total = 3000
    hub = FakeHub(mqtt_broker, "hub-k")
    hubs.append(hub)
    log = tmp_path / "ingest.log"
    proc = _spawn(mqtt_broker, ingest_db_url, log)
    reader = open_db(ingest_db_url)
    try:
        wait_until(lambda: "ingesting" in log.read_text(), 20, what="the ingester to subscribe")
        events = [hub.event(n) for n in range(total)]
        sender = threading.Thread(target=lambda: [hub.send(ev) for ev in events], daemon=True)
        sender.start()
        for k in range(kills):
            floor = (k + 1) * total // (kills + 2)
            wait_until(lambda floor=floor: reader.event_count() >= floor, 30, interval=0.002,
                       what=f"{floor} events stored")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
            proc = _spawn(mqtt_broker, ingest_db_url, log)
        sender.join(30)
        wait_until(lambda: reader.event_count() >= total, 60, what=f"all {total} events stored")
        assert reader.event_count() == total
        (row,) = reader.hubs()
        assert row.events == total
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        reader.close()
    assert proc.returncode == 0, log.read_text()[-2000:]
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["received"] >= stats["inserted"]


def _hubs_cli(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    from agent.cli import main

    assert main(["remote", "hubs", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_remote_hubs_from_the_ingesters_database(mqtt_broker: TestBroker, ingest_db_url: str,
                                                 hubs: list[FakeHub],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = FakeHub(mqtt_broker, "hub-a"), FakeHub(mqtt_broker, "hub-b")
    hubs += [a, b]
    a.retained("status", {"state": "online", "hub_id": "hub-a", "version": "0.1.0",
                          "ts": "2026-12-05T08:00:00.000Z"})
    b.retained("status", {"state": "offline", "hub_id": "hub-b", "version": "0.1.0",
                          "ts": "2026-12-05T07:00:00.000Z", "reason": "connection lost"})
    a.retained("device/pendant-1", {"kind": "ble", "battery": 9.0, "online": False})
    ing = Running(mqtt_broker, ingest_db_url)
    try:
        backlog = {"alarm": 0, "warning": 0, "info": 1, "telemetry": 7, "total": 8,
                   "oldest_age_s": 3.0}
        a.send(a.event(1, type_="summary", data={"backlog": backlog})).wait_for_publish(5)
        wait_until(lambda: len(ing.reader.hubs()) == 2 and ing.reader.event_count() == 1
                   and ing.reader.devices(), 10, what="status, device and summary stored")
        got = {d["hub_id"]: d for d in _hubs_cli(capsys, "--db", ingest_db_url)}
    finally:
        ing.close()
    assert (got["hub-a"]["state"], got["hub-a"]["since"]) == ("online",
                                                              "2026-12-05T08:00:00.000Z")
    assert got["hub-a"]["backlog"] == backlog and got["hub-a"]["last_event_type"] == "summary"
    assert got["hub-a"]["devices_offline"] == ["pendant-1"]
    assert got["hub-a"]["battery_low"] == ["pendant-1"]
    assert (got["hub-b"]["state"], got["hub-b"]["reason"]) == ("offline", "connection lost")


def test_remote_hubs_from_the_broker_with_live_messages(mqtt_broker: TestBroker,
                                                        hubs: list[FakeHub],
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """A hub whose retained status this subscriber does not get (as on a RabbitMQ node that
    does not hold it) is still online from its live events, within --liveness-s."""
    a, quiet = FakeHub(mqtt_broker, "hub-a"), FakeHub(mqtt_broker, "hub-live")
    hubs += [a, quiet]
    a.retained("status", {"state": "online", "hub_id": "hub-a", "version": "0.1.0",
                          "ts": "2026-12-05T08:00:00.000Z"})
    stop = threading.Event()

    def chatter() -> None:
        n = 0
        while not stop.wait(0.1):
            quiet.send(quiet.event(n))
            n += 1

    t = threading.Thread(target=chatter, daemon=True)
    t.start()
    try:
        got = {d["hub_id"]: d for d in _hubs_cli(
            capsys, "--broker", f"mqtt://{mqtt_broker.username}@{mqtt_broker.host}:"
                                f"{mqtt_broker.port}",
            "--password-file", str(mqtt_broker.password_file), "--listen", "1.5")}
    finally:
        stop.set()
        t.join(5)
    assert got["hub-a"]["state"] == "online" and got["hub-a"]["version"] == "0.1.0"
    assert got["hub-live"]["state"] == "online"
    assert got["hub-live"]["reason"].startswith("no status")


def test_mqtt_311_without_a_shared_subscription_keeps_its_session(
        mqtt_broker: TestBroker, tmp_path: Path, hubs: list[FakeHub]) -> None:
    """RabbitMQ 3.10's way (packaging/brokers/README.md): MQTT 3.1.1, --group ''. Events sent
    while the ingester is away wait in its session (clean_session false) and arrive."""
    hub = FakeHub(mqtt_broker, "hub-a")
    hubs.append(hub)
    url = f"sqlite:///{tmp_path / 'i.db'}"
    ing = Running(mqtt_broker, url, protocol="3.1.1", group="")
    assert ing.source.subscriptions[0][0] == "tec/v1/+/event"
    try:
        for n in range(50):
            hub.send(hub.event(n)).wait_for_publish(5)
        wait_until(lambda: ing.reader.event_count() == 50, 10, what="50 events")
    finally:
        ing.close()
    for n in range(50, 80):
        hub.send(hub.event(n)).wait_for_publish(5)
    ing = Running(mqtt_broker, url, protocol="3.1.1", group="")
    try:
        wait_until(lambda: ing.reader.event_count() == 80, 10,
                   what="the 30 sent while it was away")
    finally:
        ing.close()


def test_broker_restart_mid_stream_loses_nothing(durable_broker: TestBroker, postgres_url: str,
                                                 hubs: list[FakeHub]) -> None:
    """The broker (persistence on) restarts while events stream: what the ingester had
    received but not acknowledged on the old connection is never acknowledged on the new one
    (its packet ids may name other messages there); the broker resends it, the database
    counts it as a duplicate.

    A plain subscription (`--group ''`): mosquitto forgets a shared one over its restart
    (test_mosquitto_forgets_a_shared_subscription_over_a_restart), and this fake hub has no
    receipts to send again what was dropped (tests/integration/test_receipts.py does). With
    the share group this test raced the fake hub's resend against the ingester's return
    (failed once in CI when the ingester's first reconnect found the broker not yet up)."""
    total = 1500
    hub = FakeHub(durable_broker, "hub-r")
    hubs.append(hub)
    ing = Running(durable_broker, postgres_url, "ingest-restart", group="")
    try:
        events = [hub.event(n) for n in range(total)]
        infos = [hub.send(ev) for ev in events[: total // 2]]
        wait_until(lambda: ing.reader.event_count() >= total // 4, 20, interval=0.002,
                   what="a quarter stored")
        durable_broker.restart()
        wait_until(lambda: ing.source.connected, 20, what="the ingester to reconnect")
        # The fake hub (paho's own thread, 1 s reconnect delay) may come back after the
        # ingester: a publish before that is refused with 'not connected'.
        wait_until(hub.client.is_connected, 20, what="the fake hub to reconnect")
        infos += [hub.send(ev) for ev in events[total // 2:]]
        for info in infos:
            info.wait_for_publish(30)
        wait_until(lambda: ing.reader.event_count() == total, 30, what=f"all {total} stored")
        (row,) = ing.reader.hubs()
        assert row.events == total
    finally:
        ing.close()


def _events_sent_across_a_restart_before_the_ingester_returns(
        broker: TestBroker, url: str, hub: FakeHub, group: str) -> int:
    """20 events stored, the ingester stops, the broker restarts, 20 more are sent (the
    broker acknowledges each to the hub), then the ingester returns with its session."""
    ing = Running(broker, url, "ingest-back", group=group)
    try:
        for n in range(20):
            hub.send(hub.event(n)).wait_for_publish(5)
        wait_until(lambda: ing.reader.event_count() == 20, 10, what="20 events")
    finally:
        ing.close()
    broker.restart()
    wait_until(hub.client.is_connected, 20, what="the fake hub to reconnect")
    for n in range(20, 40):
        hub.send(hub.event(n)).wait_for_publish(10)
    ing = Running(broker, url, "ingest-back", group=group)
    try:
        wait_until(lambda: ing.source.connected, 20, what="the ingester to reconnect")
        # Everything the broker kept for the session arrives well within this.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: ing.reader.event_count() == 40, 5, what="40 events")
        return ing.reader.event_count()
    finally:
        ing.close()


def test_plain_subscription_keeps_what_is_sent_after_a_broker_restart(
        durable_broker: TestBroker, tmp_path: Path, hubs: list[FakeHub]) -> None:
    """`--group ''` (a plain subscription in the ingester's persistent session) is kept in
    mosquitto's persistence: events the hubs send after a broker restart, before the
    ingester is back, wait in its session. The safe way on mosquitto (README, profile)."""
    hub = FakeHub(durable_broker, "hub-p")
    hubs.append(hub)
    got = _events_sent_across_a_restart_before_the_ingester_returns(
        durable_broker, f"sqlite:///{tmp_path / 'i.db'}", hub, group="")
    assert got == 40


def test_mosquitto_forgets_a_shared_subscription_over_a_restart(
        durable_broker: TestBroker, tmp_path: Path, hubs: list[FakeHub]) -> None:
    """A property of mosquitto 2.0.11, pinned so that the documentation stays true: a
    `$share/...` subscription is not restored from its persistence, so what the hubs send
    between the broker's restart and the ingester's return is acknowledged to the hubs and
    dropped (fleet run: 6 of 688 events, all alarms). If this starts to fail, mosquitto
    keeps shared subscriptions now: update packaging/brokers/README.md and README."""
    hub = FakeHub(durable_broker, "hub-s")
    hubs.append(hub)
    got = _events_sent_across_a_restart_before_the_ingester_returns(
        durable_broker, f"sqlite:///{tmp_path / 'i.db'}", hub, group="tec-ingest")
    assert got == 20


def test_one_of_two_ingesters_killed_loses_nothing(mqtt_broker: TestBroker, postgres_url: str,
                                                   tmp_path: Path, hubs: list[FakeHub]) -> None:
    """Two ingesters of one group; one is killed (-9) mid-stream and restarted. mosquitto
    keeps giving the dead one's session its turn of the events; they wait there and arrive
    when it is back (README, "Upstream"): every event stored once."""
    total = 2000
    hub = FakeHub(mqtt_broker, "hub-2")
    hubs.append(hub)
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    procs = [_spawn(mqtt_broker, postgres_url, logs[i], f"ingest-{i}") for i in (0, 1)]
    reader = open_db(postgres_url)
    try:
        for log in logs:
            wait_until(lambda log=log: "ingesting" in log.read_text(), 20,
                       what="both ingesters to subscribe")
        events = [hub.event(n) for n in range(total)]
        sender = threading.Thread(target=lambda: [hub.send(ev) for ev in events], daemon=True)
        sender.start()
        wait_until(lambda: reader.event_count() >= total // 4, 30, interval=0.002,
                   what="a quarter stored")
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(10)
        procs[1].stdout.close()
        sender.join(30)
        procs[1] = _spawn(mqtt_broker, postgres_url, logs[1], "ingest-1")
        wait_until(lambda: reader.event_count() >= total, 60, what=f"all {total} stored")
        assert reader.event_count() == total
        (row,) = reader.hubs()
        assert row.events == total
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=20)
        reader.close()


def test_get_config_without_a_retained_config_names_the_broker_as_a_cause(
        mqtt_broker: TestBroker, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20: on RabbitMQ a hub's retained config/current is only handed out on the node
    that holds it; 'remote management off?' alone sent support the wrong way."""
    from agent.cli import main

    code = main(["remote", "get-config", "--hub", "hub-nowhere", "--broker",
                 f"mqtt://{mqtt_broker.username}@{mqtt_broker.host}:{mqtt_broker.port}",
                 "--password-file", str(mqtt_broker.password_file), "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 3
    assert "remote management is off" in err and "RabbitMQ keeps retained messages per node" \
        in err


def test_database_down_mid_stream_acknowledges_nothing_and_loses_nothing(
        mqtt_broker: TestBroker, hubs: list[FakeHub]) -> None:
    """PostgreSQL stops (immediate, as in a crash) while events stream: commits fail,
    nothing is acknowledged, the batch is retried; once it is back every event is stored."""
    from agent.sim.local_postgres import LocalPostgres

    total = 600
    hub = FakeHub(mqtt_broker, "hub-d")
    hubs.append(hub)
    receipts = mqtt_broker.subscribe("tec/v1/hub-d/receipt")

    def confirmed() -> set[str]:
        return {i for m in receipts.snapshot() for i in json.loads(m.payload)["ids"]}

    with LocalPostgres() as pg:
        url = pg.create_database("ingest")
        ing = Running(mqtt_broker, url, "ingest-dbdown")
        try:
            events = [hub.event(n) for n in range(total)]
            for ev in events[: total // 3]:
                hub.send(ev).wait_for_publish(5)
            wait_until(lambda: ing.reader.event_count() == total // 3, 15, what="a third")
            ing.reader.close()
            pg.stop_now()
            for ev in events[total // 3:]:
                hub.send(ev).wait_for_publish(5)
            wait_until(lambda: ing.ingester.stats.db_errors >= 1, 15, what="a failed commit")
            # Receipts follow commits: none for what the database does not hold.
            wait_until(lambda: len(confirmed()) == total // 3, 10, what="the first receipts")
            assert confirmed() == {ev.id for ev in events[: total // 3]}
            pg.start_again()
            ing.reader = open_db(url)
            wait_until(lambda: ing.reader.event_count() == total, 30, what=f"all {total}")
            wait_until(lambda: ing.ingester.stats.inserted >= total, 5, what="the count")
            assert ing.ingester.stats.inserted == total
            wait_until(lambda: len(confirmed()) == total, 10, what="every receipt")
        finally:
            ing.close()
