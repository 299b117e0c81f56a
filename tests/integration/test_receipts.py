"""End-to-end receipts (``mqtt.receipts``): an event leaves the hub's store only when the
service's ingester has committed it, and what a broker acknowledged but dropped is sent
again. Real agents, a real mosquitto (with persistence, restarted), the real ingester."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.model import Event, Priority
from tests.harness import AgentRunner, TestBroker, make_config, publish_once, wait_until
from tests.integration.test_ingest import Running


def _config(tmp_path: Path, broker: TestBroker, hub_id: str, mode: str):
    cfg = make_config(tmp_path, broker, hub_id=hub_id)
    return replace(cfg, mqtt=replace(cfg.mqtt, receipts=mode, receipt_timeout_s=5.0))


def _backlog(runner: AgentRunner) -> int:
    """Alarms in the hub's store (the agent's own start-up events are not the test's)."""
    return runner.call(lambda: runner.agent.store_figures().backlog_counts.get("alarm", 0))


def _alarm(runner: AgentRunner, n: int) -> str:
    ev = Event(type="pull_cord", priority=Priority.ALARM, device_id="cord-1", data={"n": n})
    runner.call(runner.agent.submit_event, ev)
    return ev.id


def _ids_in(ing: Running, hub_id: str) -> set[str]:
    return {r[1] for r in ing.reader.event_rows(hub_id) if r[2] == "alarm"}


def _alarms_across_a_restart(broker: TestBroker, tmp_path: Path, mode: str,
                             settle_s: float) -> tuple[set[str], set[str], AgentRunner]:
    """One alarm stored by the ingester (shared subscription), the ingester stops, the
    broker restarts (mosquitto forgets the $share subscription), the hub raises 5 alarms the
    broker acknowledges, the ingester comes back. Returns (ids sent, ids in the database)."""
    url = f"sqlite:///{tmp_path / 'ingest.db'}"
    hub = f"hub-rc-{mode}"
    runner = AgentRunner(_config(tmp_path, broker, hub, mode)).start()
    sent = set()
    try:
        ing = Running(broker, url, "ingest-rc", group="tec-ingest")
        try:
            sent.add(_alarm(runner, 0))
            wait_until(lambda: _ids_in(ing, hub) == sent, 15, what="the first alarm stored")
            wait_until(lambda: _backlog(runner) == 0, 10, what="the hub's store to empty")
        finally:
            ing.close()
        broker.restart()
        wait_until(lambda: runner.agent.uplink.connects >= 2, 20, what="the hub to reconnect")
        acked = runner.agent.uplink.acked
        for n in range(1, 6):
            sent.add(_alarm(runner, n))
        # The broker has them: five PUBACKs (receipts on: they are not yet "acked").
        wait_until(lambda: runner.agent.uplink.inflight == 0, 10, what="5 PUBACKs")
        assert mode == "on" or runner.agent.uplink.acked == acked + 5
        ing = Running(broker, url, "ingest-rc", group="tec-ingest")
        try:
            wait_until(lambda: ing.source.connected, 20, what="the ingester back")
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline and _ids_in(ing, hub) != sent:
                time.sleep(0.05)
            return sent, _ids_in(ing, hub), runner
        finally:
            ing.close()
    except BaseException:
        runner.stop()
        raise


def test_what_a_broker_restart_dropped_is_sent_again_and_stored(
        durable_broker: TestBroker, tmp_path: Path) -> None:
    """The fleet run's loss (mosquitto + shared subscription + broker restart), closed:
    the hub holds each alarm until the ingester's receipt and sends it again after
    receipt_timeout_s, so all six reach the database and the hub's store empties."""
    sent, stored, runner = _alarms_across_a_restart(durable_broker, tmp_path, "on", 30.0)
    try:
        assert stored == sent
        assert runner.agent.uplink.resent >= 5
        wait_until(lambda: _backlog(runner) == 0, 15, what="receipts to empty the hub's store")
        assert runner.agent.uplink.awaiting_receipt == 0
    finally:
        runner.stop()


def test_without_receipts_the_same_restart_loses_the_alarms(
        durable_broker: TestBroker, tmp_path: Path) -> None:
    """The counterfactual the test above rests on (mqtt.receipts = off, PUBACK final):
    mosquitto 2.0.11 drops the five, and the hub has already let them go."""
    sent, stored, runner = _alarms_across_a_restart(durable_broker, tmp_path, "off", 8.0)
    try:
        assert len(sent) == 6
        assert len(stored) == 1
        assert _backlog(runner) == 0
    finally:
        runner.stop()


