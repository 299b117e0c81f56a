"""The learned routine: how long this person is normally still, per hour of the day.

*Stillness* is the time since the last activity, not counting time on an occupied mat or
away from home: exactly the quantity the learned rule compares, so what is learned and
what is tested cannot drift apart. For every local day and hour the recorder keeps the
longest stillness reached in that hour and how much of the hour could show stillness at
all (agent running, clock synchronised, person at home and off the mats, no inactivity
alarm outstanding): an hour spent in bed says nothing about how long this person stays
still when up, so it is not a sample. Hours with too few samples are not learned and the
rule falls back to the fixed threshold for that time. The
threshold for hour ``h`` is ``factor`` x the ``quantile`` of those maxima over the learn
days, pooled with hours ``h-1`` and ``h+1`` (people do not keep to the minute), clamped
to ``[min_s, max_s]``. This follows the per-time-of-day models of Cuddihy et al. (2007)
and Floeck & Litz (2009); the factor is the safety margin they add to the observed maxima.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from agent.inactivity.config import LearnedRoutine

HOURS = 24
# An hour of a day is a sample once the person was up and at home for this much of it.
MIN_OBSERVED_S = 900.0
# A day counts towards ``min_days`` once this many of its hours are samples.
MIN_HOURS_PER_DAY = 4


def quantile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) of a non-empty sample."""
    xs = sorted(values)
    if not xs:
        raise ValueError("quantile of an empty sample")
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class HourStat:
    max_still_s: float = 0.0
    observed_s: float = 0.0


@dataclass
class StillnessRecorder:
    """Per (local date, hour) maxima of stillness, fed by the engine as time passes."""

    bins: dict[tuple[date, int], HourStat] = field(default_factory=dict)
    dirty: set[tuple[date, int]] = field(default_factory=set)

    def record(self, day: date, hour: int, still_end_s: float, observed_s: float) -> None:
        """A piece of hour ``hour`` of ``day`` ending with ``still_end_s`` of stillness."""
        if observed_s <= 0:
            return
        key = (day, hour)
        st = self.bins.get(key)
        if st is None:
            st = self.bins[key] = HourStat()
        st.observed_s = min(3600.0, st.observed_s + observed_s)
        st.max_still_s = max(st.max_still_s, still_end_s)
        self.dirty.add(key)

    def prune(self, before: date) -> list[tuple[date, int]]:
        gone = [k for k in self.bins if k[0] < before]
        for k in gone:
            del self.bins[k]
            self.dirty.discard(k)
        return gone

    def days(self) -> list[date]:
        return sorted({d for d, _ in self.bins})


@dataclass(frozen=True, slots=True)
class Routine:
    """Learned thresholds, one per local hour (None: not enough data for that hour)."""

    thresholds: tuple[float | None, ...] = (None,) * HOURS
    quantiles: tuple[float | None, ...] = (None,) * HOURS
    samples: tuple[int, ...] = (0,) * HOURS
    days_used: int = 0
    learned_on: date | None = None
    first_day: date | None = None
    last_day: date | None = None
    ready: bool = False
    fallback_s: float = 12 * 3600.0

    def threshold(self, hour: int) -> float | None:
        """The learned threshold for ``hour``, or None if that hour is not learned yet."""
        return self.thresholds[hour % HOURS]

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "days_used": self.days_used,
            "learned_on": self.learned_on.isoformat() if self.learned_on else None,
            "first_day": self.first_day.isoformat() if self.first_day else None,
            "last_day": self.last_day.isoformat() if self.last_day else None,
            "fallback_s": self.fallback_s,
            "hours": [
                {"hour": h, "threshold_s": self.thresholds[h], "quantile_s": self.quantiles[h],
                 "samples": self.samples[h]}
                for h in range(HOURS)
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Routine:
        hours = list(d.get("hours") or [])
        th: list[float | None] = [None] * HOURS
        qs: list[float | None] = [None] * HOURS
        ns = [0] * HOURS
        for item in hours:
            h = int(item["hour"]) % HOURS
            th[h] = None if item.get("threshold_s") is None else float(item["threshold_s"])
            qs[h] = None if item.get("quantile_s") is None else float(item["quantile_s"])
            ns[h] = int(item.get("samples") or 0)

        def day(key: str) -> date | None:
            v = d.get(key)
            return date.fromisoformat(str(v)) if v else None

        return cls(tuple(th), tuple(qs), tuple(ns), int(d.get("days_used") or 0),
                   day("learned_on"), day("first_day"), day("last_day"), bool(d.get("ready")),
                   float(d.get("fallback_s") or 12 * 3600.0))


def learn(
    bins: Mapping[tuple[date, int], HourStat], params: LearnedRoutine, today: date,
) -> Routine:
    """Learn from the complete days before ``today`` within ``params.learn_days``."""
    first = today - timedelta(days=params.learn_days)
    valid: dict[date, dict[int, float]] = {}
    for (d, h), st in bins.items():
        if first <= d < today and st.observed_s >= MIN_OBSERVED_S:
            valid.setdefault(d, {})[h] = st.max_still_s
    days = sorted(d for d, hours in valid.items() if len(hours) >= MIN_HOURS_PER_DAY)
    th: list[float | None] = [None] * HOURS
    qs: list[float | None] = [None] * HOURS
    ns = [0] * HOURS
    for h in range(HOURS):
        sample = [
            valid[d][hh % HOURS]
            for d in days
            for hh in (h - 1, h, h + 1)
            if hh % HOURS in valid[d]
        ]
        ns[h] = len(sample)
        if len(sample) < max(params.min_samples, params.min_days):
            continue
        q = quantile(sample, params.quantile)
        qs[h] = q
        th[h] = min(params.max_s, max(params.min_s, q * params.factor))
    return Routine(
        thresholds=tuple(th), quantiles=tuple(qs), samples=tuple(ns), days_used=len(days),
        learned_on=today, first_day=days[0] if days else None,
        last_day=days[-1] if days else None, ready=len(days) >= params.min_days,
        fallback_s=params.max_s,
    )
