"""Outcome figures over a recorded week (tests/unit/report_helpers.py), stated by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.model import Priority
from agent.report.build import build_report, summarise_day
from agent.report.period import day_bounds, recent_days
from agent.report.records import Record, open_readonly
from agent.report.summary import DeviceFacts, summarise
from tests.unit.report_helpers import DAYS, HUB, TZ, at, write_week

DEVICES = [DeviceFacts("cord-bath", "pull_cord"), DeviceFacts("pir-hall", "pir")]
# Alarms per day: pull_cord daily, pendant on 0/3/6 (+1 pending on 6), fall on 2,
# inactivity on 5, an unsynchronised pull_cord on 6.
ALARMS_PER_DAY = [2, 1, 2, 2, 1, 2, 4]
# Medians of the synchronised, delivered alarms' latencies (ms) per day.
MEDIAN_MS = [120.0, 50.0, 90.0, 135.0, 80.0, 90.0, 150.0]


@pytest.fixture
def week_db(tmp_path: Path):
    week = write_week(tmp_path / "events.db")
    db = open_readonly(week.store_path)
    yield db
    db.close()


@pytest.fixture
def report(week_db):
    return build_report(week_db, hub_id=HUB, tz=TZ, days=DAYS, now=at(6, 23, 59) + 3600 * 24,
                        devices=DEVICES)


def test_the_dst_day_is_23_hours_and_recent_days_end_today() -> None:
    start, end = day_bounds(DAYS[6], TZ)
    assert end - start == 23 * 3600
    start, end = day_bounds(DAYS[0], TZ)
    assert end - start == 24 * 3600
    assert recent_days(7, at(6, 12), TZ) == DAYS


def test_each_day_counts_alarms_by_type(report) -> None:
    assert [d.label for d in report.days] == [d.isoformat() for d in DAYS]
    assert [d.alarms for d in report.days] == ALARMS_PER_DAY
    assert report.days[6].alarms_by_type == {"pull_cord": 2, "pendant": 2}
    assert report.days[2].alarms_by_type == {"pull_cord": 1, "fall": 1}
    assert report.total.alarms == 14
    assert report.total.alarms_by_type == {"pull_cord": 8, "pendant": 4, "fall": 1, "inactivity": 1}


def test_cancellations_falls_inactivity_and_tests(report) -> None:
    days = report.days
    assert [d.cancelled_alarms for d in days] == [0, 1, 0, 1, 1, 0, 0]
    assert days[1].cancelled_by_type == {"pull_cord": 1}
    assert days[4].cancelled_by_type == {"fall": 1}
    assert [d.falls for d in days] == [0, 0, 1, 0, 0, 0, 0]
    assert days[4].falls_cancelled == 1
    # A fall the wearer got up from is a warning: counted, never an alarm or a cancellation.
    assert [d.falls_recovered for d in days] == [0, 0, 0, 0, 1, 0, 0]
    assert days[4].alarms == 1 and days[4].to_dict()["falls_recovered"] == 1
    assert [d.inactivity_alerts for d in days] == [0, 0, 0, 0, 0, 1, 0]
    assert days[5].inactivity_prewarnings == 1
    assert [d.test_alarms for d in days] == [1, 0, 0, 0, 0, 0, 0]
    t = report.total
    assert (t.cancelled_alarms, t.falls, t.falls_cancelled, t.inactivity_alerts, t.test_alarms) == \
        (3, 1, 1, 1, 1)
    assert t.cancelled_by_type == {"pull_cord": 2, "fall": 1}
    assert t.falls_recovered == 1
    assert t.warnings_by_type == {"inactivity_prewarning": 1, "device_offline": 1, "battery_low": 1,
                                  "fall_recovered": 1}


def test_delivery_latency_leaves_out_pending_and_unsynchronised_alarms(report) -> None:
    assert [d.latency.median_ms for d in report.days] == pytest.approx(MEDIAN_MS, abs=0.01)
    assert [d.undelivered_alarms for d in report.days] == [0, 0, 0, 0, 0, 0, 1]
    lat = report.total.latency
    assert lat.count == 12
    assert lat.median_ms == pytest.approx(90.0, abs=0.01)
    assert lat.p95_ms == pytest.approx(200.0, abs=0.01)
    assert lat.max_ms == pytest.approx(200.0, abs=0.01)
    assert [d.clock_synced for d in report.days] == [True] * 6 + [False]


def test_device_uptime_crosses_midnight_and_battery_is_the_latest_known(report) -> None:
    def dev(summary, device_id):
        return next(d for d in summary.devices if d.device_id == device_id)

    day3, day4 = dev(report.days[3], "pendant-1"), dev(report.days[4], "pendant-1")
    assert day3.offline_minutes == pytest.approx(120.0)
    assert day3.uptime_pct == pytest.approx(100.0 * (1 - 120 / 1440))
    assert day3.offline_events == 1
    assert day4.offline_minutes == pytest.approx(60.0)   # offline since yesterday 22:00
    assert day4.offline_events == 0
    assert dev(report.days[5], "pendant-1").uptime_pct == pytest.approx(100.0)
    total = dev(report.total, "pendant-1")
    assert total.offline_minutes == pytest.approx(180.0)
    assert total.uptime_pct == pytest.approx(100.0 * (1 - 180 / (6 * 1440 + 1380)))
    # Battery: each day's own summary event; on day 6 the battery_low event (18 %) is newer
    # than the last summary (75 %).
    assert [dev(d, "pendant-1").battery_pct for d in report.days[:6]] == [80, 79, 78, 77, 76, 75]
    assert dev(report.days[6], "pendant-1").battery_pct == 18.0
    assert total.battery_pct == 18.0 and total.battery_low
    # Configured devices are listed even when they never reported anything.
    assert dev(report.total, "pir-hall").uptime_pct == pytest.approx(100.0)
    assert dev(report.total, "pir-hall").battery_pct is None


def test_offline_minutes_come_from_the_stored_summaries(report) -> None:
    assert [d.offline_minutes for d in report.days] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, None]
    assert report.total.offline_minutes == 150.0
    assert report.offline_days_known == 6


def test_backlog_counts_pending_events(report) -> None:
    backlog = report.total.backlog
    assert backlog is not None
    assert (backlog["alarm"], backlog["telemetry"], backlog["total"]) == (1, 7, 8)
    assert backlog["oldest_age_s"] > 0


def test_summary_json_has_the_contract_fields(report) -> None:
    doc = report.to_dict()
    day = doc["days"][3]
    for key in ("date", "start", "end", "timezone", "partial", "clock_synced", "alarms_total",
                "alarms_by_type", "cancelled_alarms", "cancelled_by_type", "falls",
                "falls_cancelled", "falls_recovered", "inactivity_alerts", "inactivity_by_type",
                "test_alarms",
                "alarm_latency_ms", "undelivered_alarms", "devices", "offline_minutes", "backlog"):
        assert key in day, key
    assert day["date"] == "2025-03-27" and day["alarms_total"] == 2
    assert day["alarm_latency_ms"]["median"] == 135.0
    assert doc["total"]["offline_days_known"] == 6


def test_a_day_in_progress_is_partial_and_uptime_stops_at_now(week_db) -> None:
    now = at(3, 23)   # one hour offline so far (since 22:00)
    s = summarise_day(week_db, DAYS[3], TZ, now=now, devices=DEVICES)
    assert s.partial
    pendant = next(d for d in s.devices if d.device_id == "pendant-1")
    assert pendant.offline_minutes == pytest.approx(60.0)
    assert pendant.uptime_pct == pytest.approx(100.0 * (1 - 60 / (23 * 60)))


def test_a_device_offline_before_the_period_and_never_back_is_offline_throughout() -> None:
    prior = [Record(1, "a", Priority.WARNING, "device_offline", "bed-mat", 0.0, 1.0)]
    s = summarise([], 1000.0, 1000.0 + 86400, label="d", timezone="UTC",
                  devices=[DeviceFacts("bed-mat", "bed_mat")], prior_supervision=prior)
    assert s.devices[0].uptime_pct == 0.0
    assert s.devices[0].offline_minutes == pytest.approx(1440.0)


def test_a_cancel_of_an_alarm_from_the_day_before_counts_once_by_its_recorded_type() -> None:
    recs = [
        Record(1, "c1", Priority.INFO, "alarm_cancelled", "cancel", 10.0, 11.0,
               data={"cancelled_ids": ["x", "y"], "cancelled_types": ["pendant", "button"]}),
        Record(2, "c2", Priority.INFO, "alarm_cancelled", "cancel", 20.0, 21.0,
               data={"cancelled_ids": ["x"], "cancelled_types": ["pendant"]}),
    ]
    s = summarise(recs, 0.0, 100.0, label="d", timezone="UTC")
    assert s.cancelled_by_type == {"pendant": 1, "button": 1}
    assert s.alarms == 0


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no event store"):
        open_readonly(tmp_path / "absent.db")
