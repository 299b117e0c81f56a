"""Leave-one-home-out: choose the learning parameters on other homes, report the one left out.

``tec-agent eval-inactivity --homes DIR...`` finds every recorded home in the directories
(``<name>_events.csv[.gz]`` beside ``<name>_sensors.json`` and, optionally,
``<name>_activities.csv[.gz]``). For each home it:

1. replays every *other* home clean (no injected collapse) once per level of
   :data:`LEVELS` with learning on; each rule family (``inactivity``, ``not_up``,
   ``sessions`` = chair / night, ``not_returned``) takes the most protective level whose
   false alerts on those homes stay within its share of the budget
   (:data:`BUDGET_PER_30_DAYS` split over the families; none within it: the least
   protective), all with the per-room stillness off, and no ``inactivity`` level with a
   factor under :func:`factor_floor` of those homes (the margin even a learner that knew
   every other day of them needed); then, on top of those, the most protective per-room
   level (:data:`PLACE_LEVELS`, the last one off) whose ``inactivity`` alerts on those
   homes stay within the family's share or add none to what the chosen per-hour level
   already raised there; then the learning period (:data:`LEARNING_DAYS`) with the fewest
   false alerts there, ``not_returned``'s not counted (ties: the longest, more evidence);
2. evaluates the home left out with those parameters: fixed rules, learned, 12 h timer,
   with injected collapses. Nothing about that home was used to choose them; what the
   hub learns *online* from the home's own days is the feature being measured.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.errors import ConfigError
from agent.inactivity.config import LearnedRoutine
from agent.inactivity.engine import EngineOptions
from agent.inactivity.evaluation import evaluate, variant_config
from agent.inactivity.replay import Labelled, LogEvent, load_events, load_labels, replay
from agent.inactivity.sensors import DeviceMap, device_map_from_dict

BUDGET_PER_30_DAYS = 1.0
FAMILIES: dict[str, tuple[str, ...]] = {
    "inactivity": ("inactivity",),
    "not_up": ("not_up",),
    "sessions": ("chair_too_long", "night_out_of_bed"),
    "not_returned": ("not_returned",),
}
# Rules whose alerts do not choose the learning period: not_returned's come from absences
# past every allowed bound (Kasteren A and B), which no level and no period removes.
NOT_CHOOSING_PERIOD = ("not_returned",)
# Most protective first. Each entry: the LearnedRoutine fields a family sets at that level.
LEVELS: dict[str, tuple[dict[str, Any], ...]] = {
    "inactivity": (
        {"factor": 1.0, "min_s": 2700.0}, {"factor": 1.0, "min_s": 3600.0},
        {"factor": 1.25, "min_s": 3600.0}, {"factor": 1.5, "min_s": 3600.0},
        {"factor": 1.5, "min_s": 5400.0}, {"factor": 2.0, "min_s": 7200.0},
    ),
    "not_up": tuple({"not_up_margin_s": m * 60.0} for m in (15, 30, 60, 90, 120, 180)),
    "sessions": tuple({"session_factor": f} for f in (1.0, 1.1, 1.25, 1.5, 2.0, 3.0)),
    # The upper bound grows with the level and stops at 24 h (a safety bound, not fitted:
    # README, "not_returned"); level 0 is the fixed 12 h.
    "not_returned": tuple(
        {"away_factor": f, "away_quantile": q, "away_max_s": h * 3600.0}
        for f, q, h in ((1.0, 1.0, 12), (1.25, 0.9, 16), (1.25, 1.0, 16), (1.5, 1.0, 20),
                        (1.5, 1.0, 24), (2.0, 1.0, 24))),
}
# Per-room stillness (routine.learn_places), most protective first; the last switches it off.
PLACE_LEVELS: tuple[dict[str, Any], ...] = (
    *({"by_place": True, "place_factor": f, "place_min_s": m * 60.0, "place_min_samples": n}
      for f, m, n in ((1.25, 30, 20), (1.25, 30, 40), (1.5, 30, 40), (1.5, 45, 40),
                      (2.0, 45, 40), (2.0, 60, 40), (3.0, 60, 40))),
    {"by_place": False},
)
LEARNING_DAYS = (3, 5, 7)


@dataclass
class HomeData:
    name: str
    log: list[LogEvent]
    labels: list[Labelled]
    devices: DeviceMap
    config: Any          # the agent config with this home's time zone
    disorder: int
    unknown: list[str]

    @property
    def days(self) -> float:
        return (self.log[-1].wall - self.log[0].wall) / 86400.0


def _labels_for(events: Path, name: str) -> Path | None:
    for suffix in (".csv.gz", ".csv"):
        cand = events.with_name(f"{name}_activities{suffix}")
        if cand.exists():
            return cand
    return None


def parse_zones(text: str | None) -> dict[str, str]:
    """``TZ`` or ``HOME=TZ,...`` -> {home or "": TZ}, every zone checked."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        home, _, tz = part.strip().rpartition("=")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"--timezone: unknown time zone {tz!r}") from None
        out[home] = tz
    return out


