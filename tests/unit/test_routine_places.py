"""Stillness learned per room of the last activity and time-of-day band (``by_place``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from inactivity_helpers import HOME, TYPES, Home, only, run_detector, wall_at

from agent.cli import main
from agent.clock import ManualClock
from agent.config import parse_config_text
from agent.inactivity.config import InactivityConfig, InactivityWindow, LearnedRoutine
from agent.inactivity.detector import InactivityDetector
from agent.inactivity.persistence import InactivityStore
from agent.inactivity.replay import ReplayContext
from agent.inactivity.routine import (
    HourStat,
    Routine,
    band_of,
    learn,
    learn_places,
    place_key,
)
from agent.model import Reading

H = 3600.0
M = 60.0
PARAMS = LearnedRoutine(enabled=True, quantile=1.0, factor=1.5, min_s=2 * H, max_s=8 * H,
                        learn_days=28, min_days=3, min_samples=30, by_place=True,
                        place_factor=2.0, place_min_s=30 * M, place_min_samples=20)
D0 = date(2025, 1, 1)


def _day(n: int) -> date:
    return date.fromordinal(D0.toordinal() + n)


def test_bands_cover_the_day_and_places_are_rooms() -> None:
    assert [band_of(h) for h in (22, 23, 0, 5)] == ["night"] * 4
    assert [band_of(h) for h in (6, 10)] == ["morning"] * 2
    assert [band_of(h) for h in (11, 16)] == ["afternoon"] * 2
    assert [band_of(h) for h in (17, 21)] == ["evening"] * 2
    assert place_key("Bathroom", "pir_basin") == "bathroom"
    assert place_key("", "Hall_PIR") == "hall_pir"


def _week() -> dict[tuple[date, int, str], HourStat]:
    """Six days: bathroom 07-10 (10 min, once 25), kitchen 14:00 (6 samples only),
    living 12-15 (up to 5 h), hall 06-09 (5 min)."""
    out: dict[tuple[date, int, str], HourStat] = {}
    for d in range(6):
        for h in range(7, 11):
            out[(_day(d), h, "bathroom")] = HourStat(25 * M if (d, h) == (3, 8) else 10 * M, 600)
        out[(_day(d), 14, "kitchen")] = HourStat(50 * M, 900)
        for h in range(12, 16):
            out[(_day(d), h, "living")] = HourStat((h - 11) * 1.25 * H, 3600)
        for h in range(6, 10):
            out[(_day(d), h, "hall")] = HourStat(5 * M, 300)
    return out


def test_each_room_and_band_learns_factor_times_its_longest_stillness_within_bounds() -> None:
    days = {_day(d) for d in range(6)}
    cells = learn_places(_week(), PARAMS, days)
    assert cells[("bathroom", "morning")] == (50 * M, 25 * M, 24)     # 2 x 25 min
    assert cells[("hall", "morning")] == (30 * M, 5 * M, 24)          # 10 min: floor place_min_s
    assert cells[("living", "afternoon")] == (8 * H, 5 * H, 24)       # 10 h: capped at max_s
    assert ("kitchen", "afternoon") not in cells                      # 6 < place_min_samples
    # Days outside the learning window are not samples; switched off, nothing is learned.
    assert learn_places(_week(), PARAMS, {_day(d) for d in range(5)}) \
        [("bathroom", "morning")] == (50 * M, 25 * M, 20)
    assert ("bathroom", "morning") not in learn_places(_week(), PARAMS, {_day(0), _day(1)})
    assert learn_places(_week(), dataclasses.replace(PARAMS, by_place=False), days) == {}


def _hour_bins(days: int) -> dict[tuple[date, int], HourStat]:
    return {(_day(d), h): HourStat(H, 3600.0) for d in range(days) for h in range(8, 22)}


def test_learn_keeps_room_cells_beside_the_hours_and_round_trips() -> None:
    r = learn(_hour_bins(6), PARAMS, _day(6), _week())
    assert r.ready and r.places[("bathroom", "morning")] == (50 * M, 25 * M, 24)
    assert r.place_threshold("bathroom", 9) == 50 * M
    assert r.place_threshold("bathroom", 13) is None        # not seen there in that band
    assert r.place_threshold("", 9) is None
    assert Routine.from_dict(json.loads(json.dumps(r.as_dict()))) == r


def test_the_rule_takes_the_lower_of_room_and_hour() -> None:
    routine = Routine(thresholds=(4 * H,) * 24, ready=True, days_used=10,
                      places={("kitchen", "afternoon"): (H, 30 * M, 40),
                              ("living", "afternoon"): (6 * H, 3 * H, 40)})
    cfg = only(inactivity=(InactivityWindow(start="00:00", end="00:00", after_s=4 * H),),
               learned=PARAMS)
    kitchen = Home(cfg, start="2025-01-15T13:00:00", routine=routine)
    kitchen.see("motion", "pir_kitchen")
    kitchen.run(H + 1)
    _, alarm = kitchen.first("inactivity")
    assert kitchen.when("inactivity") == "2025-01-15T14:00:00"
    assert alarm.data["threshold_s"] == H and alarm.data["place"] == "kitchen"
    assert alarm.data["by_place"] is True
    living = Home(cfg, start="2025-01-15T13:00:00", routine=routine)
    living.see("motion", "pir_living")                     # the room's 6 h is above the hour's
    living.run(4 * H + 1)
    _, alarm = living.first("inactivity")
    assert living.when("inactivity") == "2025-01-15T17:00:00"
    assert alarm.data["threshold_s"] == 4 * H and alarm.data["by_place"] is False


def test_the_engine_records_stillness_per_room_of_the_last_activity() -> None:
    cfg = only(inactivity=(InactivityWindow(start="00:00", end="00:00", after_s=8 * H),),
               learned=PARAMS)
    home = Home(cfg, start="2025-01-15T08:00:00", record=True)
    home.see("motion", "pir_kitchen")
    home.run(50 * M)
    home.see("motion", "pir_living")                     # 08:50
    home.run_to("2025-01-15T10:00:00")
    rec = home.engine.recorder
    assert rec is not None
    day = date(2025, 1, 15)
    assert rec.places[(day, 8, "kitchen")].max_still_s == pytest.approx(50 * M)
    assert rec.places[(day, 8, "living")].max_still_s == pytest.approx(10 * M)
    assert rec.places[(day, 9, "living")].max_still_s == pytest.approx(70 * M)
    assert rec.places[(day, 9, "living")].observed_s == pytest.approx(H)
    assert (day, 9, "kitchen") not in rec.places
    assert rec.bins[(day, 9)].max_still_s == pytest.approx(70 * M)    # the hour, as before


def test_room_samples_are_saved_loaded_and_pruned(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    store = InactivityStore(db)
    places = {(_day(0), 8, "bathroom"): HourStat(600.0, 900.0),
              (_day(2), 14, "living room/sofa"): HourStat(3600.0, 3600.0)}
    store.save(bins={(_day(0), 8): HourStat(600.0, 900.0)}, places=places)
    assert store.load_places() == places
    assert store.load_bins() == {(_day(0), 8): HourStat(600.0, 900.0)}   # rooms kept apart
    store.save(prune_before=_day(1))
    assert store.load_places() == {(_day(2), 14, "living room/sofa"): HourStat(3600.0, 3600.0)}
    assert store.load_bins() == {}


def test_place_bounds_are_validated() -> None:
    bad = InactivityConfig(learned=dataclasses.replace(PARAMS, place_min_s=300.0))
    assert any("place_min_s" in p for p in bad.validate("inactivity"))
    assert any("place_min_s" in p
               for p in dataclasses.replace(PARAMS, place_min_s=9 * H).validate("learned"))
    assert InactivityConfig(learned=PARAMS).validate("inactivity") == []


def test_room_learning_survives_a_restart_and_the_cli_shows_it(tmp_path: Path,
                                                               capsys) -> None:
    db_path = tmp_path / "events.db"
    cfg = parse_config_text(
        f'hub_id = "hub-p"\n[store]\npath = "{db_path}"\n'
        '[inactivity]\nauto_rules = false\n[inactivity.learned]\nenabled = true\n'
        'min_days = 3\nby_place = true\nplace_min_samples = 3\nplace_min_s = 1800\n'
        'place_factor = 2.0\n'
        '[[inactivity.inactivity]]\nstart = "00:00"\nend = "00:00"\nafter_s = 14400\n')
    clock = ManualClock(mono=100.0, wall=wall_at("2025-01-01T08:00:00"))
    db = sqlite3.connect(db_path, isolation_level=None)
    det = InactivityDetector(cfg, db, clock, HOME, boot_id="b")
    det.attach(ReplayContext(clock))  # type: ignore[arg-type]

    def run(seconds: float) -> None:
        run_detector(det, clock, seconds)

    for _ in range(4):                 # four days: kitchen every 20 min 08:00-20:00
        for _ in range(36):
            det.handle_reading(Reading("pir_kitchen", TYPES["motion"], data={}))
            run(20 * M)
        run(12 * H)
    assert det.engine is not None
    learned = det.engine.routine
    assert learned.ready and learned.place_threshold("kitchen", 9) == 40 * M   # 2 x 20 min
    saved = dict(det.engine.recorder.places) if det.engine.recorder else {}
    asyncio.run(det.stop())
    db.close()

    db2 = sqlite3.connect(db_path, isolation_level=None)
    det2 = InactivityDetector(cfg, db2, clock, HOME, boot_id="b")
    det2.attach(ReplayContext(clock))  # type: ignore[arg-type]
    assert det2.engine is not None and det2.engine.recorder is not None
    assert det2.engine.routine == learned
    assert det2.engine.recorder.places == saved and saved
    db2.close()

    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'hub_id = "hub-p"\n[store]\npath = "{db_path}"\n'
                        '[inactivity.learned]\nenabled = true\nmin_days = 3\nby_place = true\n'
                        'place_min_samples = 3\nplace_min_s = 1800\nplace_factor = 2.0\n')
    assert main(["routine", "--config", str(cfg_file), "--json"]) == 0
    cells = {(c["room"], c["band"]): c for c in json.loads(capsys.readouterr().out)["places"]}
    assert cells[("kitchen", "morning")]["threshold_s"] == 40 * M
    assert cells[("kitchen", "morning")]["longest_s"] == 20 * M
    assert main(["routine", "--config", str(cfg_file)]) == 0
    assert "after being seen in a room" in capsys.readouterr().out
