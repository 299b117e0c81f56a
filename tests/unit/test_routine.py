"""The learned routine: learning, thresholds, fallback, persistence and the CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from inactivity_helpers import HOME, TYPES, Home, only, run_detector

from agent.cli import main
from agent.clock import ManualClock
from agent.config import parse_config_text
from agent.inactivity.config import InactivityWindow, LearnedRoutine
from agent.inactivity.detector import InactivityDetector
from agent.inactivity.replay import ReplayContext
from agent.inactivity.routine import HourStat, Routine, learn, quantile
from agent.model import Reading

H = 3600.0
# Per hour only (per room: test_routine_places.py).
PARAMS = LearnedRoutine(enabled=True, quantile=1.0, factor=1.5, min_s=2 * H, max_s=12 * H,
                        learn_days=28, min_days=7, min_samples=30, by_place=False)
LEARNED = only(inactivity=(InactivityWindow(start="00:00", end="00:00", after_s=4 * H),),
               learned=PARAMS)


def test_quantile_is_linear_interpolation() -> None:
    assert quantile([1, 2, 3, 4], 0.5) == 2.5
    assert quantile([5, 1, 3], 1.0) == 5
    assert quantile([7], 0.9) == 7
    with pytest.raises(ValueError):
        quantile([], 0.5)


def _bins(days: int, still: dict[int, float], observed: float = 3600.0) -> dict:
    d0 = date(2025, 1, 1)
    return {(date.fromordinal(d0.toordinal() + d), h): HourStat(s, observed)
            for d in range(days) for h, s in still.items()}


def test_learn_scales_the_maximum_and_clamps() -> None:
    still = {h: 0.5 * H for h in range(8, 22)}
    still[15] = 2.0 * H
    r = learn(_bins(12, still), PARAMS, date(2025, 1, 13))
    assert r.ready and r.days_used == 12
    assert r.thresholds[15] == pytest.approx(3.0 * H)        # 1.5 x the 2 h maximum
    assert r.thresholds[14] == pytest.approx(3.0 * H)        # pooled with the hour either side
    assert r.thresholds[11] == 2 * H                         # 0.75 h clamped up to min_s
    assert r.thresholds[3] is None and r.samples[3] == 0     # never up at 03:00: not learned
    assert r.thresholds[8] is None and r.samples[8] == 24    # 8 and 9 only: 24 < min_samples


def test_an_hour_needs_min_samples() -> None:
    r = learn(_bins(12, {h: H for h in range(8, 22)}), PARAMS, date(2025, 1, 13))
    assert r.samples[7] == 12 and r.thresholds[7] is None    # only hour 8 pooled in
    few = learn(_bins(9, {h: H for h in range(8, 22)}), PARAMS, date(2025, 1, 10))
    assert few.samples[12] == 27 and few.thresholds[12] is None
    assert few.ready                                         # 9 days >= min_days


def test_barely_observed_hours_are_not_samples() -> None:
    r = learn(_bins(12, {h: H for h in range(8, 22)}, observed=600.0), PARAMS, date(2025, 1, 13))
    assert not r.ready and all(t is None for t in r.thresholds)


def test_routine_round_trips_as_a_dict() -> None:
    r = learn(_bins(12, {h: H for h in range(8, 22)}), PARAMS, date(2025, 1, 13))
    assert Routine.from_dict(json.loads(json.dumps(r.as_dict()))) == r


def _live_days(home: Home, days: int, gap_at: int = 15, gap_h: float = 1.5) -> None:
    """Bed 23:00-07:00, moving every 20 min by day, one long quiet spell each afternoon."""
    for _ in range(days):
        home.run_to(home_day(home, "07:00"))
        home.see("bed_off")
        t = 7 * 60
        while t < 23 * 60:
            if t == gap_at * 60:
                t += int(gap_h * 60)
                continue
            home.run_to(home_day(home, f"{t // 60:02d}:{t % 60:02d}"))
            home.see("motion", "pir_kitchen")
            t += 20
        home.run_to(home_day(home, "23:00"))
        home.see("bed_on")
        home.run(3600)


def home_day(home: Home, hhmm: str) -> str:
    from inactivity_helpers import local_of

    return local_of(home.clock.wall())[:11] + hhmm + ":00"


def test_the_engine_learns_the_day_and_then_uses_it() -> None:
    home = Home(LEARNED, start="2025-01-01T06:00:00", record=True)
    home.see("bed_on")
    _live_days(home, 12)
    r = home.engine.routine
    assert r.ready and r.days_used >= 10
    assert r.thresholds[15] == pytest.approx(1.5 * 110 * 60)     # 14:40 -> 16:30 still, x 1.5
    assert r.thresholds[10] == 2 * H                         # normally never still long at 10:00
    assert r.thresholds[3] is None                           # asleep in bed: nothing to learn
    assert home.types() == []                                # an ordinary fortnight: no alerts
    # Day 13: still from 10:00. The learned 2 h applies, not the fixed 4 h.
    home.run_to(home_day(home, "07:00"))
    home.see("bed_off")
    for hhmm in ("08:00", "09:00"):                          # about the house: no spell yet
        home.run_to(home_day(home, hhmm))
        home.see("motion", "pir_kitchen")
    assert "inactivity" not in home.types()
    home.run_to(home_day(home, "10:00"))
    home.see("motion", "pir_kitchen")
    still_from = home.clock.wall()
    home.run(2 * H - 1)
    assert "inactivity" not in home.types()
    home.run(2)
    wall, alarm = home.first("inactivity")
    assert alarm.data["learned"] is True and alarm.data["threshold_s"] == 2 * H
    assert wall - still_from == pytest.approx(2 * H, abs=2)  # the 10:00 spell, not 07:00's


def test_unlearned_hours_use_the_fixed_threshold() -> None:
    home = Home(LEARNED, start="2025-01-01T06:00:00", record=True)
    home.see("bed_on")
    _live_days(home, 12)
    home.run_to(home_day(home, "02:00"))
    home.see("bed_off")                                      # up at 02:00, then nothing
    home.run(4 * H - 1)
    assert "inactivity" not in home.types()
    home.run(2)
    _, alarm = home.first("inactivity")
    assert alarm.data["learned"] is True and alarm.data["threshold_s"] == 4 * H


def test_the_prewarning_stands_down_when_the_threshold_rises() -> None:
    th = [2 * H] * 24
    th[15] = 6 * H
    routine = Routine(thresholds=tuple(th), ready=True, days_used=10)
    home = Home(LEARNED, start="2025-01-15T13:05:00", routine=routine)
    home.see("motion")
    home.run_to("2025-01-15T14:56:00")                       # 1h51 still: warning since 1h50
    assert home.engine.prewarning
    home.run_to("2025-01-15T15:00:01")                       # 15:00: 6 h threshold
    assert not home.engine.prewarning and "inactivity" not in home.types()
    home.run_to("2025-01-15T16:00:01")                       # back to 2 h, already 2h55 still:
    assert home.engine.prewarning and "inactivity" not in home.types()  # a full warning first
    home.run(600)
    assert home.when("inactivity") == "2025-01-15T16:10:00"


def test_learning_survives_a_restart_and_the_cli_shows_it(tmp_path: Path, capsys) -> None:
    db_path = tmp_path / "events.db"
    cfg = parse_config_text(
        f'hub_id = "hub-r"\n[store]\npath = "{db_path}"\n'
        '[inactivity]\nauto_rules = false\n[inactivity.learned]\nenabled = true\n'
        '[[inactivity.inactivity]]\nstart = "00:00"\nend = "00:00"\nafter_s = 14400\n')
    clock = ManualClock(mono=100.0, wall=1735711200.0)       # 2025-01-01T06:00Z
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")      # twelve simulated days of saves, quickly
    det = InactivityDetector(cfg, db, clock, HOME, boot_id="b")
    det.attach(ReplayContext(clock))  # type: ignore[arg-type]

    class Adapter(Home):
        def __init__(self) -> None:  # drive the detector through the Home helpers
            self.clock, self.engine, self.alerts, self.devices = clock, det.engine, [], HOME
            self.rules = det.ruleset

        def run(self, seconds: float) -> None:
            run_detector(det, clock, seconds)

        def see(self, what: str, device: str | None = None, **data: object) -> list:
            dev = device or {"bed_on": "bed", "bed_off": "bed"}.get(what, "pir_living")
            det.handle_reading(Reading(dev, TYPES[what], data={}))
            return []

    drive = Adapter()
    drive.see("bed_on")
    _live_days(drive, 12)
    learned = det.engine.routine
    assert learned.ready
    asyncio.run(det.stop())
    db.close()

    db2 = sqlite3.connect(db_path, isolation_level=None)
    det2 = InactivityDetector(cfg, db2, clock, HOME, boot_id="b")
    det2.attach(ReplayContext(clock))  # type: ignore[arg-type]
    assert det2.engine is not None and det2.engine.routine == learned
    db2.close()

    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'hub_id = "hub-r"\n[store]\npath = "{db_path}"\n'
                        '[inactivity.learned]\nenabled = true\n')
    assert main(["routine", "--config", str(cfg_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] and report["enabled"] and not report["preview"]
    by_hour = {h["hour"]: h for h in report["hours"]}
    assert by_hour[15]["source"] == "learned"
    assert by_hour[15]["threshold_s"] == pytest.approx(learned.thresholds[15])
    assert by_hour[3]["source"] in ("fixed", "max_s")
    assert main(["routine", "--config", str(cfg_file)]) == 0
    table = capsys.readouterr().out
    assert "15:00" in table and "learned" in table and "ready" in table


def test_routine_cli_without_a_database_says_so(tmp_path: Path, capsys) -> None:
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'hub_id = "h"\n[store]\npath = "{tmp_path / "none.db"}"\n')
    assert main(["routine", "--config", str(cfg_file)]) == 1
    assert "no agent database" in capsys.readouterr().err


def test_routine_cli_names_the_mats_that_pulse(tmp_path: Path, capsys) -> None:
    db_path = tmp_path / "events.db"
    text = (f'hub_id = "hub-p"\n[store]\npath = "{db_path}"\n'
            '[inactivity]\nauto_rules = false\n'
            '[[inactivity.inactivity]]\nstart = "00:00"\nend = "00:00"\nafter_s = 14400\n')
    clock = ManualClock(mono=100.0, wall=1735711200.0)
    db = sqlite3.connect(db_path, isolation_level=None)
    det = InactivityDetector(parse_config_text(text), db, clock, HOME, boot_id="b")
    det.attach(ReplayContext(clock))  # type: ignore[arg-type]
    for dev, stay_s in [("bed", 1.0)] * 10 + [("chair", 3600.0)] * 10:
        det.handle_reading(Reading(dev, f"{dev}_occupied", data={}))
        clock.advance(stay_s)
        det.handle_reading(Reading(dev, f"{dev}_vacated", data={}))
        clock.advance(60.0)
    asyncio.run(det.stop())
    db.close()
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(text)
    assert main(["routine", "--config", str(cfg_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"]["mats_pulsing"] == ["bed"]       # the chair reports sittings
    assert main(["routine", "--config", str(cfg_file)]) == 0
    assert "mats that pulse (read as movement, never as presence): bed" in capsys.readouterr().out


def test_routine_cli_reports_a_bad_config_like_the_other_commands(tmp_path: Path,
                                                                  capsys) -> None:
    """It said 'PATH: PATH: file not found', and named array entries by index only."""
    missing = tmp_path / "nosuch.toml"
    assert main(["routine", "--config", str(missing)]) == 2
    cap = capsys.readouterr()
    assert f"{missing}: file not found" in cap.out + cap.err
    assert f"{missing}: {missing}" not in cap.out + cap.err
    bad = tmp_path / "agent.toml"
    bad.write_text('hub_id = "h"\n[[gpio.devices]]\nid = "pir-hall"\nkind = "pir"\n'
                   'pin = 99\n')
    assert main(["routine", "--config", str(bad)]) == 2
    cap = capsys.readouterr()
    assert "gpio.devices[0] ('pir-hall').pin" in cap.out + cap.err
