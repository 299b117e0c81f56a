"""DST change nights: windows follow the local clock, durations follow real time.

Europe/London 2025: clocks go forward 01:00 GMT -> 02:00 BST on 30 March (a 23-hour day)
and back 02:00 BST -> 01:00 GMT on 26 October (a 25-hour day).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest
from inactivity_helpers import TZ, Home, only, wall_at

from agent.inactivity.config import InactivityWindow, NightOutOfBedRule, NotUpRule
from agent.inactivity.localtime import LocalClock, Window
from agent.inactivity.routine import StillnessRecorder

H = 3600.0


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_time_in_the_spring_gap_is_the_instant_the_clock_jumps() -> None:
    lc = LocalClock(TZ)
    assert lc.instants(date(2025, 3, 30), 90) == [utc("2025-03-30T01:00:00")]
    assert lc.at(date(2025, 3, 30), 3 * 60) == utc("2025-03-30T02:00:00")


def test_a_time_in_the_autumn_fold_happens_twice() -> None:
    lc = LocalClock(TZ)
    assert lc.instants(date(2025, 10, 26), 90) == [utc("2025-10-26T00:30:00"),
                                                  utc("2025-10-26T01:30:00")]


def test_split_points_include_the_offset_change() -> None:
    lc = LocalClock(TZ, minutes=[0])
    pts = lc.split_points(utc("2025-10-25T20:00:00"), utc("2025-10-26T04:00:00"))
    assert utc("2025-10-26T01:00:00") in pts           # the transition itself
    assert utc("2025-10-25T23:00:00") in pts           # local midnight (BST)


def test_window_membership_is_by_the_local_clock() -> None:
    w = Window.parse("23:00", "07:00")
    assert w.contains(23 * 60) and w.contains(6 * 60 + 59) and not w.contains(7 * 60)
    assert Window.parse("00:00", "00:00").contains(12 * 60)


@pytest.mark.parametrize("start, expect_local", [
    ("2025-03-29T22:00:00", "2025-03-30T03:00:00"),    # spring: 4 h real = 5 h of clock
    ("2025-10-25T22:00:00", "2025-10-26T01:00:00"),    # autumn: 4 h real = 3 h of clock
])
def test_inactivity_counts_real_hours_across_a_dst_night(start: str, expect_local: str) -> None:
    home = Home(only(inactivity=(InactivityWindow(start="00:00", end="00:00", after_s=4 * H),)),
                start=start)
    home.see("motion")
    t0 = home.clock.wall()
    home.run(6 * H)
    wall, _ = home.first("inactivity")
    assert wall - t0 == pytest.approx(4 * H, abs=0.01)
    fold = 1 if start.startswith("2025-10") else 0
    assert wall == pytest.approx(datetime.fromisoformat(expect_local).replace(
        tzinfo=home.engine.clock.tz, fold=fold).timestamp(), abs=0.01)


def test_a_night_window_lasts_nine_real_hours_on_the_autumn_night() -> None:
    # 22:00-06:00 by the clock is 9 h of real time tonight: 4 h of window time after a
    # 22:00 activity is reached at 01:00 GMT (the second 01:00), still inside the window.
    home = Home(only(inactivity=(InactivityWindow(start="22:00", end="06:00", after_s=4 * H),)),
                start="2025-10-25T22:00:00")
    home.see("motion")
    home.run(12 * H)
    wall, _ = home.first("inactivity")
    assert wall == pytest.approx(utc("2025-10-26T01:00:00"), abs=0.01)


def test_window_time_on_the_spring_night_is_one_hour_short() -> None:
    # 22:00-06:00 is only 7 real hours on 30 March: 4 h accrue by 03:00 BST (02:00 UTC).
    home = Home(only(inactivity=(InactivityWindow(start="22:00", end="06:00", after_s=4 * H),)),
                start="2025-03-29T22:00:00")
    home.see("motion")
    home.run(12 * H)
    wall, _ = home.first("inactivity")
    assert wall == pytest.approx(utc("2025-03-30T02:00:00"), abs=0.01)


@pytest.mark.parametrize("day, expect_utc", [
    ("2025-03-30", "2025-03-30T10:00:00"), ("2025-10-26", "2025-10-26T11:00:00")])
def test_not_up_deadline_is_local_on_dst_days(day: str, expect_utc: str) -> None:
    home = Home(only(not_up=NotUpRule(by="11:00", morning_from="05:00")),
                start=f"{day[:8]}{int(day[8:]) - 1:02d}T20:00:00")
    home.see("bed_on")
    home.run(20 * H)
    wall, _ = home.first("not_up")
    assert wall == pytest.approx(utc(expect_utc), abs=0.01)


def test_night_out_of_bed_in_the_repeated_hour() -> None:
    home = Home(only(night_out_of_bed=NightOutOfBedRule(start="23:00", end="07:00", after_s=2700)),
                start="2025-10-25T23:30:00")
    home.see("bed_on")
    home.run(utc("2025-10-26T00:30:00") - home.clock.wall())    # 01:30 BST, first time round
    home.see("bed_off")
    t0 = home.clock.wall()
    home.run(2 * H)
    wall, _ = home.first("night_out_of_bed")
    assert wall - t0 == pytest.approx(2700, abs=0.01)            # 01:15 GMT, inside the night


def test_night_window_ends_at_local_seven_on_the_autumn_morning() -> None:
    home = Home(only(night_out_of_bed=NightOutOfBedRule(start="23:00", end="07:00", after_s=2700)),
                start="2025-10-25T23:30:00")
    home.see("bed_on")
    home.run_to("2025-10-26T06:40:00")
    home.see("bed_off")
    home.run(3 * H)
    assert home.types() == []                           # disarmed at 07:00 GMT


def test_the_repeated_hour_is_recorded_once_with_at_most_an_hour_observed() -> None:
    rec = StillnessRecorder()
    lc = LocalClock(TZ, minutes=[h * 60 for h in range(24)])
    a, b = utc("2025-10-26T00:00:00"), utc("2025-10-26T02:00:00")  # 01:00 BST .. 02:00 GMT
    edges = [a, *lc.split_points(a, b), b]
    for s, e in itertools.pairwise(edges):
        loc = lc.local((s + e) / 2)
        rec.record(loc.date(), loc.hour, e - a, e - s)
    st = rec.bins[(date(2025, 10, 26), 1)]
    assert st.observed_s == 3600.0 and st.max_still_s == pytest.approx(2 * H)
    assert wall_at("2025-10-26T01:30:00") == utc("2025-10-26T00:30:00")
