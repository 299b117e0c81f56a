"""End to end: a Contact ID frame on a pty -> ACK on the pty -> event on a real mosquitto;
and an alarm the broker cannot take -> escalated to the unit -> the record reaches the broker
once it is back."""

from __future__ import annotations

import os
import select
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.app import Hardware
from agent.model import Priority, Reading
from drivers.serial.contact_id import ACK, DC4, decode
from tests.harness import AgentRunner, make_config, wait_until

DATA = Path(__file__).resolve().parents[1] / "data" / "serial"
EVENT_FIELDS = {"id", "hub_id", "seq", "type", "priority", "device_id", "ts", "clock_synced",
                "data"}


class UnitEnd:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)

    def read(self, n: int, timeout: float = 3.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"expected {n} bytes, got {out!r}")
            out += os.read(self.master, n - len(out))
        return out

    def read_frame(self, timeout: float = 5.0) -> bytes:
        out = b""
        while not out.endswith(bytes([DC4])):
            out += self.read(1, timeout)
        return out

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def unit_end() -> Iterator[UnitEnd]:
    u = UnitEnd()
    yield u
    u.close()


def _serial_config(tmp_path: Path, broker: object, port: str, extra: str = "") -> object:
    return make_config(tmp_path, broker, f"""
[[serial.units]]
id = "lifeline"
port = "{port}"
room = "hall"
role = "telecare_unit"
{extra}
""")


def test_frame_on_the_line_is_acked_and_reaches_the_broker(tmp_path: Path, mqtt_broker,
                                                           unit_end: UnitEnd) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    cfg = _serial_config(tmp_path, mqtt_broker, unit_end.path)
    stored_at: list[float] = []
    with AgentRunner(cfg, Hardware(), on_stored=lambda ev: stored_at.append(time.monotonic())
                     ) as runner:
        wait_until(lambda: _serial(runner).devices()[0].details["port_open"], what="port open")
        t0 = time.monotonic()
        os.write(unit_end.master, (DATA / "smoke_111_new_zone3.bin").read_bytes())
        assert unit_end.read(1, 1.0) == bytes([ACK])
        acked_at = time.monotonic()
        got = events.wait_events(1)
    assert acked_at - t0 < 1.0
    # The ACK went out only after the event was committed to the store.
    assert len(stored_at) == 1 and stored_at[0] <= acked_at
    ev = got[0]
    assert set(ev) >= EVENT_FIELDS
    assert (ev["type"], ev["priority"], ev["device_id"]) == ("smoke", "alarm", "lifeline")
    assert ev["data"]["contact_id"] == 111 and ev["data"]["zone"] == 3
    assert ev["data"]["qualifier"] == "new" and ev["data"]["source"] == "serial"
    assert ev["data"]["room"] == "hall"


def test_alarm_escalates_to_the_unit_while_the_broker_is_down(tmp_path: Path, durable_broker,
                                                              unit_end: UnitEnd) -> None:
    mqtt_broker = durable_broker
    # Subscribed before the outage with a persistent session: what the hub publishes the
    # moment the broker is back is queued for this subscriber, however slowly it reconnects.
    events = mqtt_broker.subscribe("tec/v1/hub-test/event", persistent_id="platform")
    cfg = _serial_config(tmp_path, mqtt_broker, unit_end.path,
                         'escalate_after_s = 0.5\naccount = "1234"')
    with AgentRunner(cfg, Hardware()) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        wait_until(lambda: _serial(runner).devices()[0].details["port_open"], what="port open")
        mqtt_broker.stop()
        wait_until(lambda: not runner.agent.state.online, what="offline")
        alarm = Reading("wearable-1", "fall", Priority.ALARM, {"source": "ble"})
        runner.agent.emit_reading(alarm)
        frame = unit_end.read_frame()
        assert decode(frame[:-1]).event_code == "100"  # type: ignore[union-attr]
        os.write(unit_end.master, bytes([ACK]))
        wait_until(lambda: runner.agent.stats["stored"] == 2, what="escalation record stored")
        # One inventory entry for the unit: the line's details and the rule's counters.
        units = [d for d in runner.agent.devices() if d.device_id == "lifeline"]
        assert len(units) == 1 and units[0].driver == "serial"
        assert units[0].details["port_open"] is True
        assert (units[0].details["escalated"], units[0].details["failed"],
                units[0].details["skipped_delivered"]) == (1, 0, 0)
        mqtt_broker.start()
        evs = events.wait_events(2, timeout=30)
    assert [e["type"] for e in evs][:2] == ["fall", "alarm_escalated"]
    rec = evs[1]
    assert rec["data"]["path"] == "serial" and rec["data"]["event_id"] == alarm.id
    assert rec["priority"] == "info" and rec["device_id"] == "lifeline"
    assert list(rec["data"].items()) == [
        ("path", "serial"), ("event_id", alarm.id), ("event_type", "fall"),
        ("contact_id", "100"), ("attempts", 1), ("unit", "lifeline"), ("source", "serial"),
        ("room", "hall"), ("role", "telecare_unit")]


