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
    not_up_seed: int | None = None       # minute of day from usual_get_up
    notes: tuple[str, ...] = field(default=())

    def minutes_of_interest(self) -> set[int]:
        """Times of day at which some rule's regime changes (window edges, deadlines)."""
        out: set[int] = set()
        for w in self.inactivity:
            if w.start != w.end:
                out.update((_m(w.start), _m(w.end)))
        if self.not_up:
            out.update((_m(self.not_up.by), _m(self.not_up.morning_from)))
            if self.not_up_seed is not None:
                out.add(self.not_up_seed)
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
            "not_up_seed": None if self.not_up_seed is None else _hhmm(self.not_up_seed),
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


@dataclass(frozen=True, slots=True)
class _Sensors:
    """What the configured sensors make visible."""

    has_bed: bool
    has_chair: bool
    exit_doors: frozenset[str]
    bedrooms: frozenset[str]
    outside_motion: bool


def _bedrooms(cfg: InactivityConfig, devices: DeviceMap) -> frozenset[str]:
    if cfg.bedroom:
        return frozenset({cfg.bedroom.lower()})
    rooms = frozenset(d.room.lower() for d in devices.values() if d.kind == "bed_mat" and d.room)
    return rooms or frozenset(
        d.room.lower() for d in devices.values() if "bedroom" in d.room.lower())


def _sensors(cfg: InactivityConfig, devices: DeviceMap) -> _Sensors:
    kinds = {d.kind for d in devices.values()}
    exit_doors = frozenset(cfg.exit_doors) or frozenset(
        d.device_id for d in devices.values() if d.role == EXIT_ROLE)
    bedrooms = _bedrooms(cfg, devices)
    outside = any(d.kind == "motion" and d.room.lower() not in bedrooms for d in devices.values())
    return _Sensors("bed_mat" in kinds, "chair_mat" in kinds, exit_doors, bedrooms, outside)


def _hhmm(minute: int) -> str:
    minute %= 1440
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _seeded_night(cfg: InactivityConfig) -> tuple[str, str]:
    """The night window: the installer's bed and get-up times where given."""
    start = cfg.usual_bedtime or "23:00"
    end = cfg.usual_get_up or "07:00"
    return start, end


def _windows(cfg: InactivityConfig, sees: _Sensors, devices: DeviceMap,
             notes: list[str]) -> tuple[InactivityWindow, ...]:
    if cfg.inactivity is not None:
        windows = tuple(w for w in cfg.inactivity if w.enabled)
        notes.append(f"inactivity: {len(windows)} window(s) from config")
        return windows
    if not (cfg.auto_rules and devices):
        return ()
    if sees.has_bed and cfg.mats_are_presence:
        notes.append("inactivity: default 4 h, all day: a bed mat shows sleep")
        return (InactivityWindow(start=ALL_DAY[0], end=ALL_DAY[1]),)
    start = cfg.usual_get_up or DAYTIME[0]
    end = cfg.usual_bedtime or DAYTIME[1]
    if start == end:
        start, end = DAYTIME
    notes.append(f"inactivity: default 4 h, {start}-{end} only: no bed mat shows sleep")
    return (InactivityWindow(start=start, end=end),)


def not_up_seed(cfg: InactivityConfig) -> int | None:
    """The not_up deadline the installer's ``usual_get_up`` gives (learning bounds apply)."""
    if not cfg.usual_get_up:
        return None
    p = cfg.learned
    minute = _m(cfg.usual_get_up) + p.not_up_margin_s / 60.0
    return int(round(min(_m(p.not_up_latest), max(_m(p.not_up_earliest), minute))))


def _warnings(cfg: InactivityConfig, rs: RuleSet, sees: _Sensors,
              devices: DeviceMap) -> list[str]:
    # A mat proves presence, not wellbeing: without its own rule, someone unable to get
    # out of the chair (or bed) would never be found by the inactivity rule.
    extra = []
    if cfg.mats_are_presence and sees.has_chair and rs.chair_too_long is None and rs.inactivity:
        extra.append("warning: chair mat counts as presence but chair_too_long is off")
    if cfg.mats_are_presence and sees.has_bed and rs.not_up is None and rs.inactivity:
        extra.append("warning: bed mat counts as presence but not_up is off")
    unknown = sorted(d for d in cfg.exit_doors if d not in devices)
    if unknown:
        extra.append(f"warning: exit_doors not among the configured sensors: {', '.join(unknown)}")
    return extra


def derive_rules(cfg: InactivityConfig, devices: DeviceMap) -> RuleSet:
    """Complete ``cfg`` from the sensors in ``devices``."""
    notes: list[str] = []
    sees = _sensors(cfg, devices)
    windows = _windows(cfg, sees, devices, notes)
    auto = cfg.auto_rules
    night_start, night_end = _seeded_night(cfg)
    has_door = bool(sees.exit_doors)
    rs = RuleSet(
        prewarning_s=cfg.prewarning_s,
        mats_are_presence=cfg.mats_are_presence,
        bedrooms=sees.bedrooms,
        exit_doors=sees.exit_doors,
        door_grace_s=cfg.door_grace_s,
        restart_grace_s=cfg.restart_grace_s,
        inactivity=windows,
        not_up=_pick(cfg.not_up, auto, sees.has_bed or (bool(sees.bedrooms)
                                                        and sees.outside_motion),
                     NotUpRule(), "not_up", "bed mat or bedroom/other-room motion sensors", notes),
        night_out_of_bed=_pick(cfg.night_out_of_bed, auto, sees.has_bed,
                               NightOutOfBedRule(start=night_start, end=night_end),
                               "night_out_of_bed", "bed mat", notes),
        chair_too_long=_pick(cfg.chair_too_long, auto, sees.has_chair, ChairTooLongRule(),
                             "chair_too_long", "chair mat", notes),
        night_exit=_pick(cfg.night_exit, auto, has_door,
                         NightExitRule(start=night_start, end=night_end),
                         "night_exit", "front door contact", notes),
        away=_pick(cfg.away, auto, has_door, AwayRule(), "away", "front door contact", notes),
        learned=cfg.learned if cfg.learned.enabled else None,
        not_up_seed=not_up_seed(cfg),
        notes=tuple(notes),
    )
    extra = _warnings(cfg, rs, sees, devices)
    if cfg.usual_get_up or cfg.usual_bedtime:
        extra.append(f"seeded from commissioning: get-up {cfg.usual_get_up or '-'}, "
                     f"bed {cfg.usual_bedtime or '-'}")
    if extra:
        rs = dataclasses.replace(rs, notes=rs.notes + tuple(extra))
    return rs
