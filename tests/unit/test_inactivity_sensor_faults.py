"""Faulty or unusual sensors must not fake "left the bed", "in bed" or "came home".

Seen in Kasteren B (docs/inactivity.md): bed and chair mats that report 1 s pulses while
the person lies or sits still for hours between them, and stick "occupied" for a day or
two; PIRs and a drawer switch that fire alone while the resident is out. Small synthetic
logs with exact expected times; each test fails on the rules before this change.
"""

from __future__ import annotations

from inactivity_helpers import Home, only

from agent.inactivity.config import (
    AwayRule,
    ChairTooLongRule,
    InactivityWindow,
    NightOutOfBedRule,
    NotUpRule,
)
from agent.inactivity.home import MOMENTARY_KEEP, MOMENTARY_MIN_STAYS, HomeState

H = 3600.0
ALL_DAY = (InactivityWindow(start="00:00", end="00:00", after_s=4 * H),)
NIGHT = NightOutOfBedRule(start="23:00", end="07:00", after_s=2700)


def _pulses(home: Home, mat: str = "bed", n: int = MOMENTARY_MIN_STAYS) -> None:
    """``n`` one-second presses on a mat, a minute apart."""
    for _ in range(n):
        home.see(f"{mat}_on")
        home.run(1)
        home.see(f"{mat}_off")
        home.run(59)


# -- which mats pulse ----------------------------------------------------------------------------
def test_a_mat_is_momentary_once_ten_of_its_recent_stays_are_short_in_the_median() -> None:
    home = HomeState()
    for _ in range(MOMENTARY_MIN_STAYS - 1):
        home.mat_stay("bed", 1.0)
    assert not home.mat_momentary("bed")                 # 9 stays: not judged yet
    home.mat_stay("bed", 1.0)
    assert home.mat_momentary("bed")
    level = HomeState()
    for _ in range(MOMENTARY_MIN_STAYS):
        level.mat_stay("seat", 3242.0)                   # Ordonez B's median sitting
    assert not level.mat_momentary("seat")
    # Only the last 21 count: 11 sittings after 10 pulses make it a level mat again.
    for _ in range(11):
        home.mat_stay("bed", 7 * H)
    assert len(home.mat_stays["bed"]) == MOMENTARY_KEEP == 21
    assert not home.mat_momentary("bed")


# -- night_out_of_bed with a pulsing bed mat ------------------------------------------------------
def test_a_pulsing_bed_mat_falling_quiet_is_not_leaving_the_bed() -> None:
    home = Home(only(night_out_of_bed=NIGHT), start="2025-01-15T23:30:00")
    _pulses(home)                                        # 23:30-23:40, then lying still
    home.run_to("2025-01-16T01:30:00")                   # 110 min without a pulse
    home.see("bed_on")
    home.see("bed_off")
    home.run_to("2025-01-16T06:59:00")
    assert home.types() == []                            # old rules: 00:24:59