def find_homes(dirs: Sequence[str], base_config: Any,
               zones: dict[str, str] | None = None) -> list[HomeData]:
    """Every home in ``dirs``; its time zone: ``zones[name]``, else the sensor map's
    ``timezone`` key, else ``zones[""]``, else the config's."""
    homes: list[HomeData] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise ConfigError(f"{p}: not a directory")
        for events in sorted([*p.glob("*_events.csv.gz"), *p.glob("*_events.csv")]):
            name = events.name.split("_events.csv")[0]
            sensors = events.with_name(f"{name}_sensors.json")
            if not sensors.exists():
                continue
            doc = json.loads(sensors.read_text(encoding="utf-8"))
            zones = zones or {}
            tz = (zones.get(name) or doc.get("timezone") or zones.get("")
                  or base_config.agent.timezone)
            cfg = dataclasses.replace(base_config,
                                      agent=dataclasses.replace(base_config.agent, timezone=tz))
            zone = ZoneInfo(tz)
            devices = device_map_from_dict(doc, str(sensors))
            log, disorder = load_events(events, zone)
            lpath = _labels_for(events, name)
            labels = load_labels(lpath, zone) if lpath else []
            unknown = sorted({e.sensor_id for e in log} - set(devices))
            homes.append(HomeData(name, log, labels, devices, cfg, disorder, unknown))
    if len(homes) < 2:
        raise ConfigError(
            f"--homes: found {len(homes)} home(s) (NAME_events.csv[.gz] with NAME_sensors.json "
            "beside it, in each DIR given, not below); leave-one-out needs two or more")
    # A misspelt home would otherwise take the bare zone (or the config's) without a word,
    # and every figure of that home would be shifted by hours.
    stray = sorted(set(zones or {}) - {""} - {h.name for h in homes})
    if stray:
        raise ConfigError(f"--timezone: no home named {', '.join(map(repr, stray))} "
                          f"(homes: {', '.join(h.name for h in homes)})")
    return homes


def _params(base: LearnedRoutine, levels: dict[str, int], min_days: int,
            place: int = len(PLACE_LEVELS) - 1) -> LearnedRoutine:
    kw: dict[str, Any] = {"min_days": min_days, "enabled": True}
    for fam, k in levels.items():
        kw.update(LEVELS[fam][k])
    kw.update(PLACE_LEVELS[place])
    return dataclasses.replace(base, **kw)


def _inactivity_alerts(train: Sequence[HomeData], p: LearnedRoutine) -> tuple[int, dict[str, int]]:
    per_home = {h.name: _false_alerts(h, p).get("inactivity", 0) for h in train}
    return sum(per_home.values()), per_home


def _choose_place(train: Sequence[HomeData], base: LearnedRoutine, levels: dict[str, int],
                  share: float) -> tuple[int, list[dict[str, Any]]]:
    """The most protective per-room level that keeps ``inactivity`` within its share, or
    adds no alert to what the chosen per-hour level raised on ``train`` (last level: off)."""
    off = len(PLACE_LEVELS) - 1
    base_n, base_per_home = _inactivity_alerts(train, _params(base, levels, base.min_days, off))
    table: list[dict[str, Any]] = [{"level": off, "inactivity_alerts": base_per_home}]
    for k in range(off):
        n, per_home = _inactivity_alerts(train, _params(base, levels, base.min_days, k))
        table.append({"level": k, "inactivity_alerts": per_home})
        if n <= max(share, base_n):
            return k, table
    return off, table


def _false_alerts(home: HomeData, params: LearnedRoutine) -> dict[str, int]:
    cfg = variant_config(home.config, "learned_routine", params)
    res = replay(home.log, cfg, home.devices, options=EngineOptions(record=True, relearn=True),
                 end_wall=home.log[-1].wall)
    out: dict[str, int] = {}
    for e in res.events:
        if not e.type.endswith("_prewarning") and e.priority.name == "ALARM":
            out[e.type] = out.get(e.type, 0) + 1
    return out


def factor_floor(train: Sequence[HomeData]) -> tuple[float, dict[str, float | None]]:
    """The smallest ``inactivity`` factor worth trying for a home not in ``train``.

    For each training home, the smallest factor of :data:`LEVELS` at which the best-case
    learner of :mod:`agent.inactivity.bound` (every other day of that home known, hours
    pooled +-1 as the routine pools them) stays within the false-alert budget. A hub that
    learns from past days only cannot do better, so a lower factor would be trusting luck.
    The floor is the largest of these; a home where no factor is within the budget says
    nothing about the factor (its alerts come from something a margin does not fix) and
    is left out. 1.0 (no floor) if no home says anything.
    """
    from agent.inactivity.bound import evaluate_home

    factors = sorted({lv["factor"] for lv in LEVELS["inactivity"]})
    per_home: dict[str, float | None] = {}
    for h in train:
        r = evaluate_home(h.log, h.labels, ZoneInfo(h.config.agent.timezone), h.days,
                          factors=factors, pools=(1,), inject=0)
        ok = [s["factor"] for s in r["settings"]
              if s["false_alerts_per_30_days"] <= BUDGET_PER_30_DAYS]
        per_home[h.name] = min(ok) if ok else None
    said = [f for f in per_home.values() if f is not None]
    return (max(said) if said else 1.0), per_home


