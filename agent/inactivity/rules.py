"""The rules. Each is a small state machine driven by the engine.

The engine calls, in this order: ``on_segment`` for each piece of elapsed time (accrue,
disarm when a window ends), ``on_obs`` for a reading (after the shared :class:`HomeState`
was updated), then ``check`` (raise what is due) and ``next_due`` (when to look again;
early is harmless, late is not). All durations are monotonic; local time comes only from
``LocalClock``. No rule raises an alarm before ``home.hold_until_mono`` (restart grace).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.inactivity.config import AwayRule, InactivityWindow, NightExitRule
from agent.inactivity.home import Alert, HomeState, Instant, Segment
from agent.inactivity.household import Learning
from agent.inactivity.localtime import LocalClock, Window
from agent.inactivity.routine import Routine, place_key
from agent.inactivity.sensors import Observation
from agent.model import Priority, iso_utc

INTERACTIONS = ("cancel", "test", "pendant", "pull_cord", "button")
# While presumed out, inside readings end the absence (without the front door) only when a
# second sensor fires within this long (see Away._corroborated).
CORROBORATE_S = 120.0


def iso(wall: float | None) -> str | None:
    return None if wall is None else iso_utc(wall)


class Rule:
    name = ""
    prewarning = False

    def on_segment(self, seg: Segment, home: HomeState) -> None:
        pass

    def on_obs(self, obs: Observation, now: Instant, home: HomeState, inside: bool) -> None:
        pass

    def on_stillness_reset(self) -> None:
        pass

    def on_away(self) -> None:
        pass

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        return []

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        return None

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        pass


def age(now_mono: float, t: float | None) -> float | None:
    return None if t is None else now_mono - t


class StillnessAlarm(Rule):
    """Shared pre-warning logic of the fixed and the learned ``inactivity`` rules.

    The pre-warning starts ``prewarning_s`` before the threshold; the alarm needs the
    threshold reached *and* a full pre-warning behind it, so a threshold that drops at
    an hour boundary, or a restart, still gives the person the whole warning to cancel.
    """

    name = "inactivity"

    def __init__(self, prewarning_s: float) -> None:
        self.p = prewarning_s
        self.prewarn_since: float | None = None
        self.raised = False
        self.active = True

    # subclasses: value, threshold, accruing_now, label
    def value(self, home: HomeState) -> float:
        raise NotImplementedError

    def threshold(self, now: Instant, home: HomeState) -> float:
        raise NotImplementedError

    def accruing_now(self, now: Instant, home: HomeState) -> bool:
        raise NotImplementedError

    def label(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def prewarning(self) -> bool:  # type: ignore[override]
        return self.active and self.prewarn_since is not None

    def on_stillness_reset(self) -> None:
        self.prewarn_since = None
        self.raised = False

    def _data(self, now: Instant, home: HomeState, v: float, t: float) -> dict[str, Any]:
        return {
            "rule": "inactivity", **self.label(),
            "still_s": round(v, 1), "threshold_s": round(t, 1),
            "since": iso(home.last_activity_wall), "last_device": home.last_device,
            "last_room": home.last_room,
        }

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        if not self.active:
            self.prewarn_since = None
            return []
        if self.raised:
            return []
        v, t = self.value(home), self.threshold(now, home)
        out: list[Alert] = []
        if self.prewarn_since is None:
            if v >= t - self.p:
                self.prewarn_since = now.mono
                data = self._data(now, home, v, t)
                data["alarm_in_s"] = round(max(t - v, self.p), 1)
                out.append(Alert("inactivity_prewarning", Priority.WARNING, data))
        elif v < t - self.p:
            self.prewarn_since = None     # the threshold rose (new hour): stand down
        if (self.prewarn_since is not None and v >= t
                and now.mono - self.prewarn_since >= self.p - 1e-6
                and now.mono >= home.hold_until_mono):
            self.raised = True
            self.prewarn_since = None
            home.learning_paused = True
            out.append(Alert("inactivity", Priority.ALARM, self._data(now, home, v, t)))
        return out

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        if not self.active or self.raised:
            return None
        v, t = self.value(home), self.threshold(now, home)
        accruing = self.accruing_now(now, home)
        if self.prewarn_since is None:
            if not accruing:
                return None
            return now.mono + max(0.0, t - self.p - v)
        if accruing:
            at = now.mono + max(0.0, t - v)
        elif v >= t:
            at = now.mono
        else:
            return None
        return max(at, self.prewarn_since + self.p, home.hold_until_mono)

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {"prewarn_age": age(now_mono, self.prewarn_since), "raised": self.raised}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        self.raised = bool(d.get("raised"))
        age = d.get("prewarn_age")
        # After a restart the engine re-starts a restored warning (the person gets all of it).
        self.prewarn_since = None if age is None else mono_of(age)


class FixedInactivity(StillnessAlarm):
    """``after_s`` of window time without activity (time on a mat or away does not count)."""

    def __init__(self, rule: InactivityWindow, prewarning_s: float, clock: LocalClock) -> None:
        super().__init__(prewarning_s)
        self.window = Window.parse(rule.start, rule.end)
        self.after_s = rule.after_s
        self.clock = clock
        self.accrued_s = 0.0

    def value(self, home: HomeState) -> float:
        return self.accrued_s

    def threshold(self, now: Instant, home: HomeState) -> float:
        return self.after_s

    def accruing_now(self, now: Instant, home: HomeState) -> bool:
        return home.accruing() and self.window.contains(self.clock.minute_of_day(now.wall))

    def label(self) -> dict[str, Any]:
        return {"window": self.window.text(), "learned": False}

    def on_segment(self, seg: Segment, home: HomeState) -> None:
        if home.accruing() and self.window.contains(seg.minute):
            self.accrued_s += seg.duration

    def on_stillness_reset(self) -> None:
        super().on_stillness_reset()
        self.accrued_s = 0.0

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {**super().snapshot(now_mono), "accrued_s": self.accrued_s}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        super().restore(d, mono_of)
        self.accrued_s = float(d.get("accrued_s") or 0.0)


class LearnedInactivity(StillnessAlarm):
    """Stillness beyond what this person normally reaches at this hour (all day), and,
    where learned, beyond what they reach after being seen in that room at that time of
    day (the lower of the two)."""

    def __init__(self, prewarning_s: float, clock: LocalClock, routine: Routine,
                 fallback: Callable[[float], float]) -> None:
        super().__init__(prewarning_s)
        self.clock = clock
        self.routine = routine
        self.fallback = fallback
        self.place = ""
        self.by_place = False

    def value(self, home: HomeState) -> float:
        return home.still_s

    def threshold(self, now: Instant, home: HomeState) -> float:
        loc = self.clock.local(now.wall)
        learned = self.routine.threshold(loc.hour)
        hourly = (learned if learned is not None
                  else self.fallback(loc.hour * 60 + loc.minute + loc.second / 60.0))
        self.place = place_key(home.last_room, home.last_device)
        room = self.routine.place_threshold(self.place, loc.hour)
        self.by_place = room is not None and room < hourly
        return room if room is not None and room < hourly else hourly

    def accruing_now(self, now: Instant, home: HomeState) -> bool:
        return home.accruing()

    def label(self) -> dict[str, Any]:
        return {"window": "learned", "learned": True, "place": self.place,
                "by_place": self.by_place}


class NightExit(Rule):
    """Front door moved in the night window and nobody seen inside for ``after_s``."""

    name = "night_exit"

    def __init__(self, rule: NightExitRule, clock: LocalClock) -> None:
        self.window = Window.parse(rule.start, rule.end)
        self.after_s = rule.after_s
        self.clock = clock
        self.since: float | None = None
        self.door = ""

    def on_segment(self, seg: Segment, home: HomeState) -> None:
        if not self.window.contains(seg.minute):
            self.since = None

    def on_obs(self, obs: Observation, now: Instant, home: HomeState, inside: bool) -> None:
        if obs.exit_door:
            if (self.window.contains(self.clock.minute_of_day(now.wall)) and not home.present
                    and not home.away       # the door while out is the person coming home
                    and not home.in_return_passage(now.mono)):
                self.since, self.door = now.mono, obs.device_id
        elif inside:
            self.since = None

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        if (self.since is None or now.mono - self.since < self.after_s
                or now.mono < home.hold_until_mono):
            return []
        opened = now.wall - (now.mono - self.since)
        self.since = None
        return [Alert("night_exit", Priority.ALARM, {
            "rule": "night_exit", "door_at": iso(opened), "threshold_s": self.after_s,
            "window": self.window.text(),
        }, device_id=self.door)]

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        return None if self.since is None else max(self.since + self.after_s, home.hold_until_mono)

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {"age": age(now_mono, self.since), "door": self.door}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        age = d.get("age")
        self.since = None if age is None else mono_of(age)
        self.door = str(d.get("door") or "")


class Away(Rule):
    """Front door, then nobody inside for ``presume_after_s``: out. Back on door or activity.

    The door that brings the person back does not start a new presumption: they are at
    home until the door moves again after that passage (:data:`PASSAGE_S`)."""

    name = "not_returned"

    def __init__(self, rule: AwayRule, learning: Learning, clock: LocalClock) -> None:
        self.presume_after_s = rule.presume_after_s
        self.default_s = rule.not_returned_after_s
        self.learning = learning
        self.clock = clock
        self.door_since: float | None = None
        self.away_since: float | None = None
        self.raised = False
        self.door = ""
        self.seen_away: dict[str, float] = {}   # sensor -> last seen while away (mono)

    @property
    def limit_s(self) -> float:
        """Learned from this person's own absences (``away_factor`` x their
        ``away_quantile``, bounded by ``away_min_s..away_max_s``), else the configured
        ``not_returned_after_s``."""
        learned = self.learning.session_after("away")
        return self.default_s if learned is None else learned

    def _back(self, home: HomeState, now: Instant) -> None:
        # Every completed absence is learned, also one that raised not_returned: the person
        # came back, so it is how long they stay out. Leaving those out kept the limit under
        # the absences it had alarmed on, and it alarmed on each of them again.
        if self.away_since is not None:
            self.learning.session("away", self.clock.local_date(now.wall),
                                  now.mono - self.away_since, now.synced)
        home.away = False
        self.away_since, self.raised = None, False
        self.seen_away = {}

    def on_obs(self, obs: Observation, now: Instant, home: HomeState, inside: bool) -> None:
        if obs.exit_door:
            if home.away:
                # Coming home. The person is at home until the door moves again: with no
                # sensor inside a room (a door-only home), "came home, then nothing" is a
                # collapse just inside, for the stillness rules, not another absence.
                self._back(home, now)
                home.returned_mono, self.door_since, self.door = now.mono, None, obs.device_id
            elif not home.in_return_passage(now.mono):
                self.door_since, self.door = now.mono, obs.device_id
        elif inside:
            self.door_since = None
            if home.away and self._corroborated(obs, now):
                self._back(home, now)

    def _corroborated(self, obs: Observation, now: Instant) -> bool:
        """Back without the front door only on evidence a stray trigger cannot give: a
        press, a level mat, or a second sensor within :data:`CORROBORATE_S`. A person
        moving about sets off more than one sensor; a faulty PIR or mercury switch fires
        alone (Kasteren B: 16 of its 17 labelled absences with inside readings had only
        lone ones). What was seen in the last 120 s is not kept over a restart."""
        if obs.type in INTERACTIONS or (obs.mat is not None and not obs.momentary):
            return True
        self.seen_away = {d: t for d, t in self.seen_away.items()
                          if now.mono - t <= CORROBORATE_S}
        others = [d for d in self.seen_away if d != obs.device_id]
        self.seen_away[obs.device_id] = now.mono
        return bool(others)

    def presume(self, now: Instant, home: HomeState) -> bool:
        """Presume the person went out; True if that just happened."""
        if (self.door_since is None or home.away or home.present
                or now.mono - self.door_since < self.presume_after_s):
            return False
        home.away = True
        self.away_since, self.door_since, self.raised = self.door_since, None, False
        return True

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        if (not home.away or self.away_since is None or self.raised
                or now.mono - self.away_since < self.limit_s or now.mono < home.hold_until_mono):
            return []
        self.raised = True
        return [Alert("not_returned", Priority.ALARM, {
            "rule": "not_returned", "away_s": round(now.mono - self.away_since, 1),
            "threshold_s": self.limit_s,
            "left_at": iso(now.wall - (now.mono - self.away_since)),
        }, device_id=self.door)]

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        dues = []
        if self.door_since is not None and not home.away and not home.present:
            dues.append(self.door_since + self.presume_after_s)
        if home.away and self.away_since is not None and not self.raised:
            dues.append(max(self.away_since + self.limit_s, home.hold_until_mono))
        return min(dues) if dues else None

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {"door_age": age(now_mono, self.door_since),
                "away_age": age(now_mono, self.away_since), "raised": self.raised,
                "door": self.door}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        da, aa = d.get("door_age"), d.get("away_age")
        self.door_since = None if da is None else mono_of(da)
        self.away_since = None if aa is None else mono_of(aa)
        self.raised = bool(d.get("raised"))
        self.door = str(d.get("door") or "")
