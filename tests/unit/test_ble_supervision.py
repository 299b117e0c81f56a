"""Supervision with an injected clock: last seen, per-kind offline thresholds,
device_offline / device_online, retained device state with the contract keys."""

from __future__ import annotations

from typing import Any

from agent.clock import ManualClock
from agent.model import Event, Priority
from drivers.ble.bthome_mapping import Stamp
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.supervision import Supervisor

SLEEPY = BleDevice(id="door", address="A4:C1:38:8D:18:B2", kind="bthome", room="hall")
TIMED = BleDevice(id="thermo", address="A4:C1:38:8D:18:B3", kind="bthome", interval_s=600.0)
WEAR = BleDevice(id="wrist", address="A4:C1:38:8D:18:B4", kind="wearable", profile="thingy52")


class Sinks:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.states: list[tuple[str, dict[str, Any]]] = []


def make(clock: ManualClock, **cfg: Any) -> tuple[Supervisor, Sinks]:
    sinks = Sinks()
    sup = Supervisor(BleConfig(devices=(SLEEPY, TIMED, WEAR), **cfg), sinks.events.append,
                     lambda d, s: sinks.states.append((d, s)))
    sup.start(clock.monotonic())
    return sup, sinks


def stamp(clock: ManualClock) -> Stamp:
    return Stamp(clock.monotonic(), clock.wall(), clock.synced())


def offline_ids(sinks: Sinks) -> list[str]:
    return [e.device_id for e in sinks.events if e.type == "device_offline"]


def test_per_kind_thresholds() -> None:
    cfg = BleConfig()
    assert cfg.offline_after(SLEEPY) == 25 * 3600
    assert cfg.offline_after(TIMED) == 3 * 600
    assert cfg.offline_after(WEAR) == 600
    assert BleConfig(missed_intervals=5).offline_after(TIMED) == 3000


def test_never_seen_devices_go_offline_after_their_threshold_from_start() -> None:
    clock = ManualClock()
    sup, sinks = make(clock)
    clock.advance(599)
    sup.check(stamp(clock))
    assert offline_ids(sinks) == []
    clock.advance(1)
    sup.check(stamp(clock))
    assert offline_ids(sinks) == ["wrist"]
    clock.advance(1200)
    sup.check(stamp(clock))
    assert offline_ids(sinks) == ["wrist", "thermo"]
    clock.advance(25 * 3600)
    sup.check(stamp(clock))
    sup.check(stamp(clock))
    assert offline_ids(sinks) == ["wrist", "thermo", "door"]   # once each


def test_sleepy_sensor_seen_stays_online_then_offline_then_online() -> None:
    clock = ManualClock()
    sup, sinks = make(clock)
    sup.seen("door", stamp(clock), rssi=-70)
    clock.advance(25 * 3600 - 1)
    sup.check(stamp(clock))
    assert "door" not in offline_ids(sinks)
    clock.advance(1)
    sup.check(stamp(clock))
    (off,) = [e for e in sinks.events if e.device_id == "door"]
    assert (off.type, off.priority) == ("device_offline", Priority.WARNING)
    assert off.data["kind"] == "bthome" and off.data["room"] == "hall"
    assert off.data["silent_s"] == 25 * 3600 and off.data["last_seen"].endswith("Z")
    clock.advance(10)
    sup.seen("door", stamp(clock), rssi=-71)
    back = [e for e in sinks.events if e.device_id == "door"][-1]
    assert (back.type, back.priority) == ("device_online", Priority.INFO)


def test_wall_clock_step_does_not_make_devices_offline() -> None:
    clock = ManualClock()
    sup, sinks = make(clock)
    sup.seen("thermo", stamp(clock))
    clock.step_wall(10 * 86400)        # NTP arrives late: wall jumps, monotonic does not
    sup.check(stamp(clock))
    assert "thermo" not in offline_ids(sinks)


def test_retained_state_has_contract_keys_and_is_rate_limited() -> None:
    clock = ManualClock(wall=1_764_000_000.0)
    sup, sinks = make(clock, state_interval_s=300.0)
    sup.seen("door", stamp(clock), rssi=-70)
    assert sinks.states == [("door", {"kind": "bthome", "last_seen": "2025-11-24T16:00:00.000Z",
                                      "battery": None, "rssi": -70, "online": True})]
    clock.advance(10)
    sup.seen("door", stamp(clock), rssi=-69)
    assert len(sinks.states) == 1                 # nothing important changed
    sup.battery("door", 88.0, stamp(clock))
    assert sinks.states[-1][1]["battery"] == 88.0 and len(sinks.states) == 2
    clock.advance(300)
    sup.seen("door", stamp(clock), rssi=-60)
    assert len(sinks.states) == 3 and sinks.states[-1][1]["rssi"] == -60
    clock.advance(25 * 3600)
    sup.check(stamp(clock))
    door_states = [state for dev, state in sinks.states if dev == "door"]
    assert door_states[-1]["online"] is False and door_states[-1]["rssi"] == -60


def test_unknown_device_is_ignored() -> None:
    clock = ManualClock()
    sup, sinks = make(clock)
    sup.seen("nobody", stamp(clock))
    sup.battery("nobody", 5.0, stamp(clock))
    assert sinks.events == [] and sinks.states == []
