"""Each rule's fire / don't-fire edges, on an injected clock (no real waits)."""

from __future__ import annotations

import pytest
from inactivity_helpers import Home, config, only, wall_at

from agent.inactivity.config import (
    AwayRule,
    ChairTooLongRule,
    InactivityWindow,
    NightExitRule,
    NightOutOfBedRule,
    NotUpRule,
)
from agent.model import Priority

H = 3600.0
ALL_DAY = (InactivityWindow(start="00:00", end="00:00", after_s=4 * H),)
DAYTIME = (InactivityWindow(start="07:00", end="22:00", after_s=4 * H),)


# -- inactivity ---------------------------------------------------------------------------
def test_inactivity_prewarns_then_alarms_exactly_at_the_threshold() -> None:
    home = Home(only(inactivity=ALL_DAY, prewarning_s=600))
    home.see("motion")                                   # 08:00
    home.run(4 * H - 601)
    assert home.types() == [] and not home.engine.prewarning
    home.run(1)
    assert home.types() == ["inactivity_prewarning"] and home.engine.prewarning
    assert home.alerts[0][1].priority == Priority.WARNING
    home.run(599)
    assert "inactivity" not in home.types()              # one second short of 4 h
    home.run(1)
    wall, alarm = home.first("inactivity")
    assert wall == pytest.approx(wall_at("2025-01-15T12:00:00"), abs=0.01)
    assert alarm.priority == Priority.ALARM and alarm.data["threshold_s"] == 4 * H
    assert alarm.data["last_device"] == "pir_living" and not home.engine.prewarning
    home.run(10 * H)
    assert home.types().count("inactivity") == 1         # one alarm per episode


def test_activity_or_cancel_during_prewarning_resets_it() -> None:
    home = Home(only(inactivity=ALL_DAY, prewarning_s=600))
    home.see("motion")
    home.run(4 * H - 300)
    assert home.engine.prewarning
    home.see("cancel")                                   # the hub's cancel button
    assert not home.engine.prewarning
    home.run(4 * H - 700)
    assert "inactivity" not in home.types()
    home.run(300)
    assert home.engine.prewarning
    home.see("motion", "pir_kitchen")                    # any activity
    assert not home.engine.prewarning
    home.run(4 * H - 1)
    assert "inactivity" not in home.types()
    home.run(2)
    assert home.types().count("inactivity") == 1


def test_alarm_rearms_after_the_person_moves_again() -> None:
    home = Home(only(inactivity=ALL_DAY, prewarning_s=600))
    home.see("motion")
    home.run(5 * H)
    home.see("motion")
    home.run(4 * H + 1)
    assert home.types().count("inactivity") == 2


def test_only_window_time_counts() -> None:
    home = Home(only(inactivity=DAYTIME, prewarning_s=600), start="2025-01-15T21:00:00")
    home.see("motion")                                   # 1 h of window left today
    home.run_to("2025-01-16T09:59:00")
    assert "inactivity" not in home.types()              # the night does not count
    home.run_to("2025-01-16T10:00:01")
    assert home.when("inactivity") == "2025-01-16T10:00:00"


def test_sleep_outside_the_window_never_alarms() -> None:
    home = Home(only(inactivity=DAYTIME), start="2025-01-15T22:30:00")
    home.see("motion")
    home.run_to("2025-01-16T07:30:00")
    home.see("motion")
    home.run_to("2025-01-16T08:00:00")
    assert home.types() == []


def test_an_occupied_mat_is_presence() -> None:
    home = Home(only(inactivity=ALL_DAY))
    home.see("chair_on")
    home.run(10 * H)                                     # a long sit: present, not still
    assert home.types() == []
    home.see("chair_off")
    home.run(4 * H - 1)
    assert "inactivity" not in home.types()
    home.run(2)
    assert "inactivity" in home.types()


def test_mats_can_be_plain_activity() -> None:
    home = Home(only(inactivity=ALL_DAY, mats_are_presence=False))
    home.see("chair_on")
    home.run(4 * H + 1)
    assert "inactivity" in home.types()


def test_telemetry_from_an_unknown_device_is_not_activity() -> None:
    home = Home(only(inactivity=ALL_DAY))
    home.see("motion")
    home.run(3 * H)
    from agent.inactivity.sensors import classify
    from agent.model import Reading

    r = Reading("thermometer", "telemetry", data={"room": "Living", "temperature_c": 19.0})
    assert classify(r, home.devices) is None
    home.see("clear")                                    # PIR end of motion is activity
    home.run(4 * H - 1)
    assert "inactivity" not in home.types()


# -- not_up --------------------------------------------------------------------------------
def _not_up_home(start: str = "2025-01-15T04:00:00") -> Home:
    return Home(only(not_up=NotUpRule(by="11:00", morning_from="05:00")), start=start)


