"""What the hub learns about one household beyond per-hour stillness.

The rules themselves report what they see (:class:`HouseholdRecorder`): the morning's first
activity outside the bedroom (the get-up time), every chair sitting, every night-time spell
out of bed and every absence, measured exactly as the rule that will use them measures, so
what is learned and what is tested cannot drift apart. :func:`learn_household` turns the
records of the last ``learn_days`` into thresholds (:class:`Household`), each clamped to the
configured bounds so learning can never switch a rule off: chair and night sessions by
``session_factor`` x the longest, absences by ``away_factor`` x their ``away_quantile``
(its own pair: absences run to days in some homes, and the bound that matters is the
upper one, ``away_max_s``). Until ``min_days`` days have been
observed (the learning period) nothing learned applies: the rules keep their defaults or
the installer's seeds (``usual_get_up``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from agent.inactivity.config import LearnedRoutine, hhmm_to_minutes
from agent.inactivity.routine import quantile

# A day type needs this many get-ups of its own before it stops borrowing from the other.
MIN_GETUPS_PER_KIND = 3
KINDS = ("weekday", "weekend")


def day_kind(day: date) -> str:
    return "weekend" if day.weekday() >= 5 else "weekday"


@dataclass
class HouseholdRecorder:
    """Raw facts, per local date; kept for ``learn_days`` and persisted as one document."""

    getups: dict[date, float] = field(default_factory=dict)          # minute of day
    sessions: dict[str, list[tuple[date, float]]] = field(
        default_factory=lambda: {"chair": [], "night": [], "away": []})
    days_seen: set[date] = field(default_factory=set)
    dirty: bool = False

    def seen(self, day: date) -> None:
        if day not in self.days_seen:
            self.days_seen.add(day)
            self.dirty = True

    def getup(self, day: date, minute: float) -> None:
        if day not in self.getups:
            self.getups[day] = round(minute, 2)
            self.dirty = True

    def session(self, kind: str, day: date, seconds: float) -> None:
        if seconds > 0:
            self.sessions.setdefault(kind, []).append((day, round(seconds, 1)))
            self.dirty = True

    def prune(self, before: date) -> None:
        self.getups = {d: m for d, m in self.getups.items() if d >= before}
        self.sessions = {k: [(d, s) for d, s in v if d >= before]
                         for k, v in self.sessions.items()}
        self.days_seen = {d for d in self.days_seen if d >= before}

    def as_dict(self) -> dict[str, Any]:
        return {
            "getups": {d.isoformat(): m for d, m in sorted(self.getups.items())},
            "sessions": {k: [[d.isoformat(), s] for d, s in v] for k, v in self.sessions.items()},
            "days_seen": sorted(d.isoformat() for d in self.days_seen),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HouseholdRecorder:
        rec = cls()
        rec.getups = {date.fromisoformat(str(d)): float(m)
                      for d, m in (doc.get("getups") or {}).items()}
        for k, v in (doc.get("sessions") or {}).items():
            rec.sessions[str(k)] = [(date.fromisoformat(str(d)), float(s)) for d, s in v]
        rec.days_seen = {date.fromisoformat(str(d)) for d in doc.get("days_seen") or []}
        return rec


@dataclass(frozen=True, slots=True)
class Household:
    """Learned thresholds (None: not learned, the rule's default or seed applies)."""

    ready: bool = False
    days_seen: int = 0
    learned_on: date | None = None
    not_up_by: Mapping[str, int] = field(default_factory=dict)     # day kind -> minute
    getups: Mapping[str, int] = field(default_factory=dict)         # day kind -> samples
    latest_getup: Mapping[str, float] = field(default_factory=dict)
    after_s: Mapping[str, float] = field(default_factory=dict)      # chair/night/away
    longest_s: Mapping[str, float] = field(default_factory=dict)
    sessions: Mapping[str, int] = field(default_factory=dict)
    # Absences only: what the threshold is a multiple of (quantile, its value, factor).
    basis: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)

    def deadline(self, day: date) -> int | None:
        return self.not_up_by.get(day_kind(day)) if self.ready else None

    def session_after(self, kind: str) -> float | None:
        return self.after_s.get(kind) if self.ready else None

    def as_dict(self) -> dict[str, Any]:
        def hhmm(m: float) -> str:
            m = int(round(m))
            return f"{m // 60:02d}:{m % 60:02d}"

        return {
            "ready": self.ready, "days_seen": self.days_seen,
            "learned_on": self.learned_on.isoformat() if self.learned_on else None,
            "not_up": {k: {"by": hhmm(v), "get_ups": self.getups.get(k, 0),
                           "latest_get_up": hhmm(self.latest_getup[k])
                           if k in self.latest_getup else None}
                       for k, v in sorted(self.not_up_by.items())},
            "sessions": {k: {"threshold_s": self.after_s[k], "sessions": self.sessions.get(k, 0),
                             "longest_s": self.longest_s.get(k),
                             **({"quantile": self.basis[k][0], "quantile_s": self.basis[k][1],
                                 "factor": self.basis[k][2]} if k in self.basis else {})}
                         for k in sorted(self.after_s)},
        }