def _serial(runner: AgentRunner):
    return next(c for c in runner.agent.components if c.name == "serial")


def test_alarm_left_pending_by_a_restart_is_escalated(tmp_path: Path, mqtt_broker,
                                                     unit_end: UnitEnd) -> None:
    """Broadband down, the hub restarts: the alarm stored before still takes the second path."""
    cfg = _serial_config(tmp_path, mqtt_broker, unit_end.path,
                         'escalate_after_s = 60\naccount = "1234"')
    mqtt_broker.stop()
    alarm = Reading("cord-1", "pull_cord", Priority.ALARM, {"contact_id": 101})
    with AgentRunner(cfg, Hardware()) as runner:
        runner.agent.emit_reading(alarm)
        wait_until(lambda: runner.agent.event_delivered(alarm.id) is False, what="alarm stored")
    # Restarted with a short escalation delay; the broker is still down.
    from dataclasses import replace
    unit = replace(cfg.serial.units[0], escalate_after_s=0.5)
    cfg2 = replace(cfg, serial=replace(cfg.serial, units=(unit,)))
    with AgentRunner(cfg2, Hardware()) as runner:
        frame = unit_end.read_frame(timeout=10)
        assert decode(frame[:-1]).event_code == "101"  # type: ignore[union-attr]
        os.write(unit_end.master, bytes([ACK]))
        wait_until(lambda: runner.agent.stats["stored"] == 1, what="escalation record stored")
        # A third start must not escalate the same alarm again.
        assert runner.call(runner.agent.pending_alarms) == []


def test_alarm_the_store_refuses_still_escalates_to_the_unit(tmp_path: Path, durable_broker,
                                                            unit_end: UnitEnd) -> None:
    """A failing card and no broker at once: the alarm is in memory and the spill file only;
    the telecare unit (the second path) must still get it."""
    from agent.store.sqlite_store import SqliteStore
    from tests.store_faults import FaultPlan

    mqtt_broker = durable_broker
    events = mqtt_broker.subscribe("tec/v1/hub-test/event", persistent_id="platform")
    cfg = _serial_config(tmp_path, mqtt_broker, unit_end.path,
                         'escalate_after_s = 0.5\naccount = "1234"')
    plan = FaultPlan()
    store = SqliteStore(cfg.store.path, cfg.hub_id, connect=plan.connect)
    with AgentRunner(cfg, Hardware(), store=store) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        wait_until(lambda: _serial(runner).devices()[0].details["port_open"], what="port open")
        mqtt_broker.stop()
        wait_until(lambda: not runner.agent.state.online, what="offline")
        plan.fail("COMMIT", times=-1)
        alarm = Reading("wearable-1", "fall", Priority.ALARM, {"source": "ble"})
        runner.agent.emit_reading(alarm)
        frame = unit_end.read_frame()
        assert decode(frame[:-1]).event_code == "100"  # type: ignore[union-attr]
        os.write(unit_end.master, bytes([ACK]))
        assert runner.agent.state.storage_failed
        plan.clear()                           # the card works again, the broker returns
        mqtt_broker.start()
        evs = events.wait_for(lambda ms: {"fall", "alarm_escalated"}
                              <= {e["type"] for e in events.events()}, timeout=30,
                              what="the alarm and its escalation record")
        wait_until(lambda: runner.agent.event_delivered(alarm.id) is True, timeout=30,
                   what="the alarm stored and acknowledged")
    assert evs
    rec = next(e for e in events.events() if e["type"] == "alarm_escalated")
    assert rec["data"]["event_id"] == alarm.id
    # Escalated once: the retry that finally stored the alarm did not send it to the unit again.
    assert sum(1 for e in events.events() if e["type"] == "alarm_escalated") == 1


def test_alarm_the_broker_took_but_the_service_never_confirmed_escalates(
        tmp_path: Path, mqtt_broker, unit_end: UnitEnd) -> None:
    """With end-to-end receipts, 'delivered' is the ingester's receipt: an alarm the broker
    acknowledged (PUBACK) and nobody stored still goes to the unit (here no ingester runs:
    as when a broker drops what it acknowledged)."""
    cfg = _serial_config(tmp_path, mqtt_broker, unit_end.path,
                         'escalate_after_s = 1.0\naccount = "1234"')
    from dataclasses import replace
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, receipts="on"))
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    with AgentRunner(cfg, Hardware()) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        wait_until(lambda: _serial(runner).devices()[0].details["port_open"], what="port open")
        alarm = Reading("wearable-1", "fall", Priority.ALARM, {"source": "ble"})
        runner.agent.emit_reading(alarm)
        events.wait_for(lambda ms: any(m.json()["type"] == "fall" for m in ms), what="at broker")
        frame = unit_end.read_frame()
        assert decode(frame[:-1]).event_code == "100"  # type: ignore[union-attr]
        os.write(unit_end.master, bytes([ACK]))
        wait_until(lambda: [d.details.get("escalated") for d in runner.agent.devices()
                            if d.device_id == "lifeline"] == [1], what="the escalation counted")
