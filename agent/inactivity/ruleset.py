"""The rules one home runs: the config, completed from its sensors.

Defaults are chosen from how the sensors see a person, not from any one home's data:

- A bed mat makes sleep visible (presence), so inactivity can be watched all day; without
  one, a night's sleep looks like stillness and inactivity is watched 07:00-22:00 only.
- 4 h of stillness: with mats as presence and absences excluded, what is left is time spent
  out of sight of every sensor; 4 h is the short end of telecare practice for a monitored
  period (Tunstall's stopwatch method allows 3-4 h only where sleep is not counted) and
  far below the 12-14 h council timers.
- ``not_up`` at 11:00: late enough not to alarm for late risers, early enough to find a
  person who could not get out of bed before they have lain there half a day.
- ``night_out_of_bed`` 45 min in 23:00-07:00: longer than a toilet visit or a drink,
  short enough for someone lying on a cold floor; a seat mat counts as safe.
- ``chair_too_long`` 4 h: longer than a film and the news in one sitting.
- ``night_exit`` 10 min and away presumed 10 min after the front door: a person coming home
  shows up on a sensor within minutes; ``not_returned`` after 12 h, so an away presumption
  is never worse than the council timer it replaces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agent.inactivity.config import (
    AwayRule,
    ChairTooLongRule,
    InactivityConfig,
    InactivityWindow,
    LearnedRoutine,
    NightExitRule,
    NightOutOfBedRule,
    NotUpRule,
)
from agent.inactivity.config import hhmm_to_minutes as _m
from agent.inactivity.sensors import EXIT_ROLE, DeviceMap

ALL_DAY = ("00:00", "00:00")
DAYTIME = ("07:00", "22:00")


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Fully resolved rules (None = not running) plus how they were arrived at."""

    prewarning_s: float = 600.0
    mats_are_presence: bool = True
    bedrooms: frozenset[str] = frozenset()
    exit_doors: frozenset[str] = frozenset()
    door_grace_s: float = 15.0
    restart_grace_s: float = 120.0
    inactivity: tuple[InactivityWindow, ...] = ()
    not_up: NotUpRule | None = None
    night_out_of_bed: NightOutOfBedRule | None = None
    chair_too_long: ChairTooLongRule | None = None
    night_exit: NightExitRule | None = None
    away: AwayRule | None = None
    learned: LearnedRoutine | None = None
    notes: tuple[str, ...] = field(default=())

    def minutes_of_interest(self) -> set[int]:
        """Times of day at which some rule's regime changes (window edges, deadlines)."""
        out: set[int] = set()
        for w in self.inactivity:
            if w.start != w.end:
                out.update((_m(w.start), _m(w.end)))
        if self.not_up:
            out.update((_m(self.not_up.by), _m(self.not_up.morning_from)))
        for r in (self.night_out_of_bed, self.night_exit):
            if r is not None:
                out.update((_m(r.start), _m(r.end)))
        if self.learned is not None:
            out.update(h * 60 for h in range(24))
        return out

    def describe(self) -> dict[str, Any]:
        def d(obj: Any) -> Any:
            if obj is None:
                return None
            return {k: getattr(obj, k) for k in obj.__slots__ if k != "enabled"}

        return {
            "prewarning_s": self.prewarning_s,
            "mats_are_presence": self.mats_are_presence,
            "bedrooms": sorted(self.bedrooms),
            "exit_doors": sorted(self.exit_doors),
            "inactivity": [d(w) for w in self.inactivity],
            "not_up": d(self.not_up),
            "night_out_of_bed": d(self.night_out_of_bed),
            "chair_too_long": d(self.chair_too_long),
            "night_exit": d(self.night_exit),
            "away": d(self.away),
            "learned": d(self.learned),
            "notes": list(self.notes),
        }


