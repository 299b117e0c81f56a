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


def test_alerts_every_level_raises_do_not_push_the_choice_to_the_least_protective(
        mocker: MockerFixture) -> None:
    # Two inactivity alerts at every level (e.g. during sleep), three more at levels 0-1.
    # 30 days, one home: the family's share is 1/3 of an alert, which no level meets.
    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {"inactivity": 2 + (3 if _level(p) < 2 else 0)}

    assert _choose(mocker, alerts)["levels"]["inactivity"] == 2


def test_a_level_within_the_share_is_still_the_most_protective_one(
        mocker: MockerFixture) -> None:
    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {"inactivity": 4 if _level(p) < 3 else 0}

    assert _choose(mocker, alerts)["levels"]["inactivity"] == 3


def test_fewest_alerts_reached_only_late_takes_that_level(mocker: MockerFixture) -> None:
    def alerts(home: loho.HomeData, p: LearnedRoutine) -> dict[str, int]:
        return {"inactivity": max(1, 6 - _level(p))}     # 6, 5, 4, 3, 2, 1

    assert _choose(mocker, alerts)["levels"]["inactivity"] == 5
