"""A deterministic recorded week of one home's events, written through the real store.

Times are local (Europe/London) on the week of 2025-03-24 .. 2025-03-30, whose last day
is the 23-hour day clocks go forward, so DST is exercised by every test that uses it.
Each test states the figures it expects from this schedule by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.model import Event, Priority
from agent.store.sqlite_store import SqliteStore

TZ = ZoneInfo("Europe/London")
FIRST_DAY = date(2025, 3, 24)
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(7)]
HUB = "hub-report"

CONFIG_TOML = """
hub_id = "{hub}"
[store]
path = "{store}"
[agent]
timezone = "Europe/London"
[[gpio.devices]]
id = "cord-bath"
kind = "pull_cord"
pin = 17
[[gpio.devices]]
id = "pir-hall"
kind = "pir"
pin = 4
[[gpio.devices]]
id = "led"
kind = "led"
pin = 22
"""


def at(day_index: int, hh: int, mm: int = 0, ss: float = 0.0) -> float:
    d = DAYS[day_index]
    base = datetime(d.year, d.month, d.day, hh, mm, tzinfo=TZ)
    return base.timestamp() + ss


@dataclass
class Week:
    store_path: Path
    ids: dict[str, str] = field(default_factory=dict)


def _put(store: SqliteStore, ev: Event, latency_s: float | None) -> Event:
    (stored,) = store.append([ev])
    if latency_s is not None:
        assert stored.seq is not None
        store.ack([stored.seq], acked_wall=ev.wall + latency_s)
    return stored


def _ev(type_: str, prio: Priority, device: str, wall: float, data: dict[str, Any] | None = None,
        synced: bool = True) -> Event:
    return Event(type=type_, priority=prio, device_id=device, data=data or {}, wall=wall,
                 clock_synced=synced)


def write_week(store_path: Path) -> Week:
    """The schedule (day index: local time, event):

    every day   08:00 door_open, 20:00 door_close (info); 09:00 pull_cord alarm (cord-bath),
                delivered after 40 + 10*day ms; 12:00 telemetry (never counted)
    days 0,3,6  14:00 pendant alarm (pendant-1), delivered after 200 ms
    days 1,3    09:00:30 alarm_cancelled naming that day's pull_cord
    day 0       10:00 test (info)
    day 2       11:00 fall alarm (wearable-1), delivered after 120 ms
    day 4       11:00 fall_cancelled (info), 15:00 fall_recovered (warning)
    day 5       15:30 inactivity_prewarning, 16:00 inactivity alarm (hub), delivered 90 ms
    day 3       22:00 device_offline pendant-1 ... day 4 01:00 device_online (3 h)
    day 6       10:00 battery_low pendant-1 (battery_pct 18)
    day 6       23:00 pendant alarm, never delivered (pending)
    day 6       07:00 pull_cord stamped with an unsynchronised clock, delivered after 5 s
    days 0..5   next day 00:05 'summary' events with offline_minutes = 10 * day and the
                pendant's battery at 80 - day
    """
    store = SqliteStore(store_path, HUB)
    store.open()
    # The hub was installed before the week began (as the agent records on first start):
    # device uptime is known for the whole week.
    store.set_meta("created_wall", repr(at(0, 0)))
    week = Week(store_path)
    try:
        for i in range(7):
            _put(store, _ev("door_open", Priority.INFO, "door-front", at(i, 8)), 0.05)
            _put(store, _ev("door_close", Priority.INFO, "door-front", at(i, 20)), 0.05)
            cord = _put(store, _ev("pull_cord", Priority.ALARM, "cord-bath", at(i, 9),
                                   {"contact_id": 101}), (40 + 10 * i) / 1000)
            week.ids[f"cord{i}"] = cord.id
            _put(store, _ev("telemetry", Priority.TELEMETRY, "thermo", at(i, 12),
                            {"temperature_c": 20.5}), None)
            if i in (0, 3, 6):
                _put(store, _ev("pendant", Priority.ALARM, "pendant-1", at(i, 14),
                                {"contact_id": 101}), 0.2)
            if i in (1, 3):
                _put(store, _ev("alarm_cancelled", Priority.INFO, "cancel", at(i, 9, 0, 30),
                                {"cancelled_ids": [cord.id], "cancelled_types": ["pull_cord"]}),
                     0.05)
        _put(store, _ev("test", Priority.INFO, "cancel", at(0, 10)), 0.05)
        _put(store, _ev("fall", Priority.ALARM, "wearable-1", at(2, 11), {"score": 0.97}), 0.12)
        _put(store, _ev("fall_cancelled", Priority.INFO, "wearable-1", at(4, 11)), 0.05)
        _put(store, _ev("fall_recovered", Priority.WARNING, "wearable-1", at(4, 15),
                        {"score": 0.91, "confirmation": {"reason": "recovered"}}), 0.05)
        _put(store, _ev("inactivity_prewarning", Priority.WARNING, "inactivity", at(5, 15, 30)),
             0.05)
        _put(store, _ev("inactivity", Priority.ALARM, "inactivity", at(5, 16)), 0.09)
        _put(store, _ev("device_offline", Priority.WARNING, "pendant-1", at(3, 22)), 0.05)
        _put(store, _ev("device_online", Priority.INFO, "pendant-1", at(4, 1)), 0.05)
        _put(store, _ev("battery_low", Priority.WARNING, "pendant-1", at(6, 10),
                        {"battery_pct": 18.0}), 0.05)
        pending = _put(store, _ev("pendant", Priority.ALARM, "pendant-1", at(6, 23)), None)
        week.ids["pending"] = pending.id
        _put(store, _ev("pull_cord", Priority.ALARM, "cord-bath", at(6, 7), synced=False), 5.0)
        for i in range(6):
            _put(store, _ev("summary", Priority.INFO, "hub", at(i + 1, 0, 5), {
                "date": DAYS[i].isoformat(), "offline_minutes": 10.0 * i,
                "devices": [{"device_id": "pendant-1", "battery_pct": 80.0 - i, "rssi": -70}],
            }), 0.05)
    finally:
        store.close()
    return week


def write_config(tmp_path: Path, store_path: Path) -> Path:
    cfg = tmp_path / "tec-agent.toml"
    cfg.write_text(CONFIG_TOML.format(hub=HUB, store=store_path))
    return cfg
