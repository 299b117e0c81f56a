"""Restarts and clock steps never cause a false alarm or lose a pending one.

The detector runs against a real SQLite file (as in the agent) and a :class:`ManualClock`;
a restart is a new detector on the same database, a wall-clock step is ``step_wall``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from inactivity_helpers import HOME, TYPES, local_of, wall_at

from agent.clock import ManualClock, downtime_s
from agent.config import parse_config
from agent.inactivity.detector import InactivityDetector
from agent.inactivity.persistence import InactivityStore
from agent.inactivity.replay import ReplayContext
from agent.model import Event, Reading

H = 3600.0
ONLY_INACTIVITY = {"auto_rules": False, "prewarning_s": 600,
                   "inactivity": [{"start": "00:00", "end": "00:00", "after_s": 4 * H}]}


class DeferredContext(ReplayContext):
    """Events are taken but never committed: the process dies before the store's flush."""

    def submit_event(self, event: Event) -> None:
        self.events.append(event)


class Hub:
    """One run of the agent's inactivity detector (a restart is a new Hub, same file)."""

    def __init__(self, db_path: Path, clock: ManualClock, doc: dict[str, Any] | None = None,
                 boot: str | None = "boot-1", ctx_cls: type[ReplayContext] = ReplayContext) -> None:
        cfg = parse_config({"hub_id": "t", "inactivity": doc or ONLY_INACTIVITY})
        self.clock = clock
        self.db = sqlite3.connect(db_path, isolation_level=None)
        self.det = InactivityDetector(cfg, self.db, clock, HOME, boot_id=boot)
        self.ctx = ctx_cls(clock)
        self.det.attach(self.ctx)  # type: ignore[arg-type]

    def run(self, seconds: float) -> None:
        target = self.clock.monotonic() + seconds
        while True:
            due = self.det.next_wakeup()
            now = self.clock.monotonic()
            if due is None or due > target:
                break
            self.clock.advance(max(due, now + 1e-3) - now)
            self.det.poll()
        self.clock.advance(max(0.0, target - self.clock.monotonic()))
        self.det.poll()

    def see(self, what: str, device: str = "pir_living") -> None:
        dev = {"bed_on": "bed", "bed_off": "bed", "chair_on": "chair", "chair_off": "chair"}.get(
            what, device)
        self.det.handle_reading(Reading(dev, TYPES[what], data={}))

    def stop(self) -> None:
        asyncio.run(self.det.stop())
        self.db.close()

    def alarms(self, kind: str = "inactivity") -> list[str]:
        return [local_of(e.wall) for e in self.ctx.events if e.type == kind]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(mono=5000.0, wall=wall_at("2025-01-15T08:00:00"))


def test_restart_mid_countdown_keeps_the_due_time(tmp_path: Path, clock: ManualClock) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")                                   # 08:00
    hub.run(3 * H)
    hub.stop()
    clock.advance(600)                                  # 10 min down (systemd restart)
    hub2 = Hub(tmp_path / "a.db", clock)
    hub2.run(H - 600 - 60)
    assert hub2.alarms() == [] and hub2.ctx.events[0].type == "inactivity_prewarning"
    hub2.run(120)
    assert hub2.alarms() == ["2025-01-15T12:00:00"]     # the downtime counted as still time


def test_restart_during_the_prewarning_gives_the_whole_warning_again(
        tmp_path: Path, clock: ManualClock) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(4 * H - 300)                                # pre-warning since 11:50
    assert hub.det.prewarning
    hub.stop()
    clock.advance(60)
    hub2 = Hub(tmp_path / "a.db", clock)
    assert hub2.ctx.prewarning_changes == [(clock.wall(), True)]   # buzzer back on at once
    hub2.run(600 - 1)
    assert hub2.alarms() == []
    hub2.run(2)
    assert hub2.alarms() == ["2025-01-15T12:06:00"]