def test_not_up_fires_at_the_deadline_when_still_in_bed() -> None:
    home = _not_up_home()
    home.see("bed_on")
    home.run_to("2025-01-15T10:49:59")
    assert home.types() == []
    home.run_to("2025-01-15T10:59:59")
    assert home.types() == ["not_up_prewarning"]         # buzzer/LED ten minutes before
    home.run_to("2025-01-15T11:00:01")
    wall, alert = home.first("not_up")
    assert wall == pytest.approx(wall_at("2025-01-15T11:00:00"), abs=0.01)
    assert alert.data["bed_occupied"] is True and alert.priority == Priority.ALARM
    home.run_to("2025-01-15T23:00:00")
    assert home.types().count("not_up") == 1


def test_up_and_about_outside_the_bedroom_is_not_an_alarm() -> None:
    home = _not_up_home()
    home.see("bed_on")
    home.run_to("2025-01-15T08:00:00")
    home.see("bed_off")
    home.see("motion", "pir_kitchen")
    home.run_to("2025-01-15T12:00:00")
    assert home.types() == []


def test_out_of_bed_but_never_seen_outside_the_bedroom_fires() -> None:
    home = _not_up_home()
    home.see("bed_on")
    home.run_to("2025-01-15T08:00:00")
    home.see("bed_off")
    home.see("motion", "pir_bedroom")
    home.run_to("2025-01-15T11:00:01")
    _, alert = home.first("not_up")
    assert alert.data == {**alert.data, "bed_occupied": False, "seen_outside_bedroom": False}


def test_yesterdays_activity_does_not_count_as_up() -> None:
    home = _not_up_home("2025-01-14T20:00:00")
    home.see("motion", "pir_kitchen")                    # yesterday evening
    home.see("bed_on")
    home.see("bed_off")                                  # a restless night, never left the room
    home.run_to("2025-01-15T11:00:01")
    assert "not_up" in home.types()


def test_no_verdict_without_watching_the_whole_morning() -> None:
    home = _not_up_home("2025-01-15T09:00:00")           # hub started mid-morning
    home.see("bed_on")
    home.run_to("2025-01-15T12:00:00")
    assert home.types() == []
    home.run_to("2025-01-16T11:00:01")                   # next day it has watched since 05:00
    assert home.alarms() == ["not_up"]


def test_not_up_is_suppressed_while_away() -> None:
    home = Home(only(not_up=NotUpRule(), away=AwayRule()), start="2025-01-15T04:00:00")
    home.see("motion", "pir_kitchen")
    home.run_to("2025-01-15T04:30:00")
    home.see("open")
    home.see("close")
    home.run_to("2025-01-15T11:30:00")
    assert home.engine.home.away and "not_up" not in home.types()


# -- night_out_of_bed ---------------------------------------------------------------------------
def _night_home(start: str = "2025-01-15T23:30:00") -> Home:
    h = Home(only(night_out_of_bed=NightOutOfBedRule(start="23:00", end="07:00", after_s=2700)),
             start=start)
    h.see("bed_on")
    return h


def test_out_of_bed_at_night_fires_after_the_limit() -> None:
    home = _night_home()
    home.run_to("2025-01-16T02:00:00")
    home.see("bed_off")
    home.see("motion", "pir_kitchen")                    # moving about does not reset it
    home.run(2700 - 1)
    assert home.types() == []
    home.run(2)
    assert home.when("night_out_of_bed") == "2025-01-16T02:45:00"


def test_back_in_bed_in_time_is_not_an_alarm() -> None:
    home = _night_home()
    home.run_to("2025-01-16T02:00:00")
    home.see("bed_off")
    home.run(2700 - 60)
    home.see("bed_on")
    home.run_to("2025-01-16T06:00:00")
    assert home.types() == []


def test_a_chair_counts_as_safe_but_leaving_it_restarts_the_count() -> None:
    home = _night_home()
    home.run_to("2025-01-16T02:00:00")
    home.see("bed_off")
    home.run(600)
    home.see("chair_on")                                 # 73 min of TV at 02:10
    home.run(73 * 60)
    assert home.types() == []
    home.see("chair_off")                                # 03:23, not back to bed
    home.run(2700 - 1)
    assert home.types() == []
    home.run(2)
    assert home.types() == ["night_out_of_bed"]


def test_getting_up_near_the_end_of_the_night_is_not_an_alarm() -> None:
    home = _night_home()
    home.run_to("2025-01-16T06:40:00")
    home.see("bed_off")
    home.run_to("2025-01-16T09:00:00")
    assert home.types() == []


def test_out_of_bed_outside_the_night_window_is_not_watched() -> None:
    home = _night_home("2025-01-15T21:00:00")
    home.run_to("2025-01-15T22:00:00")
    home.see("bed_off")
    home.run_to("2025-01-15T22:59:00")
    assert home.types() == []