class Learning:
    """The engine's learning, shared with the rules that feed it and read from it."""

    def __init__(self, params: LearnedRoutine | None, record: bool) -> None:
        self.params = params
        self.record = record
        self.recorder = HouseholdRecorder()
        self.household = Household()

    def seen(self, day: date, synced: bool) -> None:
        if self.record and synced:
            self.recorder.seen(day)

    def getup(self, day: date, minute: float, synced: bool) -> None:
        if self.record and synced:
            self.recorder.getup(day, minute)

    def session(self, kind: str, day: date, seconds: float, synced: bool) -> None:
        if self.record and synced:
            self.recorder.session(kind, day, seconds)

    def deadline(self, day: date) -> int | None:
        return self.household.deadline(day) if self.params is not None else None

    def session_after(self, kind: str) -> float | None:
        return self.household.session_after(kind) if self.params is not None else None

    def relearn(self, today: date) -> None:
        learned_on = self.household.learned_on
        if self.params is None or (learned_on is not None and today < learned_on):
            return      # a clock stepped back: keep what was learned up to the later date
        self.household = learn_household(self.recorder, self.params, today)


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


SESSION_BOUNDS = {"chair": ("chair_min_s", "chair_max_s"),
                  "night": ("night_min_s", "night_max_s"),
                  "away": ("away_min_s", "away_max_s")}


def _learn_not_up(getups: Sequence[tuple[date, float]], p: LearnedRoutine
                  ) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
    lo, hi = hhmm_to_minutes(p.not_up_earliest), hhmm_to_minutes(p.not_up_latest)
    by: dict[str, int] = {}
    counts: dict[str, int] = {}
    latest: dict[str, float] = {}
    if not getups:
        return by, counts, latest
    for kind in KINDS:
        own = [m for d, m in getups if day_kind(d) == kind]
        counts[kind] = len(own)
        sample = own if len(own) >= MIN_GETUPS_PER_KIND else [m for _, m in getups]
        latest[kind] = max(sample)
        by[kind] = int(round(_clamp(latest[kind] + p.not_up_margin_s / 60.0, lo, hi)))
    return by, counts, latest


def learn_household(rec: HouseholdRecorder, params: LearnedRoutine, today: date) -> Household:
    """Learn from the complete days before ``today`` within ``params.learn_days``."""
    first = today - timedelta(days=params.learn_days)

    def recent(d: date) -> bool:
        return first <= d < today

    days = sorted(d for d in rec.days_seen if recent(d))
    by, counts, latest = _learn_not_up(
        [(d, m) for d, m in sorted(rec.getups.items()) if recent(d)], params)
    after: dict[str, float] = {}
    longest: dict[str, float] = {}
    n: dict[str, int] = {}
    basis: dict[str, tuple[float, float, float]] = {}
    for kind, (lo_key, hi_key) in SESSION_BOUNDS.items():
        lo, hi = getattr(params, lo_key), getattr(params, hi_key)
        got = [s for d, s in rec.sessions.get(kind, []) if recent(d)]
        n[kind] = len(got)
        if not got:
            continue        # nothing seen: the rule's default stays
        longest[kind] = max(got)
        q, factor = ((params.away_quantile, params.away_factor) if kind == "away"
                     else (1.0, params.session_factor))
        base = round(quantile(got, q), 1)
        if kind == "away":
            basis[kind] = (q, base, factor)
        after[kind] = round(_clamp(base * factor, lo, hi), 1)
    return Household(ready=len(days) >= params.min_days, days_seen=len(days), learned_on=today,
                     not_up_by=by, getups=counts, latest_getup=latest, after_s=after,
                     longest_s=longest, sessions=n, basis=basis)
