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
