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

*Per place* (``by_place``): how long a person stays still depends on where they were last
seen (long in the lounge chair or in bed, short in the bathroom, kitchen or hall, where
falls also happen). The recorder keeps the same maxima per (local day, hour, room of the
last activity); a room's threshold for a time-of-day band (:data:`BANDS`) is
``place_factor`` x the ``quantile`` of those maxima over the band's hours and the learn
days, clamped to ``[place_min_s, max_s]``, once it rests on ``place_min_samples`` samples.
The rule then uses the lower of the room's and the hour's threshold: both are at least the
factor times the longest stillness ever seen at that hour in that room, so the room's value
can only remove slack, never go under what this person was seen to do there.
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
# Time-of-day bands of the per-room thresholds: (name, first hour, end hour), local time.
BANDS = (("night", 22, 6), ("morning", 6, 11), ("afternoon", 11, 17), ("evening", 17, 22))


def band_of(hour: int) -> str:
    """The band (:data:`BANDS`) local hour ``hour`` falls in."""
    h = hour % HOURS
    for name, start, end in BANDS:
        if (start <= h < end) if start < end else (h >= start or h < end):
            return name
    raise AssertionError(hour)      # the bands cover the day


def place_key(room: str, device: str) -> str:
    """Where the person was last seen: the room (lower case), else the sensor's id."""
    return (room or device).strip().lower()


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


def _add(stats: dict[Any, HourStat], key: Any, still_end_s: float, observed_s: float) -> None:
    """Fold a piece of an hour into its statistics (observed time capped at the hour)."""
    st = stats.get(key)
    if st is None:
        st = stats[key] = HourStat()
    st.observed_s = min(3600.0, st.observed_s + observed_s)
    st.max_still_s = max(st.max_still_s, still_end_s)


@dataclass
class StillnessRecorder:
    """Per (local date, hour) maxima of stillness, fed by the engine as time passes."""

    bins: dict[tuple[date, int], HourStat] = field(default_factory=dict)
    dirty: set[tuple[date, int]] = field(default_factory=set)
    places: dict[tuple[date, int, str], HourStat] = field(default_factory=dict)
    dirty_places: set[tuple[date, int, str]] = field(default_factory=set)

    def record(self, day: date, hour: int, still_end_s: float, observed_s: float,
               place: str = "") -> None:
        """A piece of hour ``hour`` of ``day`` ending with ``still_end_s`` of stillness,
        the person last seen at ``place`` (:func:`place_key`; "" = unknown, hour only)."""
        if observed_s <= 0:
            return
        _add(self.bins, (day, hour), still_end_s, observed_s)
        self.dirty.add((day, hour))
        if place:
            _add(self.places, (day, hour, place), still_end_s, observed_s)
            self.dirty_places.add((day, hour, place))

    def prune(self, before: date) -> list[tuple[date, int]]:
        gone = [k for k in self.bins if k[0] < before]
        for k in gone:
            del self.bins[k]
            self.dirty.discard(k)
        for pk in [k for k in self.places if k[0] < before]:
            del self.places[pk]
            self.dirty_places.discard(pk)
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
    # (room, band) -> (threshold_s, quantile_s, samples); only cells with enough samples
    places: Mapping[tuple[str, str], tuple[float, float, int]] = field(default_factory=dict)

    def threshold(self, hour: int) -> float | None:
        """The learned threshold for ``hour``, or None if that hour is not learned yet."""
        return self.thresholds[hour % HOURS]

    def place_threshold(self, place: str, hour: int) -> float | None:
        """The learned threshold for stillness after being seen at ``place`` at ``hour``
        (None: that room and band are not learned)."""
        cell = self.places.get((place, band_of(hour))) if place else None
        return None if cell is None else cell[0]

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
            "places": [
                {"place": p, "band": b, "threshold_s": t, "quantile_s": q, "samples": n}
                for (p, b), (t, q, n) in sorted(self.places.items())
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

        places = {(str(item["place"]), str(item["band"])):
                  (float(item["threshold_s"]), float(item["quantile_s"]), int(item["samples"]))
                  for item in d.get("places") or []}
        return cls(tuple(th), tuple(qs), tuple(ns), int(d.get("days_used") or 0),
                   day("learned_on"), day("first_day"), day("last_day"), bool(d.get("ready")),
                   float(d.get("fallback_s") or 12 * 3600.0), places)


def learn_places(
    places: Mapping[tuple[date, int, str], HourStat], params: LearnedRoutine, days: set[date],
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """Per (room, band): ``place_factor`` x the ``quantile`` of the per-hour maxima on
    ``days``, clamped to ``[place_min_s, max_s]``; cells under ``place_min_samples`` left out."""
    if not params.by_place:
        return {}
    samples: dict[tuple[str, str], list[float]] = {}
    for (d, h, p), st in places.items():
        if d in days and st.observed_s > 0:
            samples.setdefault((p, band_of(h)), []).append(st.max_still_s)
    out: dict[tuple[str, str], tuple[float, float, int]] = {}
    for cell, xs in samples.items():
        if len(xs) < params.place_min_samples:
            continue
        q = quantile(xs, params.quantile)
        out[cell] = (min(params.max_s, max(params.place_min_s, q * params.place_factor)), q,
                     len(xs))
    return out


def learn(
    bins: Mapping[tuple[date, int], HourStat], params: LearnedRoutine, today: date,
    places: Mapping[tuple[date, int, str], HourStat] | None = None,
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
        fallback_s=params.max_s, places=learn_places(places or {}, params, set(days)),
    )