def _pick(explicit: Any, auto: bool, available: bool, default: Any, name: str,
          needs: str, notes: list[str]) -> Any:
    if explicit is not None:
        if not explicit.enabled:
            notes.append(f"{name}: disabled in config")
            return None
        if not available:
            notes.append(f"{name}: configured, but there is no {needs}: it cannot fire")
        return explicit
    if auto and available:
        notes.append(f"{name}: default (derived from the {needs})")
        return default
    if auto:
        notes.append(f"{name}: off (no {needs})")
    return None


def derive_rules(cfg: InactivityConfig, devices: DeviceMap) -> RuleSet:
    """Complete ``cfg`` from the sensors in ``devices``."""
    notes: list[str] = []
    kinds = {d.kind for d in devices.values()}
    has_bed = "bed_mat" in kinds
    has_chair = "chair_mat" in kinds
    exit_doors = frozenset(cfg.exit_doors) or frozenset(
        d.device_id for d in devices.values() if d.role == EXIT_ROLE
    )
    if cfg.bedroom:
        bedrooms = frozenset({cfg.bedroom.lower()})
    else:
        bedrooms = frozenset(
            d.room.lower() for d in devices.values() if d.kind == "bed_mat" and d.room
        )
        if not bedrooms:
            bedrooms = frozenset(
                d.room.lower() for d in devices.values() if "bedroom" in d.room.lower()
            )
    outside_motion = any(
        d.kind == "motion" and d.room.lower() not in bedrooms for d in devices.values()
    )
    sleep_visible = has_bed and cfg.mats_are_presence
    if cfg.inactivity is not None:
        windows = tuple(w for w in cfg.inactivity if w.enabled)
        notes.append(f"inactivity: {len(windows)} window(s) from config")
    elif cfg.auto_rules and devices:
        start, end = ALL_DAY if sleep_visible else DAYTIME
        windows = (InactivityWindow(start=start, end=end),)
        why = "all day: a bed mat shows sleep" if sleep_visible else "daytime only: no bed mat"
        notes.append(f"inactivity: default 4 h, {why}")
    else:
        windows = ()
    auto = cfg.auto_rules
    rs = RuleSet(
        prewarning_s=cfg.prewarning_s,
        mats_are_presence=cfg.mats_are_presence,
        bedrooms=bedrooms,
        exit_doors=exit_doors,
        door_grace_s=cfg.door_grace_s,
        restart_grace_s=cfg.restart_grace_s,
        inactivity=windows,
        not_up=_pick(cfg.not_up, auto, has_bed or (bool(bedrooms) and outside_motion),
                     NotUpRule(), "not_up", "bed mat or bedroom/other-room motion sensors", notes),
        night_out_of_bed=_pick(cfg.night_out_of_bed, auto, has_bed, NightOutOfBedRule(),
                               "night_out_of_bed", "bed mat", notes),
        chair_too_long=_pick(cfg.chair_too_long, auto, has_chair, ChairTooLongRule(),
                             "chair_too_long", "chair mat", notes),
        night_exit=_pick(cfg.night_exit, auto, bool(exit_doors), NightExitRule(),
                         "night_exit", "front door contact", notes),
        away=_pick(cfg.away, auto, bool(exit_doors), AwayRule(),
                   "away", "front door contact", notes),
        learned=cfg.learned if cfg.learned.enabled else None,
        notes=tuple(notes),
    )
    # A mat proves presence, not wellbeing: without its own rule, someone unable to get
    # out of the chair (or bed) would never be found by the inactivity rule.
    extra = []
    if cfg.mats_are_presence and has_chair and rs.chair_too_long is None and windows:
        extra.append("warning: chair mat counts as presence but chair_too_long is off")
    if cfg.mats_are_presence and has_bed and rs.not_up is None and windows:
        extra.append("warning: bed mat counts as presence but not_up is off")
    unknown = sorted(d for d in cfg.exit_doors if d not in devices)
    if unknown:
        extra.append(f"warning: exit_doors not among the configured sensors: {', '.join(unknown)}")
    if extra:
        rs = dataclasses.replace(rs, notes=rs.notes + tuple(extra))
    return rs