def test_before_the_mat_is_judged_a_pulse_ending_is_not_leaving_the_bed() -> None:
    # Kasteren B's first night: the mat had shown 5 and 6 stays, too few to be judged, and
    # the "vacated" of a 1 s pulse started the count (two false alerts).
    home = Home(only(night_out_of_bed=NIGHT), start="2025-01-15T23:30:00")
    _pulses(home, n=MOMENTARY_MIN_STAYS // 2)            # 23:30-23:35, then lying still
    assert not home.engine.home.mat_momentary("bed")
    home.run_to("2025-01-16T01:30:00")
    assert home.types() == []                            # old rules: 00:19:59
    home.see("motion", "pir_kitchen")                    # up: judged as with a pulsing mat
    home.run(2700 + 1)
    assert home.when("night_out_of_bed") == "2025-01-16T02:15:00"


def test_before_the_mat_is_judged_a_long_stay_ending_is_leaving_the_bed() -> None:
    home = Home(only(night_out_of_bed=NIGHT), start="2025-01-15T23:30:00")
    home.see("bed_on")
    home.run(59)
    home.see("bed_off")                                  # 59 s: a pulse's length
    home.see("bed_on")
    home.run_to("2025-01-16T02:00:00")
    home.see("bed_off")                                  # 2 h 30: leaving the bed
    home.run(2700 + 1)
    assert home.when("night_out_of_bed") == "2025-01-16T02:45:00"
    assert len(home.engine.home.mat_stays["bed"]) == 2


def test_with_a_pulsing_bed_leaving_is_seen_outside_the_bedroom() -> None:
    home = Home(only(night_out_of_bed=NIGHT), start="2025-01-15T23:30:00")
    _pulses(home)
    home.run_to("2025-01-16T02:00:00")
    home.see("motion", "pir_kitchen")                    # up: seen in the kitchen
    home.run(2700 - 1)
    assert home.types() == []
    home.run(2)
    _wall, alert = home.first("night_out_of_bed")
    assert home.when("night_out_of_bed") == "2025-01-16T02:45:00"
    assert alert.data["out_of_bed_s"] == 2700.0


def test_with_a_pulsing_bed_activity_in_the_bedroom_is_back() -> None:
    home = Home(only(night_out_of_bed=NIGHT), start="2025-01-15T23:30:00")
    _pulses(home)
    home.run_to("2025-01-16T02:00:00")
    home.see("motion", "pir_kitchen")
    home.run_to("2025-01-16T02:40:00")
    home.see("motion", "pir_bedroom")                    # back in the bedroom at 40 min
    home.run_to("2025-01-16T06:59:00")
    assert home.types() == []


# -- a pulsing mat stuck "occupied" ---------------------------------------------------------------
def test_a_stuck_pulsing_mat_is_not_presence() -> None:
    home = Home(only(inactivity=ALL_DAY), start="2025-01-15T08:00:00")
    _pulses(home)                                        # 08:00-08:10
    home.run_to("2025-01-15T09:00:00")
    home.see("bed_on")                                   # and it sticks there
    home.run_to("2025-01-15T12:59:59")
    assert home.alarms() == []
    home.run(2)
    assert home.when("inactivity") == "2025-01-15T13:00:00"   # old rules: never


def test_a_stuck_pulsing_bed_mat_is_not_in_bed_at_the_not_up_deadline() -> None:
    home = Home(only(not_up=NotUpRule(by="11:00", morning_from="05:00")),
                start="2025-01-15T04:00:00")
    _pulses(home)
    home.run_to("2025-01-15T04:30:00")
    home.see("bed_on")                                   # stuck from 04:30
    home.run_to("2025-01-15T08:00:00")
    home.see("motion", "pir_kitchen")                    # up and about
    home.run_to("2025-01-15T12:00:00")
    assert home.types() == []                            # old rules: not_up at 11:00


def test_a_pulsing_chair_mat_never_raises_chair_too_long() -> None:
    home = Home(only(chair_too_long=ChairTooLongRule(after_s=4 * H)))
    _pulses(home, "chair")
    home.see("chair_on")                                 # stuck
    home.run(6 * H)
    assert home.types() == []                            # old rules: chair_too_long at 4 h


def test_a_level_mat_keeps_its_meaning() -> None:
    home = Home(only(night_out_of_bed=NIGHT), start="2025-01-15T23:30:00")
    home.see("bed_on")
    home.run_to("2025-01-16T02:00:00")
    home.see("bed_off")
    home.run(2700 + 1)
    assert home.when("night_out_of_bed") == "2025-01-16T02:45:00"
    assert not home.engine.home.mat_momentary("bed")


def test_what_a_mat_showed_survives_a_restart() -> None:
    cfg = only(inactivity=ALL_DAY)
    first = Home(cfg, start="2025-01-15T08:00:00")
    _pulses(first)
    snap = first.engine.snapshot(first.now())
    assert snap["home"]["mat_stays"] == {"bed": [1.0] * MOMENTARY_MIN_STAYS}
    second = Home(cfg, start="2025-01-15T08:11:00")
    second.engine.restore(snap, second.now(), downtime_s=60.0)
    assert second.engine.home.mat_momentary("bed")
    second.see("bed_on")                                 # stuck after the restart
    assert not second.engine.home.present


# -- coming home without the front door ---------------------------------------------------------
def _out_since_ten() -> Home:
    home = Home(only(inactivity=ALL_DAY, away=AwayRule(presume_after_s=600,
                                                       not_returned_after_s=12 * H)),
                start="2025-01-15T10:00:00")
    home.see("open")
    home.see("close")
    home.run(601)
    assert home.engine.home.away
    return home


def test_a_lone_sensor_does_not_end_an_absence() -> None:
    home = _out_since_ten()
    home.run_to("2025-01-15T12:00:00")
    home.see("motion", "pir_kitchen")                    # a stray trigger
    home.run(60)
    home.see("motion", "pir_kitchen")                    # the same sensor again
    assert home.engine.home.away
    home.run_to("2025-01-15T12:03:01")
    home.see("motion", "pir_living")                     # another, 121 s after the last
    assert home.engine.home.away
    home.run_to("2025-01-15T21:59:59")
    assert home.alarms() == []                           # old rules: inactivity at 16:00
    home.run(2)
    assert home.when("not_returned") == "2025-01-15T22:00:00"


def test_two_sensors_within_two_minutes_end_an_absence() -> None:
    home = _out_since_ten()
    home.run_to("2025-01-15T12:00:00")
    home.see("motion", "pir_kitchen")
    home.run(119)
    home.see("motion", "pir_living")
    assert not home.engine.home.away
    home.run(4 * H - 1)
    assert home.alarms() == []
    home.run(2)
    assert home.when("inactivity") == "2025-01-15T16:01:59"
    assert "not_returned" not in home.types()


def test_a_press_or_a_level_mat_ends_an_absence_alone() -> None:
    home = _out_since_ten()
    home.run_to("2025-01-15T12:00:00")
    home.see("cancel")
    assert not home.engine.home.away
    home = _out_since_ten()
    home.run_to("2025-01-15T12:00:00")
    home.see("chair_on")
    assert not home.engine.home.away