def test_restart_after_the_due_time_waits_out_grace_and_warning(
    tmp_path: Path, clock: ManualClock
) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(3 * H)
    hub.stop()
    clock.advance(2 * H)                                # down past the due time
    hub2 = Hub(tmp_path / "a.db", clock)
    hub2.run(599)
    assert hub2.alarms() == [] and hub2.det.prewarning  # no alarm straight out of a restart
    hub2.run(2)
    assert hub2.alarms() == ["2025-01-15T13:10:00"]


def test_a_raised_alarm_is_not_raised_again_after_a_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(4 * H + 60)
    assert len(hub.alarms()) == 1
    hub.stop()
    hub2 = Hub(tmp_path / "a.db", clock)
    hub2.run(10 * H)
    assert hub2.alarms() == [] and not hub2.det.prewarning


def test_an_alarm_not_yet_committed_is_raised_again(tmp_path: Path, clock: ManualClock) -> None:
    hub = Hub(tmp_path / "a.db", clock, ctx_cls=DeferredContext)
    hub.see("motion")
    hub.run(4 * H + 1)
    assert len(hub.alarms()) == 1                       # submitted, but the flush never ran
    hub.db.close()                                      # crash: no orderly stop
    hub2 = Hub(tmp_path / "a.db", clock)
    hub2.run(H)
    assert len(hub2.alarms()) == 1                      # not lost


def test_reboot_with_unknown_downtime_resumes_the_countdown(
    tmp_path: Path, clock: ManualClock
) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(3 * H)
    hub.stop()
    clock.advance(5 * H)
    clock.set_synced(False)                             # new boot, no NTP yet
    hub2 = Hub(tmp_path / "a.db", clock, boot="boot-2")
    hub2.run(H - 601)
    assert hub2.alarms() == []                          # downtime unknown: not counted
    hub2.run(602)
    assert len(hub2.alarms()) == 1                      # ...but the pending alarm is not lost


def test_reboot_with_synchronised_clocks_counts_the_downtime(
    tmp_path: Path, clock: ManualClock
) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(2 * H)
    hub.stop()
    clock.advance(H)
    hub2 = Hub(tmp_path / "a.db", clock, boot="boot-2")
    hub2.run(H - 1)
    assert hub2.alarms() == []
    hub2.run(2)
    assert hub2.alarms() == ["2025-01-15T12:00:00"]


def test_a_mat_must_be_confirmed_after_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    doc = {"auto_rules": False, "prewarning_s": 600,
           "inactivity": [{"start": "00:00", "end": "00:00", "after_s": 4 * H}],
           "chair_too_long": {"after_s": 4 * H}}
    hub = Hub(tmp_path / "a.db", clock, doc)
    hub.see("chair_on")                                 # 08:00
    hub.run(H)
    hub.stop()
    hub2 = Hub(tmp_path / "a.db", clock, doc)
    hub2.see("chair_on")                                # the GPIO driver reports it at start
    hub2.run(3 * H + 1)
    assert hub2.alarms("chair_too_long") == ["2025-01-15T12:00:00"]  # from the first sitting

    hub2.stop()
    hub3 = Hub(tmp_path / "a.db", clock, doc)           # this time nobody reports the mat
    hub3.run(4 * H + 200)
    assert hub3.alarms("chair_too_long") == []
    assert hub3.det.engine is not None and not hub3.det.engine.home.mats


@pytest.mark.parametrize("step", [+3 * H, -3 * H, +26 * H, -26 * H])
def test_a_wall_clock_step_changes_nothing_about_durations(tmp_path: Path, clock: ManualClock,
                                                           step: float) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(H)
    clock.step_wall(step)                               # NTP arrives late
    hub.run(3 * H - 601)
    assert not hub.det.prewarning and hub.alarms() == []
    hub.run(2)
    assert hub.det.prewarning
    hub.run(600)
    assert len(hub.alarms()) == 1
    ev = next(e for e in hub.ctx.events if e.type == "inactivity")
    assert ev.mono - 5000.0 == pytest.approx(4 * H, abs=1.0)


