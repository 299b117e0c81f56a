"""Config for inactivity, night-time and wandering rules (``[inactivity]``).

Every rule is optional. With ``auto_rules = true`` (the default) a rule that is not written
in the file is derived from the configured sensors (see :mod:`agent.inactivity.ruleset`):
a bed mat brings ``not_up`` and ``night_out_of_bed``, a chair mat ``chair_too_long``, a
front door (role ``main_entrance_door``) ``night_exit`` and away mode. Times of day are
``"HH:MM"`` strings in the home's local time (``agent.timezone``); durations are seconds.

Defaults and where they come from (see docs in the module ``ruleset``):

- ``prewarning_s`` 600: Tunstall Lifeline 4000 warns for ten minutes before an inactivity call.
- inactivity 4 h: the stopwatch method with mats counted as presence and absences excluded;
  councils' 12-14 h timers exist only because they cannot see sleep.
- ``not_up`` by 11:00, ``night_out_of_bed`` 45 min in 23:00-07:00, ``chair_too_long`` 4 h,
  ``night_exit`` 10 min, away presumed 10 min after the front door with nobody seen inside,
  ``not_returned`` after 12 h (never later than the council timer it replaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HHMM_PATTERN = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_HHMM = {"pattern": HHMM_PATTERN, "pattern_hint": "must be a time of day HH:MM (00:00-23:59)"}
_HHMM_RE = re.compile(HHMM_PATTERN)


def hhmm_to_minutes(text: str) -> int:
    """``"07:30"`` -> 450. Raises ValueError on anything else."""
    if not isinstance(text, str) or not _HHMM_RE.fullmatch(text):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return int(text[:2]) * 60 + int(text[3:])


@dataclass(frozen=True, slots=True)
class InactivityWindow:
    """No activity anywhere for ``after_s`` of window time: ``inactivity``.

    Only time inside the window counts, so a night's sleep outside it is never mistaken for
    stillness. ``start == end`` means all day.
    """

    start: str = field(default="07:00", metadata=_HHMM)
    end: str = field(default="22:00", metadata=_HHMM)
    after_s: float = field(
        default=4 * 3600.0, metadata={"min": 600.0, "max": 50 * 3600.0,
                                      "doc": "window time without activity before the alarm"},
    )
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class NotUpRule:
    """Not up by ``by``: bed mat still occupied, or no activity outside the bedroom since
    ``from_``."""

    by: str = field(default="11:00", metadata=_HHMM)
    morning_from: str = field(
        default="05:00",
        metadata={**_HHMM, "doc": "activity outside the bedroom from here on counts as up"},
    )
    enabled: bool = True

    def validate(self, path: str) -> list[str]:
        if hhmm_to_minutes(self.morning_from) >= hhmm_to_minutes(self.by):
            return [f"{path}.morning_from: must be before by ({self.morning_from} >= {self.by})"]
        return []


@dataclass(frozen=True, slots=True)
class NightOutOfBedRule:
    """Out of bed in the night window for ``after_s`` without going back (a chair counts as
    safe)."""

    start: str = field(default="23:00", metadata=_HHMM)
    end: str = field(default="07:00", metadata=_HHMM)
    after_s: float = field(default=45 * 60.0, metadata={"min": 60.0, "max": 12 * 3600.0})
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ChairTooLongRule:
    """A chair mat occupied for ``after_s`` without a break: ``chair_too_long``."""

    after_s: float = field(default=4 * 3600.0, metadata={"min": 600.0, "max": 24 * 3600.0})
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class NightExitRule:
    """Front door opened in the night window and nobody seen inside for ``after_s``:
    ``night_exit``."""

    start: str = field(default="23:00", metadata=_HHMM)
    end: str = field(default="07:00", metadata=_HHMM)
    after_s: float = field(default=600.0, metadata={"min": 30.0, "max": 4 * 3600.0})
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class AwayRule:
    """Front door, then nobody seen inside for ``presume_after_s``: presumed out.

    Inactivity pauses until the person is back (door or any activity inside); after
    ``not_returned_after_s`` away ``not_returned`` is raised.
    """

    presume_after_s: float = field(default=600.0, metadata={"min": 60.0, "max": 3 * 3600.0})
    not_returned_after_s: float = field(
        default=12 * 3600.0, metadata={"min": 1800.0, "max": 72 * 3600.0}
    )
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class LearnedRoutine:
    """Learn this household: get-up time, session lengths, stillness per time of day.

    Every learned value is clamped to a configured ``[min, max]``, so learning can make a
    rule fit the person but never switch it off. Until ``min_days`` days are observed (the
    learning period) the rules run on their defaults, or on the installer's
    ``usual_get_up`` / ``usual_bedtime``.

    - ``inactivity``: per hour, ``factor`` x the ``quantile`` of the longest stillness
      reached in that hour (pooled with the hours either side), clamped to
      ``min_s..max_s``; an hour with fewer than ``min_samples`` samples keeps the fixed
      threshold (30: about one false alert a month is one in ~700 hour-samples, and no
      threshold learned from fewer than 30 is worth trusting below the fixed one; so
      stillness per hour takes about ten days, the other rules ``min_days``).
    - ``by_place``: also per room of the last activity and time-of-day band,
      ``place_factor`` x the ``quantile`` of the per-hour maxima seen after being in that
      room, clamped to ``place_min_s..max_s``, once the cell has ``place_min_samples``
      day-hours; the rule takes the lower of the room's and the hour's threshold.
    - ``not_up``: the latest first activity outside the bedroom (per weekday / weekend once
      there are three of that kind, else pooled) + ``not_up_margin_s``, clamped to
      ``not_up_earliest..not_up_latest``.
    - ``chair_too_long``, ``night_out_of_bed``: ``session_factor`` x the longest session
      seen, clamped to their ``*_min_s..*_max_s``.
    - ``not_returned``: ``away_factor`` x the ``away_quantile`` of the completed absences
      seen (front door out -> back, also those that raised ``not_returned``), clamped to
      ``away_min_s..away_max_s``; it can only grow past the 12 h default for a person seen
      to stay out that long and come back.

    ``factor``, ``min_s``, ``by_place`` with ``place_factor``, ``place_min_s`` and
    ``place_min_samples``, ``not_up_margin_s``, ``session_factor``, ``away_factor``,
    ``away_quantile`` and ``min_days`` are what leave-one-home-out's selection chose on all
    four recorded homes (docs/inactivity.md, step 8; the per-room level was also chosen in
    every fold); the bounds are the rules' own defaults or telecare practice, not fitted
    (``away_max_s`` 24 h: README, "not_returned learns how long this person stays out").
    """

    enabled: bool = field(default=True, metadata={"doc": "learn this household's routine"})
    quantile: float = field(default=1.0, metadata={"min": 0.5, "max": 1.0})
    factor: float = field(default=2.0, metadata={"min": 1.0, "max": 5.0})
    min_s: float = field(default=7200.0, metadata={"min": 600.0, "max": 50 * 3600.0})
    max_s: float = field(default=12 * 3600.0, metadata={"min": 600.0, "max": 50 * 3600.0})
    learn_days: int = field(default=28, metadata={"min": 3, "max": 366})
    min_days: int = field(
        default=5, metadata={"min": 1, "max": 7,
                             "doc": "learning period: days observed before learned values apply"},
    )
    min_samples: int = field(
        default=30, metadata={"min": 3, "max": 10000,
                              "doc": "samples (day-hours, pooled) before an hour is trusted"},
    )
    by_place: bool = field(
        default=True, metadata={"doc": "learn stillness per room of the last activity too "
                                       "(on: chosen on the four recorded homes)"})
    place_factor: float = field(
        default=1.5, metadata={"min": 1.0, "max": 5.0,
                               "doc": "x the longest stillness seen after being in that room"})
    place_min_s: float = field(
        default=1800.0, metadata={"min": 600.0, "max": 50 * 3600.0,
                                  "doc": "a room's learned threshold: never shorter"})
    place_min_samples: int = field(
        default=40, metadata={"min": 3, "max": 10000,
                              "doc": "day-hours seen after being in a room (per band) before "
                                     "its threshold is trusted"})
    not_up_margin_s: float = field(
        default=3 * 3600.0, metadata={"min": 0.0, "max": 6 * 3600.0,
                                      "doc": "added to the latest learned get-up time"},
    )
    not_up_earliest: str = field(
        default="08:00", metadata={**_HHMM, "doc": "learned not_up deadline: never earlier"}
    )
    not_up_latest: str = field(
        default="13:00", metadata={**_HHMM, "doc": "learned not_up deadline: never later"}
    )
    session_factor: float = field(
        default=2.0, metadata={"min": 1.0, "max": 5.0,
                               "doc": "x the longest chair / night session seen"},
    )
    chair_min_s: float = field(default=2 * 3600.0, metadata={"min": 600.0, "max": 24 * 3600.0})
    chair_max_s: float = field(default=8 * 3600.0, metadata={"min": 600.0, "max": 24 * 3600.0})
    night_min_s: float = field(default=45 * 60.0, metadata={"min": 60.0, "max": 12 * 3600.0})
    night_max_s: float = field(default=3 * 3600.0, metadata={"min": 60.0, "max": 12 * 3600.0})
    away_factor: float = field(
        default=2.0, metadata={"min": 1.0, "max": 5.0,
                               "doc": "not_returned: x the away_quantile of the absences seen"},
    )
    away_quantile: float = field(
        default=1.0, metadata={"min": 0.5, "max": 1.0,
                               "doc": "not_returned: quantile of the absences seen (1.0 = the "
                                      "longest)"},
    )
    away_min_s: float = field(default=12 * 3600.0, metadata={"min": 1800.0, "max": 72 * 3600.0})
    away_max_s: float = field(
        default=24 * 3600.0, metadata={
            "min": 1800.0, "max": 72 * 3600.0,
            "doc": "not_returned never waits longer, however long the absences seen "
                   "(24 h: not back by the same time next day)",
        },
    )

    def validate(self, path: str) -> list[str]:
        problems = []
        pairs = (("min_s", "max_s"), ("place_min_s", "max_s"), ("chair_min_s", "chair_max_s"),
                 ("night_min_s", "night_max_s"), ("away_min_s", "away_max_s"))
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                problems.append(f"{path}.{lo}: greater than {hi} "
                                f"({getattr(self, lo)} > {getattr(self, hi)})")
        if self.min_days > self.learn_days:
            problems.append(f"{path}.min_days: greater than learn_days")
        if hhmm_to_minutes(self.not_up_earliest) > hhmm_to_minutes(self.not_up_latest):
            problems.append(f"{path}.not_up_earliest: later than not_up_latest")
        return problems


@dataclass(frozen=True, slots=True)
class InactivityConfig:
    enabled: bool = field(default=True, metadata={"doc": "run the inactivity rules at all"})
    auto_rules: bool = field(
        default=True, metadata={"doc": "derive unwritten rules from the configured sensors"}
    )
    prewarning_s: float = field(
        default=600.0, metadata={"min": 0.0, "max": 3600.0,
                                 "doc": "buzzer/LED warning before an inactivity alarm"},
    )
    mats_are_presence: bool = field(
        default=True, metadata={"doc": "an occupied bed or chair mat pauses inactivity"}
    )
    bedroom: str = field(
        default="", metadata={"doc": "room name of the bedroom; default: the bed mat's room"}
    )
    exit_doors: tuple[str, ...] = field(
        default=(), metadata={"doc": "device ids of front doors; default: role main_entrance_door"}
    )
    door_grace_s: float = field(
        default=15.0, metadata={
            "min": 0.0, "max": 300.0,
            "doc": "motion this soon after the front door may be the person leaving",
        },
    )
    restart_grace_s: float = field(
        default=120.0, metadata={"min": 0.0, "max": 3600.0,
                                 "doc": "after a restart, re-observe this long before any alarm"},
    )
    inactivity: tuple[InactivityWindow, ...] | None = field(
        default=None, metadata={"doc": "fixed windows; default derived from the sensors"}
    )
    not_up: NotUpRule | None = None
    night_out_of_bed: NightOutOfBedRule | None = None
    chair_too_long: ChairTooLongRule | None = None
    night_exit: NightExitRule | None = None
    away: AwayRule | None = None
    learned: LearnedRoutine = field(default_factory=LearnedRoutine)
    usual_get_up: str = field(
        default="", metadata={
            "pattern": f"({HHMM_PATTERN})?", "pattern_hint": "must be HH:MM or empty",
            "doc": "the person's usual get-up time (commissioning): seeds not_up and the "
                   "night windows until the routine is learned",
        },
    )
    usual_bedtime: str = field(
        default="", metadata={
            "pattern": f"({HHMM_PATTERN})?", "pattern_hint": "must be HH:MM or empty",
            "doc": "the person's usual bed time (commissioning): starts the night windows",
        },
    )

    def validate(self, path: str) -> list[str]:
        problems = []
        for i, w in enumerate(self.inactivity or ()):
            if w.after_s <= self.prewarning_s and w.enabled:
                problems.append(
                    f"{path}.inactivity[{i}].after_s: must be longer than prewarning_s "
                    f"({w.after_s} <= {self.prewarning_s})"
                )
        if self.learned.enabled and self.learned.min_s <= self.prewarning_s:
            problems.append(f"{path}.learned.min_s: must be longer than prewarning_s")
        if (self.learned.enabled and self.learned.by_place
                and self.learned.place_min_s <= self.prewarning_s):
            problems.append(f"{path}.learned.place_min_s: must be longer than prewarning_s")
        return problems
