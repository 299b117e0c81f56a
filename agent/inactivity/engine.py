"""The rules engine: one home's rules over observations and elapsed time. No I/O.

Pure and synchronous so the agent (``InactivityDetector``, on the asyncio loop) and the
evaluation (``tec-agent eval-inactivity``, a time-compressed replay) drive the very same
objects. Callers pass :class:`Instant` values from their clock; the engine never reads a
clock itself. ``advance(now)`` lets time pass, ``observe(obs, now)`` applies a reading,
``next_due(now)`` says when to call again (monotonic).

Durations are monotonic. An elapsed interval is placed on the local clock as
``[wall - dt, wall]``, so a wall-clock step (NTP arriving late on a Pi without RTC) moves
*where in the day* later time falls but never adds or removes time.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from agent.inactivity.daily_rules import ChairTooLong, NightOutOfBed, NotUp
from agent.inactivity.home import MOMENTARY_MEDIAN_S, Alert, HomeState, Instant, Segment
from agent.inactivity.household import Learning
from agent.inactivity.localtime import LocalClock
from agent.inactivity.routine import Routine, StillnessRecorder, learn, place_key
from agent.inactivity.rules import (
    Away,
    FixedInactivity,
    LearnedInactivity,
    NightExit,
    Rule,
    StillnessAlarm,
)
from agent.inactivity.ruleset import RuleSet
from agent.inactivity.sensors import Observation

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
# Without the learned routine switched on, samples are still kept this long, so switching
# it on later (or ``tec-agent routine``) has a month of history to show.
KEEP_SAMPLES_DAYS = 35
# A restart shorter than this keeps the morning's "was up" evidence valid.
_SHORT_GAP_S = 60.0


@dataclass(frozen=True, slots=True)
class EngineOptions:
    record: bool = True          # keep per-hour stillness maxima (the learned routine's input)
    relearn: bool = True         # relearn the routine once a local day (False: keep it frozen)


class RulesEngine:
    def __init__(self, rules: RuleSet, tz: str, now: Instant,
                 routine: Routine | None = None, options: EngineOptions | None = None) -> None:
        self.ruleset = rules
        self.options = options or EngineOptions()
        minutes = rules.minutes_of_interest()
        if self.options.record:
            minutes |= {h * 60 for h in range(24)}
        self.clock = LocalClock(tz, minutes)
        self.home = HomeState(mats_are_presence=rules.mats_are_presence,
                              observing_since_mono=now.mono)
        self.last = now
        self.recorder = StillnessRecorder() if self.options.record else None
        self.routine = routine or Routine(
            fallback_s=rules.learned.max_s if rules.learned else 43200.0
        )
        self.routine_changed = False
        self.ready_on: date | None = None        # first local day the learning period was over
        self.prune_before: date | None = None    # samples before this day may be deleted
        self._day: date | None = None
        self._unobserved = False
        self.fixed = [FixedInactivity(w, rules.prewarning_s, self.clock) for w in rules.inactivity]
        self.learned = (LearnedInactivity(rules.prewarning_s, self.clock, self.routine,
                                          self._fallback_threshold)
                        if rules.learned is not None else None)
        self.learning = Learning(rules.learned, self.options.record)
        self.away = (Away(rules.away, self.learning, self.clock)
                     if rules.away is not None else None)
        self.others: list[Rule] = []
        if rules.not_up is not None:
            self.others.append(NotUp(rules.not_up, self.clock, rules.bedrooms, self.learning,
                                     rules.prewarning_s, rules.not_up_seed))
        if rules.night_out_of_bed is not None:
            self.others.append(NightOutOfBed(rules.night_out_of_bed, self.clock, self.learning,
                                             rules.bedrooms))
        if rules.chair_too_long is not None:
            self.others.append(ChairTooLong(rules.chair_too_long, self.clock, self.learning,
                                            rules.prewarning_s))
        if rules.night_exit is not None:
            self.others.append(NightExit(rules.night_exit, self.clock))
        self._set_active()

    @property
    def _windows_all_day(self) -> bool:
        """The fixed windows count all-day stillness, the very quantity the learned rule
        compares (a bed mat shows sleep). Without that, a window counts only its own time."""
        return all(r.window.all_day for r in self.fixed)

    def _fallback_threshold(self, minute: float) -> float:
        """For an hour the routine has not learned: the fixed rule's threshold, else max_s.

        With daytime-only windows (sleep not visible) the fixed threshold counts window time
        only, so it cannot be applied to all-day stillness (a night's sleep would reach it
        by 07:10): those hours get ``max_s`` and the fixed window rule stays on beside."""
        if not self._windows_all_day:
            return self.ruleset.learned.max_s if self.ruleset.learned else 12 * 3600.0
        fixed = [r.after_s for r in self.fixed if r.window.contains(minute)]
        if fixed:
            return min(fixed)
        return self.ruleset.learned.max_s if self.ruleset.learned else 12 * 3600.0

    # -- introspection -----------------------------------------------------------------------
    @property
    def stillness_rules(self) -> list[StillnessAlarm]:
        out: list[StillnessAlarm] = list(self.fixed)
        if self.learned is not None:
            out.append(self.learned)
        return out

    @property
    def rules(self) -> list[Rule]:
        out: list[Rule] = [*self.stillness_rules, *self.others]
        if self.away is not None:
            out.append(self.away)
        return out

    @property
    def prewarning(self) -> bool:
        return any(r.prewarning for r in self.rules)

    def _keyed_rules(self) -> dict[str, Rule]:
        out: dict[str, Rule] = {f"inactivity[{i}]": r for i, r in enumerate(self.fixed)}
        if self.learned is not None:
            out["learned"] = self.learned
        for r in self.others:
            out[r.name] = r
        if self.away is not None:
            out["away"] = self.away
        return out

    def _set_active(self) -> None:
        learned_on = self.learned is not None and self.routine.ready
        if self.learned is not None:
            self.learned.active = learned_on
        for r in self.fixed:
            # Learning replaces a fixed rule only where it sees the same stillness; a
            # daytime-only window stays on (learning never switches protection off).
            r.active = not learned_on or not self._windows_all_day

    def set_routine(self, routine: Routine) -> None:
        self.routine = routine
        if self.learned is not None:
            self.learned.routine = routine
        self._set_active()

    # -- time ------------------------------------------------------------------------------------
    def advance(self, now: Instant) -> list[Alert]:
        dt = now.mono - self.last.mono
        if dt < 0:
            log.warning("monotonic clock went back %.3f s; ignoring the gap", -dt)
            dt = 0.0
        if dt > 0:
            self._elapse(now, dt)
        if abs((now.wall - now.mono) - (self.last.wall - self.last.mono)) > 60.0:
            log.info("wall clock stepped by %+.0f s; durations are unaffected",
                     (now.wall - now.mono) - (self.last.wall - self.last.mono))
        self.last = now
        alerts = self._check(now)
        self._maybe_relearn(now)
        return alerts

    def _elapse(self, now: Instant, dt: float) -> None:
        w1 = now.wall
        w0 = w1 - dt
        edges = [w0, *self.clock.split_points(w0, w1), w1]
        home = self.home
        for a, b in itertools.pairwise(edges):
            if b <= a:
                continue
            loc = self.clock.local((a + b) / 2.0)
            seg = Segment(now.mono - (w1 - a), now.mono - (w1 - b), a, b,
                          loc.hour * 60 + loc.minute + loc.second / 60.0, loc.date(), loc.hour)
            if home.accruing():
                home.still_s += seg.duration
            for r in self.rules:
                r.on_segment(seg, home)
            if self.recorder is not None and now.synced and not self._unobserved:
                observed = seg.duration if home.accruing() and not home.learning_paused else 0.0
                self.recorder.record(seg.day, seg.hour, home.still_s, observed,
                                     place_key(home.last_room, home.last_device))

    def _check(self, now: Instant) -> list[Alert]:
        home = self.home
        if home.unconfirmed_mats and now.mono >= home.hold_until_mono:
            for dev in sorted(home.unconfirmed_mats):
                log.info("mat %s not confirmed since the restart: treating it as vacated", dev)
                home.mats.pop(dev, None)
            home.unconfirmed_mats.clear()
        if self.away is not None and self.away.presume(now, home):
            log.info("front door, then nobody seen inside: presumed out; inactivity paused")
            self._reset_stillness()
            for r in self.rules:
                r.on_away()
        self._set_active()
        alerts: list[Alert] = []
        for r in self.rules:
            alerts.extend(r.check(now, home))
        if any(a.type == "inactivity" for a in alerts):
            for r in self.stillness_rules:     # one alarm per still spell, whichever rule
                r.raised, r.prewarn_since = True, None
        return alerts

    def next_due(self, now: Instant) -> float | None:
        """Monotonic time at which to call :meth:`advance` next (None: only on a reading)."""
        home = self.home
        dues = [r.next_due(now, home) for r in self.rules]
        if self.away is not None:
            dues.append(self.away.next_due(now, home))
        if home.unconfirmed_mats:
            dues.append(home.hold_until_mono)
        point = self.clock.next_point(now.wall)
        if point is not None:
            dues.append(now.mono + (point - now.wall))
        valid = [d for d in dues if d is not None]
        return min(valid) if valid else None

    # -- readings ---------------------------------------------------------------------------------
    def observe(self, obs: Observation, now: Instant) -> list[Alert]:
        alerts = self.advance(now)
        home = self.home
        self.learning.seen(self.clock.local_date(now.wall), now.synced)
        grace = self.ruleset.door_grace_s
        recent_door = (home.exit_door_mono is not None
                       and now.mono - home.exit_door_mono < grace)
        inside = obs.inside and not (obs.type == "motion" and recent_door)
        if obs.activity:
            home.still_s = 0.0
            home.last_activity_mono, home.last_activity_wall = now.mono, now.wall
            home.last_device, home.last_room = obs.device_id, obs.room
            home.learning_paused = False
            self._reset_stillness()
        if obs.mat is not None:
            obs = self._mat(obs, now)
        for r in self.rules:
            r.on_obs(obs, now, home, inside)
        if obs.exit_door:
            home.exit_door_mono = now.mono
        alerts.extend(self._check(now))
        return alerts

    def _mat(self, obs: Observation, now: Instant) -> Observation:
        """Apply a mat reading. A mat that pulses (:meth:`HomeState.mat_momentary`) is a
        movement sensor on the bed or chair: its pulses are activity, never presence, so a
        pulse stuck "occupied" for days cannot hide a collapse, and the rules are told."""
        home, dev = self.home, obs.device_id
        since: float | None = None
        if obs.occupied:
            home.mat_on.setdefault(dev, now.mono)
        else:
            since = home.mat_on.pop(dev, None)
            if since is not None:
                home.mat_stay(dev, now.mono - since)
        home.unconfirmed_mats.discard(dev)
        if home.mat_momentary(dev):
            home.mats.pop(dev, None)
            return dataclasses.replace(obs, momentary=True)
        if (not obs.occupied and since is not None and not home.mat_classified(dev)
                and now.mono - since < MOMENTARY_MEDIAN_S):
            # Not yet known to pulse, but this stay was a pulse's length: the rules that
            # time leaving the mat must not start on it (HomeState.mat_momentary).
            obs = dataclasses.replace(obs, short_stay=True)
        if obs.occupied:
            home.mats.setdefault(dev, (obs.mat or "", now.mono))
        else:
            home.mats.pop(dev, None)
        return obs

    def _reset_stillness(self) -> None:
        self.home.still_s = 0.0
        for r in self.stillness_rules:
            r.on_stillness_reset()

    # -- learning ---------------------------------------------------------------------------------
    def _maybe_relearn(self, now: Instant) -> None:
        """Once a local day: drop old samples, and relearn if the routine is enabled."""
        if self.recorder is None or not now.synced:
            return
        today = self.clock.local_date(now.wall)
        if self._day == today:
            return
        stepped_back = self._day is not None and today < self._day
        self._day = today
        if stepped_back:
            # A wall clock stepped back over midnight: what was learned stays (learning from
            # "before today" only would forget the days after the new date).
            log.info("wall clock stepped back to %s: keeping what was learned", today)
            return
        params = self.ruleset.learned
        keep = params.learn_days + 1 if params is not None else KEEP_SAMPLES_DAYS
        self.prune_before = today.fromordinal(today.toordinal() - keep)
        self.recorder.prune(self.prune_before)
        self.learning.recorder.prune(self.prune_before)
        if params is None or not self.options.relearn:
            return
        self.learning.relearn(today)
        self.routine_changed = True
        if self.ready_on is None and self.learning.household.ready:
            self.ready_on = today
        if self.routine.learned_on == today:
            return
        self.set_routine(learn(self.recorder.bins, params, today, self.recorder.places))
        self.routine_changed = True
        log.info("learned routine updated: %d days, ready=%s", self.routine.days_used,
                 self.routine.ready)

    # -- persistence ------------------------------------------------------------------------------
    def snapshot(self, now: Instant) -> dict[str, Any]:
        h = self.home
        m = now.mono

        def age(t: float | None) -> float | None:
            return None if t is None else m - t

        return {
            "version": SNAPSHOT_VERSION,
            "home": {
                "still_s": h.still_s,
                "last_activity_age": age(h.last_activity_mono),
                "last_activity_wall": h.last_activity_wall,
                "last_device": h.last_device,
                "last_room": h.last_room,
                "mats": {dev: [kind, m - since] for dev, (kind, since) in h.mats.items()},
                "away": h.away,
                "exit_door_age": age(h.exit_door_mono),
                "observing_age": m - h.observing_since_mono,
                "learning_paused": h.learning_paused,
                "returned_age": age(h.returned_mono),
                "mat_on_age": {dev: m - t for dev, t in h.mat_on.items()},
                "mat_stays": {dev: list(v) for dev, v in h.mat_stays.items()},
            },
            "rules": {key: r.snapshot(m) for key, r in self._keyed_rules().items()},
        }

    def restore(self, snap: dict[str, Any], now: Instant, downtime_s: float | None,
                live: bool = False) -> None:
        """Continue from ``snap`` taken ``downtime_s`` ago (None: unknown, counted as 0).

        Known downtime is counted as still time (a collapse before a power cut is not
        forgotten); no alarm fires for ``restart_grace_s`` after the restart, inactivity
        gives its full pre-warning again, and mats must be confirmed by their driver.
        ``live`` is a config swap inside a running agent: nothing was missed, so none of
        that applies.
        """
        if snap.get("version") != SNAPSHOT_VERSION:
            log.warning("ignoring inactivity state of unknown version %r", snap.get("version"))
            return
        down = 0.0 if downtime_s is None else max(0.0, downtime_s)
        then = now.mono - down

        def mono_of(age: float | None) -> float | None:
            return None if age is None else then - float(age)

        h, s = self.home, snap.get("home", {})
        h.still_s = float(s.get("still_s") or 0.0)
        h.last_activity_mono = mono_of(s.get("last_activity_age"))
        h.last_activity_wall = s.get("last_activity_wall")
        h.last_device, h.last_room = str(s.get("last_device") or ""), str(s.get("last_room") or "")
        h.mats = {
            str(dev): (str(kind), then - float(a))
            for dev, (kind, a) in (s.get("mats") or {}).items()
        }
        h.unconfirmed_mats = set() if live else set(h.mats)
        h.away = bool(s.get("away"))
        h.exit_door_mono = mono_of(s.get("exit_door_age"))
        h.learning_paused = bool(s.get("learning_paused"))
        h.returned_mono = mono_of(s.get("returned_age"))
        h.mat_on = {str(dev): then - float(a) for dev, a in (s.get("mat_on_age") or {}).items()}
        h.mat_stays = {str(dev): [float(x) for x in v]
                       for dev, v in (s.get("mat_stays") or {}).items()}
        if downtime_s is not None and down <= _SHORT_GAP_S:
            h.observing_since_mono = then - float(s.get("observing_age") or 0.0)
        else:
            h.observing_since_mono = now.mono
        h.hold_until_mono = 0.0 if live else now.mono + self.ruleset.restart_grace_s
        saved = snap.get("rules", {})
        for key, rule in self._keyed_rules().items():
            if key in saved:
                rule.restore(saved[key], mono_of)
        for r in self.stillness_rules:
            if r.prewarn_since is not None and not live:
                r.prewarn_since = now.mono    # the whole warning again after a restart
        self._set_active()
        # Let the downtime elapse (counted as still time, not learned from).
        self.last = Instant(then, now.wall - down, now.synced)
        self._unobserved = True
        try:
            if down > 0:
                self._elapse(now, down)
        finally:
            self._unobserved = False
        self.last = now