def test_a_backward_step_does_not_repeat_not_up(tmp_path: Path) -> None:
    clock = ManualClock(mono=5000.0, wall=wall_at("2025-01-15T04:00:00"))
    doc = {"auto_rules": False, "not_up": {"by": "11:00"}}
    hub = Hub(tmp_path / "a.db", clock, doc)
    hub.see("bed_on")
    hub.run(7 * H + 1)
    assert hub.alarms("not_up") == ["2025-01-15T11:00:00"]
    clock.step_wall(-2 * H)                             # 11:00 again, two hours from now
    hub.run(5 * H)
    assert len(hub.alarms("not_up")) == 1


def test_a_forward_step_over_the_deadline_evaluates_it_once(tmp_path: Path) -> None:
    clock = ManualClock(mono=5000.0, wall=wall_at("2025-01-15T03:00:00"))
    doc = {"auto_rules": False, "not_up": {"by": "11:00"}}
    hub = Hub(tmp_path / "a.db", clock, doc)
    hub.see("bed_on")
    hub.run(7 * H)                                      # 10:00 by a clock that is 1.5 h slow
    clock.step_wall(+1.5 * H)                           # 11:30
    hub.run(1)
    assert hub.alarms("not_up") == []                   # the full pre-warning first
    hub.run(600)
    assert hub.alarms("not_up") == ["2025-01-15T11:40:00"]   # late by the step, not lost
    hub.run(3 * H)
    assert len(hub.alarms("not_up")) == 1


def test_downtime_is_measured_only_when_it_can_be() -> None:
    saved = {"saved_mono": 100.0, "saved_wall": 1e9, "saved_synced": True, "boot_id": "b1"}
    assert downtime_s(saved, 160.0, 5.0, False, "b1") == 60.0        # same boot: monotonic
    assert downtime_s(saved, 5.0, 1e9 + 90, True, "b2") == 90.0      # reboot, both synced
    assert downtime_s(saved, 5.0, 1e9 + 90, False, "b2") is None     # reboot, not synced now
    assert downtime_s(saved, 5.0, 1e9 - 90, True, "b2") is None      # clock went backwards
    assert downtime_s({**saved, "saved_synced": False}, 5.0, 1e9 + 90, True, "b2") is None


def test_unreadable_saved_state_starts_afresh(tmp_path: Path, clock: ManualClock) -> None:
    db = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    InactivityStore(db)
    db.execute("INSERT INTO inactivity_state VALUES ('snapshot', '{\"version\": 1, \"home\": 7}')")
    db.execute("INSERT INTO inactivity_state VALUES ('routine', 'not json')")
    db.close()
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")
    hub.run(4 * H + 1)
    assert len(hub.alarms()) == 1


def test_a_live_config_change_keeps_the_countdown(tmp_path: Path, clock: ManualClock) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")                                   # 08:00, 4 h rule
    hub.run(H)
    shorter = dict(ONLY_INACTIVITY,
                   inactivity=[{"start": "00:00", "end": "00:00", "after_s": 2 * H}])
    hub.det.reconfigure(parse_config({"hub_id": "t", "inactivity": shorter}))
    hub.run(H - 601)
    assert not hub.det.prewarning
    hub.run(602)
    assert hub.alarms() == ["2025-01-15T10:00:00"]      # counted from 08:00, not from the change
    hub.det.reconfigure(parse_config({"hub_id": "t", "inactivity": shorter}))
    hub.run(3 * H)
    assert len(hub.alarms()) == 1                       # not raised again by the swap


def test_a_reading_is_saved_within_a_minute_even_if_silence_follows(
        tmp_path: Path, clock: ManualClock) -> None:
    hub = Hub(tmp_path / "a.db", clock)
    hub.see("motion")                                   # 08:00
    hub.run(2 * H)
    hub.see("motion", "pir_kitchen")                    # 10:00, just after an idle save
    hub.run(61)
    hub.db.close()                                      # crash, no orderly stop
    hub2 = Hub(tmp_path / "a.db", clock)
    assert hub2.det.engine is not None and hub2.det.engine.home.last_device == "pir_kitchen"
    hub2.run(4 * H - 61 - 1)
    assert hub2.alarms() == []
    hub2.run(2)
    assert hub2.alarms() == ["2025-01-15T14:00:00"]
