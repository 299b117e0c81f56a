"""Helpers for the inactivity tests: a home's sensors and an engine on a manual clock."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.clock import ManualClock
from agent.inactivity.config import InactivityConfig
from agent.inactivity.engine import EngineOptions, RulesEngine
from agent.inactivity.home import Alert, Instant
from agent.inactivity.routine import Routine
from agent.inactivity.ruleset import RuleSet, derive_rules
from agent.inactivity.sensors import SensorInfo, classify
from agent.model import Reading

TZ = "Europe/London"
ZONE = ZoneInfo(TZ)

HOME = {
    "pir_living": SensorInfo("pir_living", "motion", "Living", "pir"),
    "pir_kitchen": SensorInfo("pir_kitchen", "motion", "Kitchen", "pir"),
    "pir_bedroom": SensorInfo("pir_bedroom", "motion", "Bedroom", "pir"),
    "bed": SensorInfo("bed", "bed_mat", "Bedroom", "bed_pressure_mat"),
    "chair": SensorInfo("chair", "chair_mat", "Living", "seat_pressure_mat"),
    "front": SensorInfo("front", "door", "Hall", "main_entrance_door"),
    "fridge": SensorInfo("fridge", "door", "Kitchen", "fridge_door_contact"),
}

TYPES = {
    "motion": "motion", "clear": "motion_clear", "open": "door_open", "close": "door_close",
    "bed_on": "bed_occupied", "bed_off": "bed_vacated",
    "chair_on": "chair_occupied", "chair_off": "chair_vacated", "cancel": "cancel",
}
DEVICE_OF = {"bed_on": "bed", "bed_off": "bed", "chair_on": "chair", "chair_off": "chair",
             "cancel": "hub-cancel"}


def wall_at(local: str) -> float:
    """Wall time of a local ISO time (first occurrence in an autumn fold)."""
    return datetime.fromisoformat(local).replace(tzinfo=ZONE, fold=0).timestamp()


def local_of(wall: float) -> str:
    return datetime.fromtimestamp(wall, ZONE).replace(tzinfo=None).isoformat(timespec="seconds")


def config(**kw: Any) -> InactivityConfig:
    return dataclasses.replace(InactivityConfig(), **kw)


def only(**kw: Any) -> InactivityConfig:
    """A config with no derived rules: just what is given."""
    return dataclasses.replace(InactivityConfig(auto_rules=False), **kw)


def run_detector(det: Any, clock: Any, seconds: float) -> None:
    """Advance ``clock`` by ``seconds``, polling the detector at each wake-up it asks for."""
    target = clock.monotonic() + seconds
    while (due := det.next_wakeup()) is not None and due <= target:
        clock.advance(max(due, clock.monotonic() + 1e-3) - clock.monotonic())
        det.poll()
    clock.advance(max(0.0, target - clock.monotonic()))
    det.poll()


class Home:
    """A rules engine driven on a :class:`ManualClock`, polled exactly when it asks."""

    def __init__(self, cfg: InactivityConfig | RuleSet, start: str = "2025-01-15T08:00:00",
                 devices: dict[str, SensorInfo] | None = None, routine: Routine | None = None,
                 record: bool = False) -> None:
        self.devices = HOME if devices is None else devices
        self.rules = cfg if isinstance(cfg, RuleSet) else derive_rules(cfg, self.devices)
        self.clock = ManualClock(mono=1000.0, wall=wall_at(start))
        self.engine = RulesEngine(self.rules, TZ, self.now(), routine=routine,
                                  options=EngineOptions(record=record, relearn=record))
        self.alerts: list[tuple[float, Alert]] = []

    def now(self) -> Instant:
        c = self.clock
        return Instant(c.monotonic(), c.wall(), c.synced())

    def _take(self, alerts: list[Alert]) -> list[Alert]:
        self.alerts.extend((self.clock.wall(), a) for a in alerts)
        return alerts

    def run(self, seconds: float) -> None:
        """Let ``seconds`` pass, evaluating at every due time on the way."""
        target = self.clock.monotonic() + seconds
        while True:
            due = self.engine.next_due(self.now())
            mono = self.clock.monotonic()
            if due is None or due > target:
                break
            self.clock.advance(max(due, mono + 1e-3) - mono)
            self._take(self.engine.advance(self.now()))
        if target > self.clock.monotonic():
            self.clock.advance(target - self.clock.monotonic())
        self._take(self.engine.advance(self.now()))

    def run_to(self, local: str) -> None:
        self.run(wall_at(local) - self.clock.wall())

    def see(self, what: str, device: str | None = None, **data: Any) -> list[Alert]:
        dev = (device or DEVICE_OF.get(what)
               or {"open": "front", "close": "front"}.get(what, "pir_living"))
        reading = Reading(dev, TYPES[what], data=data, mono=self.clock.monotonic(),
                          wall=self.clock.wall())
        obs = classify(reading, self.devices, self.rules.exit_doors)
        if obs is None:
            return []
        return self._take(self.engine.observe(obs, self.now()))

    def types(self) -> list[str]:
        return [a.type for _, a in self.alerts]

    def alarms(self) -> list[str]:
        """Alert types without the pre-warnings (buzzer/LED) that precede some alarms."""
        return [a.type for _, a in self.alerts if not a.type.endswith("_prewarning")]

    def when(self, alert_type: str) -> str | None:
        for wall, a in self.alerts:
            if a.type == alert_type:
                return local_of(wall)
        return None

    def first(self, alert_type: str) -> tuple[float, Alert]:
        for wall, a in self.alerts:
            if a.type == alert_type:
                return wall, a
        raise AssertionError(f"no {alert_type} alert; got {self.types()}")
