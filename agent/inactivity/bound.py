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

A hub learns online from past days only, starts with a learning period, and has to hold
a margin for days it has not seen, so it cannot beat this; if the bound misses the 2 h
daytime target at the false-alert budget, no per-hour stillness rule meets it on that
home. The bound is not a rule to ship: it is fitted on the very days it is tested on.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
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

TARGET_MIN = 120.0
FACTORS = (1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0)
POOLS = (0, 1, 2)
HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class Setting:
    factor: float
    pool: int
    false_alerts: int
    false_alerts_per_30_days: float
    daytime_delay_min_p50: float | None
    share_under_2h: float | None


class HomeStillness:
    """The per-(day, hour) stillness maxima of one home, and the natural gaps."""

    def __init__(self, log: Sequence[LogEvent], labels: Sequence[Labelled], zone: ZoneInfo):
        self.clock = LocalClock(zone)
        self.walls = [e.wall for e in log]
        self.away = sorted((lb.start, lb.end) for lb in labels if lb.activity == "Leaving")
        self._starts = [s for s, _ in self.away]
        self._end_so_far: list[float] = []      # the latest end among absences 0..i
        for _, e in self.away:
            self._end_so_far.append(max(e, self._end_so_far[-1] if self._end_so_far else e))
        self.day0 = self.clock.local_date(self.walls[0]) if self.walls else None
        self.maxima: dict[tuple[int, int], float] = {}
        self.gaps: list[tuple[float, float]] = []
        for a, b in zip(self.walls, self.walls[1:], strict=False):
            if b <= a or self._overlaps_away(a, b):
                continue
            self.gaps.append((a, b))
            t = a
            while t < b:
                end = min(b, self._next_hour(t))
                key = (self.day(t), self.clock.local(t).hour)
                self.maxima[key] = max(self.maxima.get(key, 0.0), end - a)
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


def evaluate_home(log: Sequence[LogEvent], labels: Sequence[Labelled], zone: ZoneInfo,
                  days: float, factors: Sequence[float] = FACTORS,
                  pools: Sequence[int] = POOLS, inject: int = 2000,
                  seed: int = 11) -> dict[str, Any]:
    """Every (factor, pool) setting on one home, and the fastest within the budget."""
    home = HomeStillness(log, labels, zone)
    injected = _injections(log, labels, home, inject, seed)
    # Each gap (after the first day) and each collapse with its day and last row before it,
    # once: the settings below only change the thresholds.
    gaps = [(a, b, home.day(a)) for a, b in home.gaps if home.day(a) > 0]
    last_rows = [(t, home.walls[i], home.day(t)) for t in injected
                 if (i := bisect.bisect_right(home.walls, t) - 1) >= 0]
    settings: list[Setting] = []
    for pool in pools:
        tables = {d: home.thresholds(d, pool) for d in home.days}
        for f in factors:
            fa = sum(1 for a, b, d in gaps
                     if d in tables and home.crossing(a, tables[d], f, b, True) is not None)
            delays: list[float] = []
            for t, last, d in last_rows:
                if d not in tables:
                    continue
                at = home.crossing(last, tables[d], f, last + 48 * HOUR_S, False)
                if at is not None:
                    delays.append((at - t) / 60.0)
            med = round(statistics.median(delays), 1) if delays else None
            share = (round(sum(d < TARGET_MIN for d in delays) / len(delays), 3)
                     if delays else None)
            settings.append(Setting(f, pool, fa, round(fa * 30.0 / days, 2) if days else 0.0,
                                    med, share))
    within = [s for s in settings if s.false_alerts_per_30_days <= BUDGET_PER_30_DAYS
              and s.daytime_delay_min_p50 is not None]
    best = min(within, key=lambda s: s.daytime_delay_min_p50 or 0.0) if within else None
    return {
        "days": round(days, 2),
        "daytime_injected": len(injected),
        "settings": [dataclasses.asdict(s) for s in settings],
        "best_within_budget": dataclasses.asdict(best) if best else None,
        "target_reachable": bool(best and (best.daytime_delay_min_p50 or 0.0) < TARGET_MIN),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from agent.config import parse_config
    from agent.errors import ConfigError

    ap = argparse.ArgumentParser(
        prog="python -m agent.inactivity.bound",
        description="Best-case bound on the daytime detection delay of any per-hour "
                    "stillness rule at the false-alert budget, per recorded home "
                    "(leave-one-day-out, fitted on the home itself: not a held-out result).")
    ap.add_argument("--homes", nargs="+", required=True, metavar="DIR",
                    help="directories of recorded homes, as eval-inactivity --homes")
    ap.add_argument("--timezone", default="Europe/London",
                    help="HOME=TZ[,HOME=TZ...] and/or a bare TZ for the rest")
    ap.add_argument("--factors", default=",".join(str(f) for f in FACTORS),
                    help="comma-separated margins over the longest stillness seen")
    ap.add_argument("--pools", default=",".join(str(p) for p in POOLS),
                    help="comma-separated hours pooled either side")
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
                                       factors, pools, args.inject, args.seed)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
