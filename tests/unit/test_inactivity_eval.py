"""``tec-agent eval-inactivity`` on a small synthetic home log (the real one: integration)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from inactivity_helpers import ZONE

from agent.cli import main
from agent.inactivity.evaluation import sample_episodes
from agent.inactivity.replay import LogEvent, load_events

KEYS = ("days", "events", "alerts_by_rule", "false_alerts_per_30_days", "injected", "detected",
        "detection_delay_min_p50", "detection_delay_min_p95")
SENSORS = {"home": "synthetic", "sensors": {
    "pir_living": {"room": "Living", "kind": "motion", "role": "pir"},
    "pir_kitchen": {"room": "Kitchen", "kind": "motion", "role": "pir"},
    "bed": {"room": "Bedroom", "kind": "other", "role": "bed_pressure_mat"},
    "seat": {"room": "Living", "kind": "other", "role": "seat_pressure_mat"},
    "front": {"room": "Entrance", "kind": "door", "role": "main_entrance_door"},
    "flush": {"room": "Bathroom", "kind": "other", "role": "toilet_flush"},
}}


def _write_home(tmp_path: Path, days: int = 10) -> tuple[Path, Path, Path]:
    rows, labels = [], []
    t0 = datetime(2025, 2, 3)

    def add(t: datetime, sensor: str, kind: str, on: bool) -> None:
        value = ("OPEN" if on else "CLOSE") if kind == "door" else ("ON" if on else "OFF")
        rows.append((t.isoformat(), sensor, kind, value))

    for d in range(days):
        day = t0 + timedelta(days=d)
        add(day + timedelta(hours=7), "bed", "other", False)
        m = 7 * 60 + 5
        while m < 22 * 60 + 50:
            if 10 * 60 <= m < 11 * 60 + 30:                 # out shopping
                m += 20
                continue
            if 19 * 60 <= m < 21 * 60:                      # TV in the chair
                m += 20
                continue
            t = day + timedelta(minutes=m)
            sensor = "pir_kitchen" if m % 40 else "pir_living"
            add(t, sensor, "motion", True)
            add(t + timedelta(seconds=3), sensor, "motion", False)
            m += 20
        add(day + timedelta(hours=9), "flush", "other", True)
        add(day + timedelta(hours=9, seconds=30), "flush", "other", False)
        add(day + timedelta(hours=10), "front", "door", True)
        add(day + timedelta(hours=10, seconds=5), "front", "door", False)
        add(day + timedelta(hours=11, minutes=30), "front", "door", True)
        add(day + timedelta(hours=11, minutes=30, seconds=5), "front", "door", False)
        labels.append(((day + timedelta(hours=10)).isoformat(),
                       (day + timedelta(hours=11, minutes=30)).isoformat(), "Leaving"))
        add(day + timedelta(hours=19), "seat", "other", True)
        add(day + timedelta(hours=21), "seat", "other", False)
        add(day + timedelta(hours=23), "bed", "other", True)
    rows.sort()
    events = tmp_path / "synth_events.csv.gz"
    with gzip.open(events, "wt", encoding="utf-8") as fh:
        fh.write("ts,sensor_id,kind,value,activity\n")
        fh.writelines(f"{a},{b},{c},{v},\n" for a, b, c, v in rows)
    acts = tmp_path / "synth_activities.csv.gz"
    with gzip.open(acts, "wt", encoding="utf-8") as fh:
        fh.write("start,end,activity\n")
        fh.writelines(f"{a},{b},{c}\n" for a, b, c in labels)
    sensors = tmp_path / "synth_sensors.json"
    sensors.write_text(json.dumps(SENSORS))
    return events, sensors, acts


def _run(capsys, *args: str) -> dict:
    assert main(["eval-inactivity", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_prints_the_named_figures_side_by_side(tmp_path: Path, capsys) -> None:
    events, sensors, _ = _write_home(tmp_path)
    report = _run(capsys, "--events", str(events), "--sensors", str(sensors),
                  "--inject", "3", "--seed", "7", "--no-halves")
    assert report["events"] > 500 and report["injected"] == 3
    assert report["labels"].endswith("synth_activities.csv.gz")
    for variant in ("fixed_rules", "learned_routine", "fixed_12h_timer"):
        part = report[variant]
        assert all(k in part for k in KEYS), variant
        assert part["injected"] == 3 and part["detected"] == 3
    fixed = report["fixed_rules"]
    assert fixed["false_alerts"] == 0                       # an orderly synthetic life
    assert fixed["detected_in_time"] == 3
    assert fixed["detection_delay_min_p50"] <= 4 * 60 + 5
    assert report["fixed_12h_timer"]["detection_delay_min_p50"] > 10 * 60
    assert fixed["away_presumed_h"] == pytest.approx(fixed["away_labelled_h"], abs=2.0)
    assert report["rules"]["inactivity"][0]["start"] == "00:00"   # bed mat: all day


def test_the_same_seed_gives_the_same_figures(tmp_path: Path, capsys) -> None:
    events, sensors, _ = _write_home(tmp_path, days=6)
    args = ("--events", str(events), "--sensors", str(sensors), "--inject", "2", "--seed", "3")
    a, b = _run(capsys, *args), _run(capsys, *args)
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b and "halves" in a
    assert set(a["halves"]) == {"learn_first_test_second", "learn_second_test_first"}


def test_config_rules_are_used_when_given(tmp_path: Path, capsys) -> None:
    events, sensors, _ = _write_home(tmp_path, days=4)
    cfg = tmp_path / "agent.toml"
    cfg.write_text('hub_id = "h"\n[inactivity]\nauto_rules = false\n'
                   '[[inactivity.inactivity]]\nstart = "07:00"\nend = "22:00"\nafter_s = 3600\n')
    report = _run(capsys, "--events", str(events), "--sensors", str(sensors), "--config", str(cfg),
                  "--inject", "0", "--no-halves")
    assert report["rules"]["inactivity"] == [{"start": "07:00", "end": "22:00", "after_s": 3600.0}]
    assert report["rules"]["not_up"] is None
    # The daily 90-minute shopping trip is not seen as away (no away rule): 1 h alarms fire.
    assert report["fixed_rules"]["alerts_by_rule"].get("inactivity", 0) >= 3


def test_bad_inputs_are_reported_not_raised(tmp_path: Path, capsys) -> None:
    events, sensors, _ = _write_home(tmp_path, days=2)
    assert main(["eval-inactivity", "--events", str(tmp_path / "nope.csv"),
                 "--sensors", str(sensors)]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["eval-inactivity", "--events", str(events), "--sensors", str(bad)]) == 2
    assert "sensors" in capsys.readouterr().err
    broken = tmp_path / "broken.csv"
    broken.write_text("ts,sensor_id,kind,value\nyesterday,pir,motion,ON\n")
    assert main(["eval-inactivity", "--events", str(broken), "--sensors", str(sensors)]) == 2
    assert "bad timestamp" in capsys.readouterr().err


def test_rows_out_of_order_are_sorted_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("ts,sensor_id,kind,value,activity\n2025-01-01T10:00:00,a,motion,ON,\n"
                 "2025-01-01T09:00:00,a,motion,OFF,\n2025-01-01T11:00:00,a,motion,ON,\n")
    log, disorder = load_events(p, ZONE)
    assert disorder == 1 and [e.value for e in log] == ["OFF", "ON", "ON"]


def test_episodes_start_at_home_and_fit_in_the_log() -> None:
    log = [LogEvent(float(t), "a", "motion", "ON", "") for t in range(0, 10 * 86400, 600)]
    from agent.inactivity.replay import Labelled
    away = [Labelled(d * 86400 + 36000, d * 86400 + 72000, "Leaving") for d in range(10)]
    eps = sample_episodes(log, away, 30, 1, 14 * 3600)
    assert len(eps) == 30 and eps == sorted(eps)
    assert all(86400 <= t <= log[-1].wall - 14 * 3600 for t in eps)
    assert not any(lb.start <= t < lb.end for t in eps for lb in away)
    assert sample_episodes(log, away, 30, 1, 14 * 3600) == eps


def test_a_prewarning_counts_as_cleared_only_with_recorded_activity_inside_it() -> None:
    from agent.inactivity.evaluation import cleared_by_activity
    from agent.model import Event, Priority

    def ev(type_: str, wall: float) -> Event:
        return Event(type_, Priority.WARNING, "hub", wall=wall)

    warned = [ev("inactivity_prewarning", 1000.0),   # a sensor row 300 s in: cleared
              ev("inactivity_prewarning", 5000.0),   # stood down (threshold rose): no row
              ev("not_up_prewarning", 9000.0)]       # a row inside, but the alarm followed
    alarms = [ev("not_up", 9600.0)]
    log_walls = [900.0, 1300.0, 6000.0, 9100.0]
    assert cleared_by_activity(warned, alarms, log_walls, 600.0) == 1
    assert cleared_by_activity(warned, [], log_walls, 600.0) == 2
    assert cleared_by_activity(warned, alarms, log_walls, 50.0) == 0     # rows after the window
