"""What the rules know about the home at one moment: stillness, presence, away, the door.

Plain mutable state owned by the engine (on the agent loop). Times are monotonic seconds;
``Instant`` carries the wall clock alongside for local time of day and event labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from agent.model import Priority

# Front-door movements this close together are one passage (open, close).
PASSAGE_S = 120.0
# A mat whose recent stays are this short in the median reports movement on it, not
# occupancy (Kasteren B's bed and chair mats: 1 s pulses while the person lies or sits
# still for hours between them). Nobody's median sitting or night lasts under a minute;
# a mat that reports occupancy shows stays of minutes to hours (Ordonez B: seat p10 882 s,
# bed p10 2,621 s). Physical, not fitted: any value from 10 s to 800 s sorts the four
# recorded homes' mats the same way.
MOMENTARY_MEDIAN_S = 60.0
# Stays a mat must have shown before it is judged; the most recent are kept.
MOMENTARY_MIN_STAYS = 10
MOMENTARY_KEEP = 21


@dataclass(frozen=True, slots=True)
class Instant:
    mono: float
    wall: float
    synced: bool = True


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of elapsed time in which the local time-of-day regime does not change."""

    mono0: float
    mono1: float
    wall0: float
    wall1: float
    minute: float      # local minute of day at the middle
    day: date          # local date at the middle
    hour: int          # local hour at the middle

    @property
    def duration(self) -> float:
        return self.mono1 - self.mono0


@dataclass(frozen=True, slots=True)
class Alert:
    """An event a rule wants raised (the detector stamps and submits it)."""

    type: str
    priority: Priority
    data: dict[str, Any]
    device_id: str = ""


@dataclass
class HomeState:
    still_s: float = 0.0
    last_activity_mono: float | None = None
    last_activity_wall: float | None = None
    last_device: str = ""
    last_room: str = ""
    mats: dict[str, tuple[str, float]] = field(default_factory=dict)   # id -> (bed|chair, since)
    unconfirmed_mats: set[str] = field(default_factory=set)             # restored, not yet seen
    mats_are_presence: bool = True
    away: bool = False
    exit_door_mono: float | None = None     # latest front-door movement
    observing_since_mono: float = 0.0       # continuous observation since (for daily checks)
    hold_until_mono: float = 0.0            # no alarm before this (after a restart)
    learning_paused: bool = False           # an inactivity alarm is outstanding
    returned_mono: float | None = None      # front door while away: the person came home
    mat_on: dict[str, float] = field(default_factory=dict)       # id -> occupied since (any)
    mat_stays: dict[str, list[float]] = field(default_factory=dict)   # id -> recent stays (s)

    def mat_momentary(self, dev: str) -> bool:
        """The mat reports pulses (movement on it), not occupancy: its ``vacated`` does not
        mean the person left and its ``occupied`` is no proof they are still there."""
        if not self.mat_classified(dev):
            return False
        xs = sorted(self.mat_stays[dev])
        return xs[len(xs) // 2] < MOMENTARY_MEDIAN_S

    def mat_classified(self, dev: str) -> bool:
        """The mat has shown enough stays to tell pulses from occupancy."""
        return len(self.mat_stays.get(dev) or []) >= MOMENTARY_MIN_STAYS

    def mat_stay(self, dev: str, seconds: float) -> None:
        stays = self.mat_stays.setdefault(dev, [])
        stays.append(round(max(0.0, seconds), 1))
        del stays[:-MOMENTARY_KEEP]

    def in_return_passage(self, now_mono: float) -> bool:
        """A front-door movement this soon after coming home is the same passage (the door
        closing behind the person), not someone leaving."""
        return self.returned_mono is not None and now_mono - self.returned_mono < PASSAGE_S

    @property
    def present(self) -> bool:
        """On a mat: the person is known to be there, stillness does not run."""
        return self.mats_are_presence and bool(self.mats)

    def mat_occupied(self, kind: str) -> bool:
        return any(k == kind for k, _ in self.mats.values())

    def accruing(self) -> bool:
        return not self.present and not self.away
