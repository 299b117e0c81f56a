"""The best-case bound of ``python -m agent.inactivity.bound`` on a small synthetic home
with exact expected values."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from agent.inactivity.bound import HomeStillness, evaluate_home
from agent.inactivity.replay import Labelled, LogEvent

UTC = ZoneInfo("UTC")
DAY0 = datetime(2024, 3, 4, tzinfo=UTC)


def _home(days: int = 4, odd_day: int = 2) -> list[LogEvent]:
    """Rows every hour 07:00-22:00, except 09:00 (a 2 h stillness from 08:00); on
    ``odd_day`` also no 10:00 row (3 h from 08:00)."""
    log: list[LogEvent] = []
    for d in range(days):
        for h in range(7, 23):
            if h == 9 or (d == odd_day and h == 10):
                continue
            wall = (DAY0 + timedelta(days=d, hours=h)).timestamp()
            log.append(LogEvent(wall, "pir", "motion", "ON", ""))
    return log


def _at(day: int, hour: float) -> float:
    return (DAY0 + timedelta(days=day, hours=hour)).timestamp()


def test_per_hour_maxima_and_leave_one_day_out_thresholds() -> None:
    home = HomeStillness(_home(), [], UTC)
    assert home.maxima[(1, 8)] == 3600.0          # 08:00 -> 09:00 inside hour 8
    assert home.maxima[(1, 9)] == 7200.0          # reaches 2 h at 10:00
    assert home.maxima[(2, 10)] == 3 * 3600.0     # the odd day reaches 3 h at 11:00
    assert home.maxima[(1, 10)] == 3600.0
    t3 = home.thresholds(3, pool=0)               # days 0, 1, 2
    assert t3[10] == 3 * 3600.0 and t3[9] == 7200.0 and t3[11] == 3600.0
    t2 = home.thresholds(2, pool=0)               # the odd day left out
    assert t2[10] == 3600.0
    assert home.thresholds(2, pool=1)[10] == 7200.0


def test_an_injected_collapse_is_found_at_the_first_hour_whose_threshold_it_crosses() -> None:
    home = HomeStillness(_home(), [], UTC)
    table = home.thresholds(3, pool=0)
    # Last row 08:00 on day 3: hour 8 needs 1 h (09:00 is already hour 9), hour 9 needs
    # 2 h (10:00 is hour 10), hour 10 needs 3 h (11:00 is hour 11), hour 11 needs 1 h.
    assert home.crossing(_at(3, 8), table, 1.0, _at(3, 20), False) == _at(3, 11)
    # Nothing before the limit: None.
    assert home.crossing(_at(3, 8), table, 1.0, _at(3, 10.5), False) is None


def test_false_alerts_only_on_the_odd_day_and_only_below_its_margin() -> None:
    r = evaluate_home(_home(), [], UTC, days=4.0, factors=(1.0, 1.5), pools=(0, 1),
                      inject=50, seed=3)
    got = {(s["pool"], s["factor"]): s["false_alerts"] for s in r["settings"]}
    # pool 0: hour 10 learnt from the normal days is 1 h; the odd day is 2 h still by
    # 10:00 whatever the factor. Pool 1 learns 2 h there: 1.0 x 2 h is reached at 10:00
    # (alert), 1.5 x 2 h = 11:00 is the next row (no alert). Nights are not daytime.
    assert got == {(0, 1.0): 1, (0, 1.5): 1, (1, 1.0): 1, (1, 1.5): 0}
    best = r["best_within_budget"]
    assert best is not None and (best["pool"], best["factor"]) == (1, 1.5)
    assert r["daytime_injected"] > 0


def test_a_labelled_absence_is_not_stillness() -> None:
    log = _home()
    away = [Labelled(_at(2, 8), _at(2, 11), "Leaving")]
    home = HomeStillness(log, away, UTC)
    assert (2, 10) not in home.maxima and (2, 9) not in home.maxima
    assert all(not (a < _at(2, 11) and _at(2, 8) < b) for a, b in home.gaps)
