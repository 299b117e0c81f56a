"""Coming home through the front door: the person is at home until the door moves again.

In a home whose only sensors are doors and cupboards, "came home, then nothing" is a
collapse just inside: the stillness rules must see it, not a new presumed absence (which
``not_returned`` would only notice hours later, or never inside a long learned limit)."""

from __future__ import annotations

from inactivity_helpers import Home, only

from agent.inactivity.config import AwayRule, InactivityWindow, NightExitRule

H = 3600.0
CFG = only(inactivity=(InactivityWindow(start="07:00", end="22:00", after_s=4 * H),),
           away=AwayRule(presume_after_s=600, not_returned_after_s=12 * H),
           night_exit=NightExitRule(start="23:00", end="07:00", after_s=600))


def _leave(home: Home) -> None:
    home.see("motion", "pir_kitchen")
    home.see("open")
    home.run(20)
    home.see("close")
    home.run(15 * 60)
    assert home.engine.home.away


def test_coming_home_then_nothing_is_stillness_not_an_absence() -> None:
    home = Home(CFG, start="2025-01-15T08:00:00")
    _leave(home)
    home.run_to("2025-01-15T12:00:00")
    home.see("open")                                     # back home
    home.run(30)
    home.see("close")                                    # the same passage
    home.run(11 * 60)
    assert not home.engine.home.away                     # not presumed out again
    home.run_to("2025-01-15T16:01:00")
    assert home.when("inactivity") == "2025-01-15T16:00:30"     # 4 h after the door closed
    assert "not_returned" not in home.types()


def test_a_return_at_night_is_not_a_night_exit() -> None:
    home = Home(CFG, start="2025-01-15T22:00:00")
    _leave(home)
    home.run_to("2025-01-15T23:30:00")
    home.see("open")
    home.run(20)
    home.see("close")
    home.run(30 * 60)
    assert "night_exit" not in home.types()
    assert not home.engine.home.away


def test_leaving_again_after_coming_home_is_an_absence() -> None:
    home = Home(CFG, start="2025-01-15T08:00:00")
    _leave(home)
    home.run_to("2025-01-15T12:00:00")
    home.see("open")
    home.see("close")
    home.run_to("2025-01-15T12:30:00")                   # no activity inside, door again
    home.see("open")
    home.run(20)
    home.see("close")
    home.run(11 * 60)
    assert home.engine.home.away
    home.run_to("2025-01-15T13:00:00")
    home.see("motion", "pir_kitchen")                    # back, seen inside by two
    home.run(30)                                         # sensors (one alone could be
    home.see("motion", "pir_living")                     # a stray trigger)
    home.run(30)
    home.see("open")                                     # and out again
    home.run(11 * 60)
    assert home.engine.home.away


def test_the_passage_survives_a_restart() -> None:
    home = Home(CFG, start="2025-01-15T22:00:00")
    _leave(home)
    home.run_to("2025-01-15T23:30:00")
    home.see("open")
    snap = home.engine.snapshot(home.now())
    again = Home(CFG, start="2025-01-15T23:30:00")
    again.clock = home.clock
    again.engine.restore(snap, home.now(), 0.0, live=True)
    again.see("close")
    again.run(30 * 60)
    assert "night_exit" not in again.types()
