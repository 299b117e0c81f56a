"""Leave-one-home-out's choice of a rule family's level (``loho.choose``), on a table of
false alerts per level (the replays are stubbed: this tests the choice, not the rules)."""

from __future__ import annotations

from typing import Any

from pytest_mock import MockerFixture

from agent.config import parse_config
from agent.inactivity import loho
from agent.inactivity.config import LearnedRoutine
from agent.inactivity.replay import LogEvent


def _home(name: str) -> loho.HomeData:
    log = [LogEvent(0.0, "pir", "motion", "ON", ""), LogEvent(30 * 86400.0, "pir", "motion",
                                                               "ON", "")]
    return loho.HomeData(name, log, [], {}, parse_config({"hub_id": "t"}), 0, [])


def _choose(mocker: MockerFixture, alerts: Any) -> dict[str, Any]:
    mocker.patch.object(loho, "_false_alerts", side_effect=alerts)
    return loho.choose([_home("a")], LearnedRoutine())


def _level(p: LearnedRoutine) -> int:
    return next(k for k, lv in enumerate(loho.LEVELS["inactivity"])
                if (p.factor, p.min_s) == (lv["factor"], lv["min_s"]))


def test_with_no_level_within_the_share_the_least_protective_is_taken(
        mocker: MockerFixture) -> None:
    # Two inactivity alerts at every level (e.g. during sleep), three more at levels 0-1.
    # 30 days, one home: the family's share is 1/3 of an alert, which no level meets. The
    # most protective level among those with the fewest alerts (2) was tried and not kept:
    # it overfits the training homes (docs/inactivity.md, step 5).
    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {"inactivity": 2 + (3 if _level(p) < 2 else 0)}

    assert _choose(mocker, alerts)["levels"]["inactivity"] == len(loho.LEVELS["inactivity"]) - 1


def test_a_level_within_the_share_is_still_the_most_protective_one(
        mocker: MockerFixture) -> None:
    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {"inactivity": 4 if _level(p) < 3 else 0}

    assert _choose(mocker, alerts)["levels"]["inactivity"] == 3


def test_the_first_level_within_the_share_is_taken_even_if_a_later_one_is_not(
        mocker: MockerFixture) -> None:
    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {"inactivity": [3, 0, 2, 2, 0, 0][_level(p)]}

    assert _choose(mocker, alerts)["levels"]["inactivity"] == 1


def test_no_inactivity_level_below_the_factor_floor(mocker: MockerFixture) -> None:
    mocker.patch.object(loho, "factor_floor", return_value=(1.5, {"a": 1.5}))

    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {}

    r = _choose(mocker, alerts)
    assert r["levels"]["inactivity"] == 3            # the first level with factor 1.5
    assert r["levels"]["not_up"] == 0                # the floor is for inactivity only
    assert r["inactivity_factor_floor"] == 1.5


def test_factor_floor_from_the_best_case_learner_on_each_training_home() -> None:
    from tests.unit.test_inactivity_bound import _home as bound_home

    def home(name: str, log: list[LogEvent]) -> loho.HomeData:
        cfg = parse_config({"hub_id": "t", "agent": {"timezone": "UTC"}})
        return loho.HomeData(name, log, [], {}, cfg, 0, [])

    # The bound's synthetic home: its odd day is 2 h still by 10:00, where the other days
    # (hours pooled +-1) reach 2 h: factor 1.0 and 1.25 alert (2.5 h is 10:30, before the
    # 11:00 row), 1.5 does not (11:00). A home with every day alike needs no margin.
    odd = home("odd", bound_home())
    alike = home("alike", bound_home(odd_day=-1))
    floor, per_home = loho.factor_floor([odd, alike])
    assert per_home == {"odd": 1.5, "alike": 1.0}
    assert floor == 1.5
    assert loho.factor_floor([alike]) == (1.0, {"alike": 1.0})
