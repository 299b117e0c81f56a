"""``not_returned`` learns how long this household stays out (issue 14).

The threshold is ``away_factor`` x the ``away_quantile`` of the completed absences (front
door out -> back), clamped to ``away_min_s..away_max_s``, learned once the learning period
is over, stored with the rest of the household and back after a restart. Each expected
value is worked out by hand in the test.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from inactivity_helpers import wall_at
from test_inactivity_restart import Hub

from agent.cli import main
from agent.clock import ManualClock
from agent.inactivity.config import LearnedRoutine
from agent.inactivity.household import HouseholdRecorder, learn_household

H = 3600.0
MONDAY = date(2025, 1, 13)
DOC: dict[str, Any] = {
    "auto_rules": False,
    "away": {"presume_after_s": 600, "not_returned_after_s": 12 * H},
    "learned": {"min_days": 3, "away_factor": 1.5, "away_quantile": 1.0,
                "away_min_s": 12 * H, "away_max_s": 24 * H},
}


def test_the_threshold_is_a_factor_times_a_quantile_of_the_absences() -> None:
    rec = HouseholdRecorder()
    for i, hours in enumerate((2, 4, 6, 8, 10, 14)):
        rec.seen(MONDAY + timedelta(days=i))
        rec.session("away", MONDAY + timedelta(days=i), hours * H)
    today = MONDAY + timedelta(days=7)
    # Quantile 0.9 of six: position 4.5, half way from 10 h to 14 h = 12 h; x 1.25 = 15 h.
    hh = learn_household(rec, LearnedRoutine(away_factor=1.25, away_quantile=0.9,
                                             away_max_s=16 * H), today)
    assert hh.after_s["away"] == 15 * H
    assert hh.longest_s["away"] == 14 * H
    assert hh.as_dict()["sessions"]["away"] == {
        "threshold_s": 15 * H, "sessions": 6, "longest_s": 14 * H,
        "quantile": 0.9, "quantile_s": 12 * H, "factor": 1.25}
    # Bounded both ways: 2 x 14 h = 28 h -> 24 h; 1 x 12 h would be 12 h, under 13 h -> 13 h.
    assert learn_household(rec, LearnedRoutine(away_factor=2.0, away_max_s=24 * H),
                           today).after_s["away"] == 24 * H
    assert learn_household(rec, LearnedRoutine(away_factor=1.0, away_quantile=0.9,
                                               away_min_s=13 * H), today).after_s["away"] == 13 * H
    # chair / night keep their own factor (x the longest), untouched by the away pair.
    rec.session("chair", MONDAY, 2 * H)
    assert learn_household(rec, LearnedRoutine(session_factor=1.5, away_factor=5.0),
                           today).after_s["chair"] == 3 * H


def _to(hub: Hub, local: str) -> None:
    hub.run(wall_at(local) - hub.clock.wall())


def _at_home(hub: Hub, until: str) -> None:
    """Moving about every 2 h up to ``until``."""
    end = wall_at(until)
    while hub.clock.wall() + 2 * H < end:
        hub.run(2 * H)
        hub.see("motion", "pir_kitchen")
    _to(hub, until)


def _out(hub: Hub, leave: str, back: str) -> None:
    _to(hub, leave)
    hub.see("motion", "pir_kitchen")
    hub.see("open", "front")
    hub.see("close", "front")
    _to(hub, back)
    hub.see("open", "front")                              # home again
    hub.see("close", "front")
    hub.see("motion", "pir_kitchen")


def test_absences_are_learned_even_when_they_raised_the_alarm(tmp_path: Path,
                                                             capsys: Any) -> None:
    clock = ManualClock(mono=5000.0, wall=wall_at("2025-01-13T04:00:00"))
    hub = Hub(tmp_path / "a.db", clock, DOC)
    # Monday, learning period: out 09:00-23:00 (14 h). The default 12 h raises at 21:00.
    _out(hub, "2025-01-13T09:00:00", "2025-01-13T23:00:00")
    assert hub.alarms("not_returned") == ["2025-01-13T21:00:00"]
    _at_home(hub, "2025-01-16T06:00:00")                  # Tue, Wed at home; Thu: ready
    hh = hub.det.engine.learning.household               # type: ignore[union-attr]
    assert hh.ready and hh.after_s["away"] == 21 * H      # 1.5 x 14 h, inside 12..24 h
    # Thursday: out 08:00 to Friday 04:00 (20 h): fine, no alarm (the old fixed 12 h: 20:00).
    _out(hub, "2025-01-16T08:00:00", "2025-01-17T04:00:00")
    assert hub.alarms("not_returned") == ["2025-01-13T21:00:00"]
    _at_home(hub, "2025-01-17T09:00:00")
    hub.stop()
    # A restart: the absences are stored (the 20 h one, back on Friday, counts from Saturday).
    clock.advance(600)
    again = Hub(tmp_path / "a.db", clock, DOC)
    assert again.det.engine.learning.household.after_s["away"] == 21 * H  # type: ignore[union-attr]
    _out(again, "2025-01-17T10:00:00", "2025-01-18T20:00:00")   # 34 h out
    # Saturday: 1.5 x 20 h = 30 h, capped at 24 h: raised at the bound, not at 21 h.
    assert again.alarms("not_returned") == ["2025-01-18T10:00:00"]
    assert again.ctx.events[-1].data["threshold_s"] == 24 * H
    again.stop()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'hub_id = "t"\n[store]\npath = "{tmp_path / "a.db"}"\n'
                   '[inactivity.away]\nnot_returned_after_s = 43200\n'
                   '[inactivity.learned]\nmin_days = 3\naway_factor = 1.5\n')
    assert main(["routine", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    # The report learns up to the last recorded day (Friday; out since): two absences.
    assert ("not_returned: after 24h00m (1.5 x 20h00m, the longest of 2 absence(s), longest"
            " 20h00m; bounds 12h00m-24h00m; default 12h00m)") in text


@pytest.mark.parametrize("hours", [11.0, 13.0])
def test_the_learning_period_keeps_the_default(tmp_path: Path, hours: float) -> None:
    clock = ManualClock(mono=5000.0, wall=wall_at("2025-01-13T04:00:00"))
    hub = Hub(tmp_path / "a.db", clock, DOC)
    _out(hub, "2025-01-13T06:00:00", "2025-01-13T07:00:00")     # a 1 h absence, day 1
    _at_home(hub, "2025-01-14T06:00:00")
    _out(hub, "2025-01-14T08:00:00",
         f"2025-01-14T{8 + int(hours):02d}:{int(hours % 1 * 60):02d}:00")
    # Not ready: the fixed 12 h, not 1.5 x 1 h (bounded up to 12 h anyway) nor anything else.
    assert hub.alarms("not_returned") == (["2025-01-14T20:00:00"] if hours > 12 else [])
    assert not hub.det.engine.learning.household.ready   # type: ignore[union-attr]


def test_leave_one_home_out_tries_not_returned_bounds_up_to_a_day_only() -> None:
    from agent.inactivity.loho import FAMILIES, LEVELS, NOT_CHOOSING_PERIOD

    # Its own family (its own share of the budget), most protective first: the bound grows
    # with the level from the fixed 12 h and never past 24 h, whatever the homes show.
    assert FAMILIES["not_returned"] == ("not_returned",)
    assert "not_returned" not in FAMILIES["sessions"]
    caps = [lv["away_max_s"] for lv in LEVELS["not_returned"]]
    assert caps == sorted(caps) and caps[0] == 12 * H and max(caps) == 24 * H
    assert LEVELS["not_returned"][0]["away_factor"] == 1.0
    assert len(LEVELS["not_returned"]) == len(LEVELS["sessions"])
    assert NOT_CHOOSING_PERIOD == ("not_returned",)
