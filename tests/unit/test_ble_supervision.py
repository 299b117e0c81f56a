"""Supervision with an injected clock: last seen, per-kind offline thresholds,
device_offline / device_online, retained device state with the contract keys."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.clock import ManualClock
from agent.model import Event, Priority
from agent.store.component_state import SqliteComponentState
from drivers.ble.bthome_mapping import Stamp
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.persistence import SAVE_EVERY_S, SupervisionStore
from drivers.ble.supervision import Supervisor

SLEEPY = BleDevice(id="door", address="A4:C1:38:8D:18:B2", kind="bthome", room="hall")
TIMED = BleDevice(id="thermo", address="A4:C1:38:8D:18:B3", kind="bthome", interval_s=600.0)
WEAR = BleDevice(id="wrist", address="A4:C1:38:8D:18:B4", kind="wearable", profile="thingy52")


class Sinks:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.states: list[tuple[str, dict[str, Any]]] = []


def make(clock: ManualClock, store: SupervisionStore | None = None, boot: str | None = None,
         **cfg: Any) -> tuple[Supervisor, Sinks]:
    sinks = Sinks()
    sup = Supervisor(BleConfig(devices=(SLEEPY, TIMED, WEAR), **cfg), sinks.events.append,
                     lambda d, s: sinks.states.append((d, s)), store=store, boot_id=boot)
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


# ---- across restarts (drivers.ble.persistence) ---------------------------------------------
def open_db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def restarted(db: sqlite3.Connection, clock: ManualClock, boot: str) -> tuple[Supervisor, Sinks]:
    sup, sinks = make(clock, SupervisionStore(SqliteComponentState(db, "ble")), boot)
    sup.restore(stamp(clock))
    return sup, sinks


def test_the_offline_clock_continues_from_the_last_sighting_after_a_restart(
        tmp_path: Path) -> None:
    db = open_db(tmp_path / "agent.db")
    clock = ManualClock(mono=1000.0, wall=1_764_000_000.0, synced=True)
    sup, _ = restarted(db, clock, "boot-1")
    sup.seen("door", stamp(clock), rssi=-70, battery_pct=81.0)
    clock.advance(20 * 3600)
    sup.save(clock.monotonic(), everything=True)            # the driver stops
    # Same boot (the service restarted): the monotonic clock says how long ago.
    sup2, sinks = restarted(db, clock, "boot-1")
    h = sup2.health["door"]
    assert (h.battery_pct, h.rssi, h.last_seen_wall) == (81.0, -70, 1_764_000_000.0)
    clock.advance(5 * 3600 - 1)
    sup2.check(stamp(clock))
    assert "door" not in offline_ids(sinks)
    clock.advance(1)
    sup2.check(stamp(clock))
    (off,) = [e for e in sinks.events if e.device_id == "door"]
    assert off.data["silent_s"] == 25 * 3600                # 25 h since heard, not since start
    assert off.data["last_seen"] == "2025-11-24T16:00:00.000Z"


def test_a_reboot_uses_the_wall_clock_only_when_both_were_synchronised(tmp_path: Path) -> None:
    db = open_db(tmp_path / "agent.db")
    clock = ManualClock(mono=1000.0, wall=1_764_000_000.0, synced=True)
    sup, _ = restarted(db, clock, "boot-1")
    sup.seen("door", stamp(clock))
    # Rebooted 2 h later; the new boot's monotonic clock starts again.
    later = ManualClock(mono=50.0, wall=1_764_000_000.0 + 7200, synced=True)
    sup2, sinks = restarted(db, later, "boot-2")
    assert sup2.health["door"].last_seen_mono == 50.0 - 7200
    # Rebooted without NTP yet: the time since cannot be known; the clock starts at boot
    # (but the installer still sees when it was last heard).
    unsynced = ManualClock(mono=50.0, wall=1_000.0, synced=False)
    sup3, sinks3 = restarted(db, unsynced, "boot-3")
    assert sup3.health["door"].last_seen_mono is None
    assert sup3.health["door"].last_seen_wall == 1_764_000_000.0
    unsynced.advance(25 * 3600 - 1)
    sup3.check(stamp(unsynced))
    assert "door" not in offline_ids(sinks3)


def test_a_device_reported_offline_is_not_reported_again_after_a_restart(
        tmp_path: Path) -> None:
    db = open_db(tmp_path / "agent.db")
    clock = ManualClock(mono=1000.0, wall=1_764_000_000.0)
    sup, sinks = restarted(db, clock, "boot-1")
    clock.advance(3 * 600)
    sup.check(stamp(clock))
    assert "thermo" in offline_ids(sinks)
    sup2, sinks2 = restarted(db, clock, "boot-2")
    clock.advance(2 * 86400)
    sup2.check(stamp(clock))
    assert "thermo" not in offline_ids(sinks2)
    sup2.seen("thermo", stamp(clock))
    assert [e.type for e in sinks2.events if e.device_id == "thermo"] == ["device_online"]


def test_sightings_are_written_rarely_and_a_broken_disk_is_survived(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = open_db(tmp_path / "agent.db")
    clock = ManualClock(mono=1000.0, wall=1_764_000_000.0)
    sup, _ = restarted(db, clock, "boot-1")
    before = db.total_changes
    for _ in range(100):                      # a chatty sensor, one advert every 5 s
        sup.seen("thermo", stamp(clock), rssi=-60)
        clock.advance(5)
    assert db.total_changes - before == 1     # first sighting only (500 s < SAVE_EVERY_S)
    clock.advance(SAVE_EVERY_S)
    sup.seen("thermo", stamp(clock), rssi=-60)
    assert db.total_changes - before == 2
    # Garbage in the table is ignored; the rest is restored.
    db.execute("INSERT OR REPLACE INTO ble_supervision VALUES ('door', 'not json')")
    db.execute("INSERT OR REPLACE INTO ble_supervision VALUES ('wrist', '{\"battery\": \"x\"}')")
    sup2, _ = restarted(db, clock, "boot-1")
    assert sup2.health["thermo"].last_seen_wall is not None
    assert sup2.health["door"].last_seen_wall is None and sup2.health["wrist"].battery_pct is None
    # A read-only database: errors are logged (not once per advert) and supervision goes on.
    ro = sqlite3.connect(f"file:{tmp_path / 'agent.db'}?mode=ro", uri=True, isolation_level=None)
    store = SupervisionStore(SqliteComponentState(ro, "ble"))
    assert store.save({"door": {"online": True}}) is False
    sup3, sinks = make(clock, store, "boot-1")
    assert sup3.restore(stamp(clock)) == 1    # reading still works
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="drivers.ble.persistence"):
        for _ in range(50):
            sup3.seen("door", stamp(clock), battery_pct=float(50 + _))
            clock.advance(1)
    assert 1 <= len(caplog.records) <= 2
    assert "cannot save state" in caplog.records[0].getMessage()
    clock.advance(3 * 600)
    sup3.check(stamp(clock))
    assert "thermo" in offline_ids(sinks)


def test_a_replaced_sensor_does_not_inherit_the_old_ones_state(tmp_path: Path) -> None:
    db = open_db(tmp_path / "agent.db")
    clock = ManualClock()
    sup, _ = restarted(db, clock, "boot-1")
    sup.seen("door", stamp(clock), battery_pct=5.0)
    clock.advance(25 * 3600)
    sup.check(stamp(clock))                       # the old sensor died: reported offline
    # The installer fits a new sensor under the same id.
    new_door = BleDevice(id="door", address="A4:C1:38:00:00:01", kind="bthome", room="hall")
    sinks = Sinks()
    sup2 = Supervisor(BleConfig(devices=(new_door,)), sinks.events.append,
                      lambda d, s: sinks.states.append((d, s)),
                      store=SupervisionStore(SqliteComponentState(db, "ble")),
                      boot_id="boot-1")
    sup2.start(clock.monotonic())
    assert sup2.restore(stamp(clock)) == 0
    h = sup2.health["door"]
    assert (h.battery_pct, h.last_seen_wall, h.online) == (None, None, None)
