"""How fast *any* per-hour stillness rule could be on a recorded home: a best-case bound.

``python -m agent.inactivity.bound --homes DIR...`` asks, for each recorded home, what the
daytime detection delay of injected collapses would be for a stillness rule that knew far
more than a hub can: for each day, its threshold for clock hour ``h`` is ``factor`` x the
longest stillness reached in hour ``h`` (pooled with ``pool`` hours either side) on **every
other day of the same home**, past and future (leave-one-day-out), with no learning period,
no fallback, no ``min_s`` floor, and the labelled absences (``Leaving``) known exactly.

- *Stillness* is the time since the previous sensor row of any kind (every row counts as
  activity, as the 12 h timer counts it); a gap that overlaps a labelled absence is not
  stillness.
- A *false alert* is a natural gap whose stillness crosses the day's threshold between
  07:00 and 22:00 local (nights belong to ``not_up`` and the night rules).
- *Injected collapses* are drawn as ``eval-inactivity`` draws them
  (:func:`~agent.inactivity.evaluation.sample_episodes`: uniform at home, every row from
  ``t`` removed), keeping the daytime ones (07:00-22:00); the delay is from ``t`` to the
  threshold crossing.

*Per room too* (``by_room`` in the output): the same best case for a rule that also knows
the room of the last activity (the last sensor row's room, else its id, as ``by_place``
keys it), as ``by_place`` runs: a room's threshold is ``room_factor`` x the longest
stillness reached after being last seen in that room, per hour (pooled as the hour's) or
per time-of-day band (:data:`~agent.inactivity.routine.BANDS`), on every other day, once
that cell has ``room_min_samples`` day-hours; the rule uses the lower of the room's and the
hour's threshold (``factor`` x the hour's), the hour's alone where the room has no cell.

A hub learns online from past days only, starts with a learning period, and has to hold
a margin for days it has not seen, so it cannot beat this; if the bound misses the 2 h
daytime target at the false-alert budget, no per-hour (or per room and hour) stillness
rule meets it on that home. The bound is not a rule to ship: it is fitted on the very
days it is tested on.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import itertools
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from agent.inactivity.evaluation import is_daytime, sample_episodes
from agent.inactivity.localtime import LocalClock
from agent.inactivity.loho import BUDGET_PER_30_DAYS, find_homes, parse_zones
from agent.inactivity.replay import Labelled, LogEvent
from agent.inactivity.routine import band_of, place_key
from agent.inactivity.sensors import DeviceMap

TARGET_MIN = 120.0
FACTORS = (1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0)
POOLS = (0, 1, 2)
# Per room: a room's cells per hour (pooled as the hour's) or per time-of-day band, and the
# day-hours a cell needs before it is used (1: any; the runtime asks 20 or 40).
CELLS = ("hour", "band")
ROOM_FACTORS = (1.0, 1.25, 1.5, 2.0, 3.0)
ROOM_FLOORS_S = (0.0, 1800.0, 3600.0)        # a room's threshold: never shorter
ROOM_MIN_SAMPLES = (1, 20, 40)
HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class Setting:
    factor: float
    pool: int
    false_alerts: int
    false_alerts_per_30_days: float
    daytime_delay_min_p50: float | None
    share_under_2h: float | None


@dataclass(frozen=True, slots=True)
class RoomSetting:
    """A rule that also knows the room of the last activity: the lower of ``factor`` x the
    hour's and ``room_factor`` x the room's threshold (``cells``: per hour, or per band)."""

    factor: float
    room_factor: float
    pool: int
    cells: str
    room_min_samples: int
    room_floor_s: float
    false_alerts: int
    false_alerts_per_30_days: float
    daytime_delay_min_p50: float | None
    share_under_2h: float | None


def row_places(log: Sequence[LogEvent], devices: DeviceMap) -> list[str]:
    """Per row, where the person was last seen at that row: the room of the latest mapped
    sensor up to it (:func:`~agent.inactivity.routine.place_key`), "" before any."""
    out: list[str] = []
    last = ""
    for e in log:
        info = devices.get(e.sensor_id)
        if info is not None:
            last = place_key(info.room, info.device_id)
        out.append(last)
    return out


class HomeStillness:
    """The per-(day, hour) stillness maxima of one home, and the natural gaps; with
    ``places`` (one per row, :func:`row_places`) also per (day, hour, room of the last row)."""

    def __init__(self, log: Sequence[LogEvent], labels: Sequence[Labelled], zone: ZoneInfo,
                 places: Sequence[str] | None = None):
        self.clock = LocalClock(zone)
        self.walls = [e.wall for e in log]
        self.places = list(places) if places is not None else [""] * len(self.walls)
        self.away = sorted((lb.start, lb.end) for lb in labels if lb.activity == "Leaving")
        self._starts = [s for s, _ in self.away]
        self._end_so_far: list[float] = []      # the latest end among absences 0..i
        for _, e in self.away:
            self._end_so_far.append(max(e, self._end_so_far[-1] if self._end_so_far else e))
        self.day0 = self.clock.local_date(self.walls[0]) if self.walls else None
        self.maxima: dict[tuple[int, int], float] = {}
        self.room_maxima: dict[tuple[int, int, str], float] = {}
        self.gaps: list[tuple[float, float]] = []
        self.gap_places: list[str] = []
        for i, (a, b) in enumerate(zip(self.walls, self.walls[1:], strict=False)):
            if b <= a or self._overlaps_away(a, b):
                continue
            self.gaps.append((a, b))
            place = self.places[i]
            self.gap_places.append(place)
            t = a
            while t < b:
                end = min(b, self._next_hour(t))
                key = (self.day(t), self.clock.local(t).hour)
                self.maxima[key] = max(self.maxima.get(key, 0.0), end - a)
                if place:
                    rkey = (*key, place)
                    self.room_maxima[rkey] = max(self.room_maxima.get(rkey, 0.0), end - a)
                t = end
        self.days = sorted({d for d, _ in self.maxima})

    def _next_hour(self, wall: float) -> float:
        return (self.clock.local(wall).replace(minute=0, second=0, microsecond=0).timestamp()
                + HOUR_S)

    def _overlaps_away(self, a: float, b: float) -> bool:
        i = bisect.bisect_left(self._starts, b)       # absences starting before b: 0..i-1
        return i > 0 and self._end_so_far[i - 1] > a

    def day(self, wall: float) -> int:
        assert self.day0 is not None
        return (self.clock.local_date(wall) - self.day0).days

    def daytime(self, wall: float) -> bool:
        return is_daytime(self.clock, wall)

    def thresholds(self, day: int, pool: int) -> list[float | None]:
        """Leave-one-day-out: per hour, the longest stillness reached in it (or within
        ``pool`` hours) on every other day; None where no other day has a sample."""
        out: list[float | None] = []
        for h in range(24):
            hours = {(h + k) % 24 for k in range(-pool, pool + 1)}
            vals = [v for (d, hh), v in self.maxima.items() if d != day and hh in hours]
            out.append(max(vals) if vals else None)
        return out

    def room_thresholds(self, pool: int, cells: str
                        ) -> dict[tuple[int, str], list[tuple[float, int] | None]]:
        """Leave-one-day-out per (day, room): per hour, the longest stillness reached after
        being last seen in that room in that hour (``cells`` "hour": pooled ``pool`` hours
        either side; "band": the hour's time-of-day band) on every other day, and how many
        day-hours that rests on; None where no other day has one."""
        per_day: dict[tuple[str, int], dict[int, tuple[float, int]]] = {}
        for h in range(24):
            hours = ({hh for hh in range(24) if band_of(hh) == band_of(h)} if cells == "band"
                     else {(h + k) % 24 for k in range(-pool, pool + 1)})
            for (d, hh, p), v in self.room_maxima.items():
                if hh in hours:
                    cell = per_day.setdefault((p, h), {})
                    m, n = cell.get(d, (0.0, 0))
                    cell[d] = (max(m, v), n + 1)
        out: dict[tuple[int, str], list[tuple[float, int] | None]] = {}
        rooms = sorted({p for p, _ in per_day})
        for d in self.days:
            for p in rooms:
                row: list[tuple[float, int] | None] = []
                for h in range(24):
                    others = [mn for dd, mn in per_day.get((p, h), {}).items() if dd != d]
                    row.append((max(m for m, _ in others), sum(n for _, n in others))
                               if others else None)
                out[(d, p)] = row
        return out

    def crossing(self, start: float, table: Sequence[float | None], factor: float,
                 limit: float, daytime_only: bool) -> float | None:
        """The first time stillness from ``start`` reaches ``factor`` x the hour's
        threshold (an hour without one never alerts), before ``limit``; else None."""
        t = start
        while t < limit:
            nxt = self._next_hour(t)
            th = table[self.clock.local(t).hour]
            if th is not None and (not daytime_only or self.daytime(t)):
                at = max(t, start + factor * th)
                if at < min(nxt, limit):
                    return at
            t = nxt
        return None


def _injections(log: Sequence[LogEvent], labels: Sequence[Labelled], home: HomeStillness,
                n: int, seed: int) -> list[float]:
    ts = sample_episodes(log, labels, n, seed, 14 * HOUR_S)
    return [t for t in ts if home.daytime(t)]


def _combined(hour: Sequence[float | None], room: Sequence[tuple[float, int] | None] | None,
              factor: float, room_factor: float, min_samples: int,
              floor_s: float = 0.0) -> list[float | None]:
    """Per hour, the lower of ``factor`` x the hour's and ``room_factor`` x the room's
    threshold, the room's never under ``floor_s`` (a room cell under ``min_samples``
    day-hours is not used)."""
    out: list[float | None] = []
    for h in range(24):
        th = None if hour[h] is None else factor * (hour[h] or 0.0)
        cell = room[h] if room is not None else None
        if cell is not None and cell[1] >= min_samples:
            rt = max(floor_s, room_factor * cell[0])
            th = rt if th is None else min(th, rt)
        out.append(th)
    return out


def _score(home: HomeStillness, gaps: Sequence[tuple[float, float, int, str]],
           last_rows: Sequence[tuple[float, float, int, str]],
           table_of: Any, days: float, shortest: float = 0.0
           ) -> tuple[int, float, list[float], dict[str, list[float]]]:
    """False alerts (natural daytime gaps crossing) and daytime collapse delays (minutes,
    also per room of the last row) for thresholds ``table_of(day, place)`` (factor folded in).
    ``gaps`` are sorted longest first; none shorter than ``shortest`` (no threshold is
    shorter) can cross."""
    fa = 0
    for a, b, d, p in gaps:
        if b - a < shortest:
            break
        table = table_of(d, p)
        if table is not None and home.crossing(a, table, 1.0, b, True) is not None:
            fa += 1
    delays: list[float] = []
    by_place: dict[str, list[float]] = {}
    for t, last, d, p in last_rows:
        table = table_of(d, p)
        if table is None:
            continue
        at = home.crossing(last, table, 1.0, last + 48 * HOUR_S, False)
        if at is not None:
            delays.append((at - t) / 60.0)
            by_place.setdefault(p, []).append((at - t) / 60.0)
    return fa, round(fa * 30.0 / days, 2) if days else 0.0, delays, by_place


def _summary(delays: Sequence[float]) -> tuple[float | None, float | None]:
    if not delays:
        return None, None
    return (round(statistics.median(delays), 1),
            round(sum(d < TARGET_MIN for d in delays) / len(delays), 3))


def _reachable(best: Setting | RoomSetting | None) -> bool:
    """The fastest setting within the budget has a daytime median under the target."""
    return bool(best and (best.daytime_delay_min_p50 or 0.0) < TARGET_MIN)


def _fastest(settings: Sequence[Any]) -> Any:
    within = [s for s in settings if s.false_alerts_per_30_days <= BUDGET_PER_30_DAYS
              and s.daytime_delay_min_p50 is not None]
    return min(within, key=lambda s: s.daytime_delay_min_p50 or 0.0) if within else None


def evaluate_home(log: Sequence[LogEvent], labels: Sequence[Labelled], zone: ZoneInfo,
                  days: float, factors: Sequence[float] = FACTORS,
                  pools: Sequence[int] = POOLS, inject: int = 2000,
                  seed: int = 11, devices: DeviceMap | None = None,
                  room_factors: Sequence[float] = ROOM_FACTORS, cells: Sequence[str] = CELLS,
                  room_min_samples: Sequence[int] = ROOM_MIN_SAMPLES,
                  room_floors_s: Sequence[float] = ROOM_FLOORS_S) -> dict[str, Any]:
    """Every (factor, pool) setting on one home, and the fastest within the budget; with
    ``devices`` also every rule that knows the room of the last activity (``by_room``)."""
    places = row_places(log, devices) if devices is not None else None
    home = HomeStillness(log, labels, zone, places)
    injected = _injections(log, labels, home, inject, seed)
    # Each gap (after the first day) and each collapse with its day, the room of its last
    # row and that row, once: the settings below only change the thresholds.
    gaps = sorted(((a, b, home.day(a), p) for (a, b), p in zip(home.gaps, home.gap_places,
                                                                 strict=True)
                   if home.day(a) > 0), key=lambda g: g[0] - g[1])
    last_rows = [(t, home.walls[i], home.day(t), home.places[i]) for t in injected
                 if (i := bisect.bisect_right(home.walls, t) - 1) >= 0]
    settings: list[Setting] = []
    room_settings: list[RoomSetting] = []
    by_place_of: dict[RoomSetting, dict[str, list[float]]] = {}
    for pool in pools:
        tables = {d: home.thresholds(d, pool) for d in home.days}
        for f in factors:
            scaled = {d: [None if v is None else f * v for v in t] for d, t in tables.items()}
            shortest = min((v for t in scaled.values() for v in t if v is not None),
                           default=0.0)
            fa, per30, delays, _ = _score(home, gaps, last_rows,
                                          lambda d, _p, s=scaled: s.get(d), days, shortest)
            settings.append(Setting(f, pool, fa, per30, *_summary(delays)))
        if places is None:
            continue
        for kind in cells:
            rooms = home.room_thresholds(pool, kind)
            places_seen = {p for _, p in rooms} | {""}
            keys = [(d, p) for d in tables for p in places_seen]
            for n, floor, f, rf in itertools.product(room_min_samples, room_floors_s,
                                                     factors, room_factors):
                combined = {k: _combined(tables[k[0]], rooms.get(k), f, rf, n, floor)
                            for k in keys}
                shortest = min((v for t in combined.values() for v in t if v is not None),
                               default=0.0)
                fa, per30, delays, per_place = _score(
                    home, gaps, last_rows,
                    lambda d, p, c=combined: c.get((d, p), c.get((d, ""))), days, shortest)
                rs = RoomSetting(f, rf, pool, kind, n, floor, fa, per30, *_summary(delays))
                room_settings.append(rs)
                by_place_of[rs] = per_place
    best = _fastest(settings)
    out: dict[str, Any] = {
        "days": round(days, 2),
        "daytime_injected": len(injected),
        "settings": [dataclasses.asdict(s) for s in settings],
        "best_within_budget": dataclasses.asdict(best) if best else None,
        "target_reachable": _reachable(best),
    }
    if places is not None:
        rbest = _fastest(room_settings)
        per_cells = {k: _fastest([s for s in room_settings if s.cells == k]) for k in cells}
        out["by_room"] = {
            "settings_tried": len(room_settings),
            "best_within_budget": dataclasses.asdict(rbest) if rbest else None,
            "best_within_budget_per_cells": {k: dataclasses.asdict(v) if v else None
                                             for k, v in per_cells.items()},
            # Where the best setting's daytime collapses were last seen: episodes, median.
            "best_daytime_delay_by_place": {
                p: {"episodes": len(v), "delay_min_p50": round(statistics.median(v), 1)}
                for p, v in sorted(by_place_of[rbest].items())} if rbest else None,
            "target_reachable": _reachable(rbest),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from agent.config import parse_config
    from agent.errors import ConfigError

    ap = argparse.ArgumentParser(
        prog="python -m agent.inactivity.bound",
        description="Best-case bound on the daytime detection delay of any per-hour "
                    "stillness rule, and (unless --no-by-room) of any rule that also knows "
                    "the room of the last activity, at the false-alert budget, per recorded "
                    "home (leave-one-day-out, fitted on the home itself: not a held-out "
                    "result).")
    ap.add_argument("--homes", nargs="+", required=True, metavar="DIR",
                    help="directories of recorded homes, as eval-inactivity --homes")
    ap.add_argument("--timezone", default="Europe/London",
                    help="HOME=TZ[,HOME=TZ...] and/or a bare TZ for the rest")
    ap.add_argument("--factors", default=",".join(str(f) for f in FACTORS),
                    help="comma-separated margins over the longest stillness seen")
    ap.add_argument("--pools", default=",".join(str(p) for p in POOLS),
                    help="comma-separated hours pooled either side")
    ap.add_argument("--no-by-room", dest="by_room", action="store_false",
                    help="skip the rules that also know the room of the last activity")
    ap.add_argument("--inject", type=int, default=2000, help="collapse times drawn per home")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    try:
        factors = [float(x) for x in args.factors.split(",") if x]
        pools = [int(x) for x in args.pools.split(",") if x]
        cfg = parse_config({"hub_id": "bound"})
        homes = find_homes(args.homes, cfg, parse_zones(args.timezone))
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    per_home: dict[str, Any] = {}
    out = {"budget_false_alerts_per_30_days": BUDGET_PER_30_DAYS, "target_min": TARGET_MIN,
           "homes": per_home}
    for h in homes:
        per_home[h.name] = evaluate_home(h.log, h.labels,
                                         ZoneInfo(h.config.agent.timezone), h.days,
                                         factors, pools, args.inject, args.seed,
                                         h.devices if args.by_room else None)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