def choose(train: Sequence[HomeData], base: LearnedRoutine) -> dict[str, Any]:
    """The learning parameters for a home that is not in ``train``."""
    n_levels = min(len(v) for v in LEVELS.values())
    days = sum(h.days for h in train)
    share = BUDGET_PER_30_DAYS / len(FAMILIES) * days / 30.0   # alerts allowed per family
    table: list[dict[str, Any]] = []
    for k in range(n_levels):
        p = _params(base, dict.fromkeys(LEVELS, k), base.min_days)
        per_home = {h.name: _false_alerts(h, p) for h in train}
        table.append({"level": k, "alerts": per_home})
    floor, floor_per_home = factor_floor(train)
    levels: dict[str, int] = {}
    for fam, rules in FAMILIES.items():
        counts = [sum(a.get(r, 0) for a in row["alerts"].values() for r in rules)
                  for row in table]
        ok = [k for k, c in enumerate(counts) if c <= share
              and (fam != "inactivity" or LEVELS[fam][k]["factor"] >= floor)]
        # No level within the share: the least protective. Taking instead the most
        # protective level that reaches the fewest alerts (so alerts every level raises
        # do not count) was measured and not kept: with CASAS left out no training home
        # warns against factor 1.0, and held out CASAS then had 10.04 false alerts / 30 d
        # (docs/inactivity.md, step 5).
        levels[fam] = ok[0] if ok else n_levels - 1
    place, place_table = _choose_place(train, base, levels, share)
    best: tuple[int, int] | None = None
    by_days: dict[int, int] = {}
    left_aside: dict[int, int] = {}
    # The learning period is shared by every rule; alerts no level can remove do not choose
    # it (NOT_CHOOSING_PERIOD). Counted, they took 3 days over 7 and slowed the stillness
    # rule of a held-out home (Ordonez B daytime p50 234.6 -> 239.0 min).
    aside = set(NOT_CHOOSING_PERIOD)
    for md in LEARNING_DAYS:
        p = _params(base, levels, md, place)
        alerts = [_false_alerts(h, p) for h in train]
        total = sum(n for a in alerts for r, n in a.items() if r not in aside)
        by_days[md] = total
        left_aside[md] = sum(n for a in alerts for r, n in a.items() if r in aside)
        if best is None or (total, -md) < (best[0], -best[1]):
            best = (total, md)
    assert best is not None
    chosen = _params(base, levels, best[1], place)
    return {
        "trained_on": [h.name for h in train],
        "training_days": round(days, 2),
        "alerts_allowed_per_family": round(share, 2),
        "inactivity_factor_floor": floor,
        "factor_floor_per_home": floor_per_home,
        "levels": levels,
        "place_level": place,
        "place_table": place_table,
        "learning_days_false_alerts": by_days,
        "learning_days_not_counted": left_aside,
        "level_table": table,
        "params": {k: getattr(chosen, k) for k in chosen.__slots__ if k != "enabled"},
        "_chosen": chosen,
    }


def summary_row(name: str, report: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"home": name, "days": report["days"]}
    for v in ("fixed_rules", "learned_routine", "fixed_12h_timer"):
        part = report[v]
        row[v] = {k: part.get(k) for k in (
            "false_alerts_per_30_days", "detected", "injected", "daytime_delay_min_p50",
            "detection_delay_min_p50", "alerts_by_rule", "daytime_delay_by_place")}
    timer = report["fixed_12h_timer"].get("daytime_delay_min_p50")
    learned = report["learned_routine"].get("daytime_delay_min_p50")
    row["learned_speedup_vs_12h"] = (round(timer / learned, 2)
                                     if timer and learned else None)
    return row


def leave_one_home_out(homes: Sequence[HomeData], inject: int, seed: int, episode_h: float,
                       alerts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"budget_false_alerts_per_30_days": BUDGET_PER_30_DAYS,
                           "levels": LEVELS, "place_levels": PLACE_LEVELS,
                           "learning_days": LEARNING_DAYS, "homes": {}}
    rows = []
    for held in homes:
        train = [h for h in homes if h is not held]
        sel = choose(train, held.config.inactivity.learned)
        chosen = sel.pop("_chosen")
        report = evaluate(held.log, held.labels, held.config, held.devices, inject, seed,
                          episode_h, halves=False, alerts=alerts, params=chosen, home=held.name)
        report["rows_out_of_order"] = held.disorder
        report["unknown_sensors"] = held.unknown
        out["homes"][held.name] = {"held_out": True, "selection": sel, "report": report}
        rows.append(summary_row(held.name, report))
    out["summary"] = rows
    allsel = choose(homes, homes[0].config.inactivity.learned)
    allsel.pop("_chosen")
    allsel.pop("level_table")
    out["chosen_on_all_homes"] = allsel
    return out