def test_an_event_waits_in_the_store_for_its_receipt_and_is_sent_again(
        mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """No ingester: the broker acknowledges, the event stays stored and goes out again
    (same id) after receipt_timeout_s; a receipt naming it lets it go."""
    hub = "hub-wait"
    events = mqtt_broker.subscribe(f"tec/v1/{hub}/event")
    runner = AgentRunner(_config(tmp_path, mqtt_broker, hub, "on")).start()
    try:
        event_id = _alarm(runner, 1)
        events.wait_events(1)
        wait_until(lambda: runner.agent.uplink.inflight == 0, 10, what="the PUBACK")
        assert _backlog(runner) == 1
        assert runner.agent.uplink.awaiting_receipt == 1
        assert events.wait_for(lambda msgs: len(msgs) >= 2, 15)
        copies = events.snapshot()
        assert {json.loads(m.payload)["id"] for m in copies} == {event_id}
        publish_receipt(mqtt_broker, hub, [event_id])
        wait_until(lambda: _backlog(runner) == 0, 10, what="the receipt to free the event")
        assert runner.agent.uplink.receipted == 1
    finally:
        runner.stop()


def test_auto_switches_on_at_the_first_receipt_and_remembers_it_over_a_restart(
        mqtt_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hub = "hub-auto"
    cfg = _config(tmp_path, mqtt_broker, hub, "auto")
    runner = AgentRunner(cfg).start()
    try:
        assert runner.agent.uplink.receipts_on is False
        _alarm(runner, 1)
        wait_until(lambda: _backlog(runner) == 0, 10, what="PUBACK final before any receipt")
        with caplog.at_level(logging.WARNING, logger="agent.uplink.delivery"):
            publish_receipt(mqtt_broker, hub, payload=b"{not json")
            wait_until(lambda: "malformed receipt" in caplog.text, 10, what="the warning")
        assert runner.agent.uplink.receipts_on is False
        publish_receipt(mqtt_broker, hub, ["not-one-of-ours"])
        wait_until(lambda: runner.agent.uplink.receipts_on, 10, what="receipts switched on")
        _alarm(runner, 2)
        wait_until(lambda: runner.agent.uplink.awaiting_receipt == 1, 10,
                   what="the alarm waiting for its receipt")
        assert _backlog(runner) == 1
    finally:
        runner.stop()
    runner = AgentRunner(cfg).start()
    try:
        assert runner.agent.uplink.receipts_on is True
        assert _backlog(runner) == 1      # still held: sent again at start
    finally:
        runner.stop()


def test_the_ingester_confirms_new_duplicate_and_malformed_events(
        mqtt_broker: TestBroker, tmp_path: Path) -> None:
    """Receipts name every event the commit holds: new, duplicate, and a malformed one kept
    in 'rejected' (else its hub would send it for ever)."""
    from tests.integration.test_ingest import FakeHub

    receipts = mqtt_broker.subscribe("tec/v1/+/receipt")
    ing = Running(mqtt_broker, f"sqlite:///{tmp_path / 'i.db'}")
    hub = FakeHub(mqtt_broker, "hub-r")
    try:
        ev = hub.event(1)
        hub.send(ev).wait_for_publish(5)
        hub.send(ev).wait_for_publish(5)
        hub.client.publish("tec/v1/hub-r/event",
                           json.dumps({"id": "bad-1", "hub_id": "someone-else"}),
                           qos=1).wait_for_publish(5)
        assert receipts.wait_for(
            lambda msgs: sum(len(json.loads(m.payload)["ids"]) for m in msgs) >= 3, 10)
        got = receipts.snapshot()
        ids = [i for m in got for i in json.loads(m.payload)["ids"]]
        assert sorted(ids) == sorted([ev.id, ev.id, "bad-1"])
        assert {m.topic for m in got} == {"tec/v1/hub-r/receipt"}
        assert ing.ingester.stats.receipts == len(got)
    finally:
        hub.close()
        ing.close()


def publish_receipt(broker: TestBroker, hub_id: str, ids: list[str] | None = None,
                    payload: bytes | None = None) -> None:
    body = payload if payload is not None else json.dumps({"ids": ids}).encode()
    publish_once(broker.host, broker.port, broker.username, broker.password,
                 f"tec/v1/{hub_id}/receipt", body)
