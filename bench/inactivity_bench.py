"""Inactivity benchmarks: per-reading cost, replay speed, state-save cost.

One JSON object per line (name, value, unit, baseline, ratio); baselines are measured in the
same run. Uses the shipped real home log when ``../shared/data/ambient`` exists, otherwise
a synthetic day pattern. Run through ``bench/run`` (``bench/run inactivity``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import ManualClock
from agent.config import parse_config
from agent.inactivity.detector import InactivityDetector
from agent.inactivity.replay import LogEvent, ReplayContext, load_events, replay, to_reading
from agent.inactivity.sensors import SensorInfo, classify, device_map_from_sensor_json

SHARED = Path(os.environ.get("TEC_SHARED_DIR") or ROOT / ".." / "shared").resolve()


def emit(name: str, value: float, unit: str, baseline: float | None) -> None:
    ratio = round(value / baseline, 3) if baseline else None
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                      "baseline": None if baseline is None else round(baseline, 3),
                      "ratio": ratio}), flush=True)


def home_log(tz: ZoneInfo) -> tuple[list[LogEvent], dict[str, SensorInfo]]:
    data = SHARED / "data" / "ambient"
    if (data / "ordonez_B_events.csv.gz").exists():
        log, _ = load_events(data / "ordonez_B_events.csv.gz", tz)
        return log, device_map_from_sensor_json(data / "ordonez_B_sensors.json")
    devices = {"pir": SensorInfo("pir", "motion", "Living"),
               "bed": SensorInfo("bed", "bed_mat", "Bedroom"),
               "chair": SensorInfo("chair", "chair_mat", "Living")}
    t0 = 1735714800.0
    log = []
    for day in range(21):
        base = t0 + day * 86400
        log.append(LogEvent(base, "bed", "bed_mat", "OFF", ""))
        for k in range(45):
            log.append(LogEvent(base + 600 + k * 1200, "pir", "motion", "ON", ""))
            log.append(LogEvent(base + 603 + k * 1200, "pir", "motion", "OFF", ""))
        log.append(LogEvent(base + 16 * 3600, "bed", "bed_mat", "ON", ""))
    return log, devices


def main() -> None:
    cfg = parse_config({"hub_id": "bench"})
    tz = ZoneInfo(cfg.agent.timezone)
    log, devices = home_log(tz)

    # Per-reading cost through the detector vs classification alone (same readings).
    clock = ManualClock(mono=1000.0, wall=log[0].wall)
    det = InactivityDetector(cfg, None, clock, devices, boot_id=None)
    det.attach(ReplayContext(clock))  # type: ignore[arg-type]
    readings = []
    for ev in log:
        r = to_reading(ev, devices.get(ev.sensor_id), 0.0)
        if r is not None:
            readings.append((ev.wall, r))
    t = time.perf_counter()
    for _, r in readings:
        classify(r, devices)
    base_us = (time.perf_counter() - t) / len(readings) * 1e6
    t = time.perf_counter()
    for wall, r in readings:
        clock.advance(max(0.0, wall - clock.wall()))
        det.handle_reading(r)
    per_us = (time.perf_counter() - t) / len(readings) * 1e6
    emit("inactivity_reading_us", per_us, "us/reading", base_us)

    # Whole-log replay (timer wakes included): simulated seconds per real second.
    t = time.perf_counter()
    replay(log, cfg, devices)
    took = time.perf_counter() - t
    emit("inactivity_replay_speedup", (log[-1].wall - log[0].wall) / took, "x real time", 1.0)

    # Saving the state (WAL, synchronous=FULL like the event store) vs a one-row commit.
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "events.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)")
        clock = ManualClock(mono=1000.0, wall=log[0].wall)
        det = InactivityDetector(cfg, db, clock, devices, boot_id="bench")
        det.attach(ReplayContext(clock))  # type: ignore[arg-type]
        for wall, r in readings[:2000]:
            clock.advance(max(0.0, wall - clock.wall()))
            det.handle_reading(r)
        n = 200
        t = time.perf_counter()
        for i in range(n):
            db.execute("INSERT OR REPLACE INTO kv VALUES ('k', ?)", (str(i),))
        base_ms = (time.perf_counter() - t) / n * 1e3
        t = time.perf_counter()
        for _ in range(n):
            det.persist(force=True)
        save_ms = (time.perf_counter() - t) / n * 1e3
        db.close()
    emit("inactivity_state_save_ms", save_ms, "ms/save", base_ms)


if __name__ == "__main__":
    main()