# -- chair_too_long -----------------------------------------------------------------------
def test_chair_too_long_edges() -> None:
    home = Home(only(chair_too_long=ChairTooLongRule(after_s=4 * H)))
    home.see("chair_on")
    home.run(4 * H - 60)
    home.see("chair_off")                                # got up with a minute to spare
    home.run(H)
    assert home.alarms() == []
    home.alerts.clear()
    home.see("chair_on")
    home.run(4 * H - 1)
    assert home.types() == ["chair_too_long_prewarning"]
    home.run(2)
    _wall, alert = home.first("chair_too_long")
    assert alert.device_id == "chair" and alert.data["seated_s"] == pytest.approx(4 * H, abs=1)
    home.run(5 * H)
    assert home.alarms() == ["chair_too_long"]           # once per sitting


# -- night_exit --------------------------------------------------------------------------------
def _exit_home(start: str = "2025-01-16T02:00:00") -> Home:
    return Home(only(night_exit=NightExitRule(start="23:00", end="07:00", after_s=600),
                     door_grace_s=15.0), start=start)


def test_front_door_at_night_and_nobody_inside_fires() -> None:
    home = _exit_home()
    home.see("open")
    home.see("close")
    home.run(600 - 1)
    assert home.types() == []
    home.run(2)
    _wall, alert = home.first("night_exit")
    assert alert.device_id == "front" and home.when("night_exit") == "2025-01-16T02:10:00"


def test_coming_home_at_night_is_not_an_exit() -> None:
    home = _exit_home()
    home.see("open")
    home.see("close")
    home.run(90)
    home.see("motion", "pir_kitchen")
    home.run(3 * H)
    assert home.types() == []


def test_motion_straight_after_the_door_may_be_the_person_leaving() -> None:
    home = _exit_home()
    home.see("open")
    home.run(5)
    home.see("motion", "pir_living")                     # the hall PIR catching them go
    home.run(600)
    assert home.types() == ["night_exit"]


def test_front_door_in_the_evening_is_not_a_night_exit() -> None:
    home = _exit_home("2025-01-15T21:00:00")
    home.see("open")
    home.see("close")
    home.run(H)
    assert home.types() == []


def test_door_while_someone_is_in_bed_is_not_an_exit() -> None:
    home = _exit_home()
    home.see("bed_on")
    home.see("open")
    home.run(H)
    assert home.types() == []


# -- away / not_returned -----------------------------------------------------------------------
def _away_home() -> Home:
    return Home(only(inactivity=ALL_DAY, away=AwayRule(presume_after_s=600,
                                                       not_returned_after_s=12 * H)),
                start="2025-01-15T10:00:00")


def test_away_pauses_inactivity_and_raises_not_returned_at_the_limit() -> None:
    home = _away_home()
    home.see("motion")
    home.see("open")
    home.see("close")
    home.run(599)
    assert not home.engine.home.away
    home.run(2)
    assert home.engine.home.away
    home.run(12 * H - 600 - 10)
    assert home.types() == []                            # 12 h out: no inactivity alarm
    home.run(20)
    _wall, alert = home.first("not_returned")
    assert home.when("not_returned") == "2025-01-15T22:00:00"
    assert alert.data["threshold_s"] == 12 * H


def test_coming_back_ends_away_and_restarts_the_inactivity_count() -> None:
    home = _away_home()
    home.see("open")
    home.see("close")
    home.run_to("2025-01-15T15:00:00")
    assert home.engine.home.away
    home.see("open")
    home.see("close")
    assert not home.engine.home.away
    home.run(60)
    home.see("motion", "pir_kitchen")                    # 15:01
    home.run(4 * H - 1)
    assert "inactivity" not in home.types()
    home.run(2)
    assert home.when("inactivity") == "2025-01-15T19:01:00"
    assert "not_returned" not in home.types()


def test_motion_inside_after_the_door_means_still_at_home() -> None:
    home = _away_home()
    home.see("open")
    home.see("close")
    home.run(300)
    home.see("motion", "pir_kitchen")
    home.run(601)
    assert not home.engine.home.away


def test_no_away_presumption_while_seated() -> None:
    home = _away_home()
    home.see("chair_on")
    home.see("open")
    home.see("close")
    home.run(2 * H)
    assert not home.engine.home.away


def test_default_rules_come_from_the_sensors() -> None:
    rs = Home(config()).rules
    assert [(w.start, w.end) for w in rs.inactivity] == [("00:00", "00:00")]
    assert rs.not_up and rs.night_out_of_bed and rs.chair_too_long and rs.night_exit and rs.away
    assert rs.bedrooms == frozenset({"bedroom"}) and rs.exit_doors == frozenset({"front"})
    no_mats = {k: v for k, v in Home(config()).devices.items() if "mat" not in v.kind}
    rs2 = Home(config(), devices=no_mats).rules
    assert [(w.start, w.end) for w in rs2.inactivity] == [("07:00", "22:00")]
    assert rs2.night_out_of_bed is None and rs2.chair_too_long is None
    assert rs2.not_up is not None                        # bedroom and other-room motion
