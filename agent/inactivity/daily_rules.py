"""The rules that follow the person's day: ``not_up``, ``night_out_of_bed``, ``chair_too_long``.

Each reads its threshold from the household's learning (:class:`Learning`) once the
learning period is over, else from its default or the installer's seed, and reports what it
sees back to the learning, measured exactly as it measures it. ``not_up`` and
``chair_too_long`` pre-warn (buzzer/LED) ``prewarning_s`` before they become an alarm: the
cancel button or evidence of the person moving clears the warning, and only a warning that
ran its full length unanswered becomes an alarm.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from agent.inactivity.config import (
    ChairTooLongRule,
    NightOutOfBedRule,
    NotUpRule,
    hhmm_to_minutes,
)
from agent.inactivity.home import Alert, HomeState, Instant, Segment
from agent.inactivity.household import Learning
from agent.inactivity.localtime import LocalClock, Window
from agent.inactivity.rules import INTERACTIONS, Rule, age, iso
from agent.inactivity.sensors import Observation
from agent.model import Priority


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


class NotUp(Rule):
    """Not up by the deadline: bed still occupied, or nothing seen outside the bedroom since
    ``morning_from``. The deadline is learned (latest get-up + margin, bounded), else the
    seed from ``usual_get_up``, else ``by``."""

    name = "not_up"

    def __init__(self, rule: NotUpRule, clock: LocalClock, bedrooms: frozenset[str],
                 learning: Learning, prewarning_s: float, seed_by: int | None = None) -> None:
        self.by = hhmm_to_minutes(rule.by)
        self.seed_by = seed_by
        self.morning_from = hhmm_to_minutes(rule.morning_from)
        self.clock = clock
        self.bedrooms = bedrooms
        self.learning = learning
        self.p = prewarning_s
        self.last_up_mono: float | None = None
        self.evaluated: list[str] = []
        self.prewarn_since: float | None = None
        self.cancelled: str = ""
        self.away_day: str = ""

    @property
    def prewarning(self) -> bool:  # type: ignore[override]
        return self.prewarn_since is not None

    def deadline(self, day: date) -> int:
        learned = self.learning.deadline(day)
        if learned is not None:
            return learned
        return self.seed_by if self.seed_by is not None else self.by

    def _from_mono(self, now: Instant, day: date) -> float:
        return now.mono - (now.wall - self.clock.at(day, self.morning_from))

    def on_away(self) -> None:
        self.away_day = "pending"

    def on_obs(self, obs: Observation, now: Instant, home: HomeState, inside: bool) -> None:
        day = self.clock.local_date(now.wall)
        if obs.cancel and self.prewarn_since is not None:
            self.cancelled, self.prewarn_since = day.isoformat(), None
        if not (obs.room and obs.room.lower() not in self.bedrooms
                and obs.type not in INTERACTIONS and obs.mat != "bed"):
            return
        from_mono = self._from_mono(now, day)
        first = self.last_up_mono is None or self.last_up_mono < from_mono
        minute = self.clock.minute_of_day(now.wall)
        if (first and minute >= self.morning_from and not home.away
                and home.observing_since_mono <= from_mono + 60.0
                and self.away_day != day.isoformat()):
            self.learning.getup(day, minute, now.synced)
        self.last_up_mono = now.mono
        self.prewarn_since = None

    def on_segment(self, seg: Segment, home: HomeState) -> None:
        if home.away and seg.minute >= self.morning_from:
            self.away_day = seg.day.isoformat()    # out this morning: not a get-up day

    def _verdict(self, now: Instant, home: HomeState, day: date) -> str:
        """``none`` (not watching all morning, or out), ``up`` or ``not_up``."""
        from_mono = self._from_mono(now, day)
        if home.observing_since_mono > from_mono + 60.0 or home.away:
            return "none"
        if self.cancelled == day.isoformat():
            return "up"
        up = self.last_up_mono is not None and self.last_up_mono >= from_mono
        return "up" if up and not home.mat_occupied("bed") else "not_up"

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        day = self.clock.local_date(now.wall)
        key = day.isoformat()
        deadline = self.deadline(day)
        minute = self.clock.minute_of_day(now.wall)
        if key in self.evaluated or minute < deadline - self.p / 60.0:
            self.prewarn_since = None
            return []
        if now.mono < home.hold_until_mono:
            return []     # re-observing after a restart; evaluated once the grace is over
        verdict = self._verdict(now, home, day)
        if verdict != "not_up":
            self.prewarn_since = None
            if minute >= deadline:
                self.evaluated = (self.evaluated + [key])[-7:]
            return []
        data = {"rule": "not_up", "by": _hhmm(deadline), "bed_occupied": home.mat_occupied("bed"),
                "seen_outside_bedroom": self.last_up_mono is not None
                and self.last_up_mono >= self._from_mono(now, day),
                "learned": self.learning.deadline(day) is not None,
                "since": iso(home.last_activity_wall), "last_room": home.last_room}
        if self.prewarn_since is None:
            self.prewarn_since = now.mono
            return [Alert("not_up_prewarning", Priority.WARNING,
                          {**data, "alarm_in_s": round(self.p, 1)})]
        if minute < deadline or now.mono - self.prewarn_since < self.p - 1e-6:
            return []
        self.evaluated = (self.evaluated + [key])[-7:]
        self.prewarn_since = None
        return [Alert("not_up", Priority.ALARM, data)]

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        day = self.clock.local_date(now.wall)
        dues: list[float] = []
        if self.prewarn_since is not None:
            dues.append(max(self.prewarn_since + self.p, home.hold_until_mono))
        if day.isoformat() not in self.evaluated:
            deadline_wall = self.clock.at(day, self.deadline(day))
            for wall in (deadline_wall - self.p, deadline_wall):
                if wall > now.wall:
                    dues.append(now.mono + (wall - now.wall))
            # Due now (or when the restart grace ends); checking marks the day evaluated
            # or starts the pre-warning, so this cannot repeat.
            if (now.wall >= deadline_wall - self.p and self.prewarn_since is None
                    and (now.wall >= deadline_wall or now.mono < home.hold_until_mono)):
                dues.append(max(now.mono, home.hold_until_mono))
        # Tomorrow's edges, for either kind of day: early is harmless, late is not.
        minutes = {self.by, self.seed_by if self.seed_by is not None else self.by,
                   *self.learning.household.not_up_by.values()}
        for m in minutes:
            for edge in (m * 60.0, m * 60.0 - self.p):
                wall = self.clock.next_at(now.wall, int(edge // 60) % 1440)
                dues.append(now.mono + (wall - now.wall))
        return min(dues)

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {"last_up_age": age(now_mono, self.last_up_mono), "evaluated": self.evaluated,
                "prewarn_age": age(now_mono, self.prewarn_since), "cancelled": self.cancelled,
                "away_day": self.away_day}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        a = d.get("last_up_age")
        self.last_up_mono = None if a is None else mono_of(a)
        self.evaluated = [str(x) for x in d.get("evaluated") or []][-7:]
        pa = d.get("prewarn_age")
        self.prewarn_since = None if pa is None else mono_of(pa)
        self.cancelled = str(d.get("cancelled") or "")
        self.away_day = str(d.get("away_day") or "")


class NightOutOfBed(Rule):
    """Out of bed in the night window for the threshold, not back in bed and not in a chair.

    The threshold is learned from this person's own nights (longest spell x factor,
    bounded), else ``after_s``."""

    name = "night_out_of_bed"

    def __init__(self, rule: NightOutOfBedRule, clock: LocalClock, learning: Learning,
                 bedrooms: frozenset[str] = frozenset()) -> None:
        self.window = Window.parse(rule.start, rule.end)
        self.default_s = rule.after_s
        self.clock = clock
        self.learning = learning
        self.bedrooms = bedrooms
        self.out_tonight = False
        self.out_since: float | None = None
        self.raised = False
        self.pulsing_bed = False     # the bed mat pulses: leaving is seen elsewhere

    @property
    def after_s(self) -> float:
        learned = self.learning.session_after("night")
        return self.default_s if learned is None else learned

    def on_segment(self, seg: Segment, home: HomeState) -> None:
        if not self.window.contains(seg.minute):
            self.out_tonight, self.out_since = False, None

    def _back(self, now: Instant) -> None:
        if self.out_since is not None and not self.raised:
            self.learning.session("night", self.clock.local_date(now.wall),
                                  now.mono - self.out_since, now.synced)

    def _pulsing_obs(self, obs: Observation, now: Instant, inside: bool) -> None:
        """A bed mat that pulses cannot say when the person left: a pulse (in the night
        window) is the person in bed; leaving is the first activity outside the bedroom
        after that; any activity in the bedroom is the person back in it. A collapse in
        the bedroom itself is left to the stillness rules (pulses are never presence)."""
        in_window = self.window.contains(self.clock.minute_of_day(now.wall))
        in_bedroom = obs.mat == "bed" or (obs.room and obs.room.lower() in self.bedrooms)
        if not (obs.activity and (inside or obs.mat == "bed")):
            return
        if in_bedroom:
            self._back(now)
            self.out_since, self.raised = None, False
            if obs.mat == "bed" and in_window:
                self.out_tonight = True
        elif self.out_tonight and self.out_since is None and obs.room and in_window:
            self.out_since = now.mono

    def on_obs(self, obs: Observation, now: Instant, home: HomeState, inside: bool) -> None:
        # Until the bed mat has shown whether it pulses (10 stays), a "vacated" that ends a
        # stay of a pulse's length is read as a pulse, not as leaving the bed (Kasteren B's
        # first night: 2 false alerts at 5 and 6 stays); a long stay ending is leaving.
        if obs.mat == "bed" and (obs.momentary or obs.short_stay):
            self.pulsing_bed = True
        elif obs.mat == "bed":
            self.pulsing_bed = False
        if self.pulsing_bed:
            self._pulsing_obs(obs, now, inside)
            return
        if obs.mat == "bed":
            if obs.occupied or home.mat_occupied("bed"):
                self._back(now)
                self.out_tonight, self.out_since, self.raised = False, None, False
            elif self.window.contains(self.clock.minute_of_day(now.wall)):
                self.out_tonight, self.raised = True, False
                self.out_since = None if home.mat_occupied("chair") else now.mono
        elif obs.mat == "chair" and self.out_tonight:
            if home.mat_occupied("chair"):
                self._back(now)
                self.out_since = None
            elif self.out_since is None:
                self.out_since = now.mono

    def on_away(self) -> None:
        self.out_tonight, self.out_since = False, None

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        after = self.after_s
        if (self.out_since is None or self.raised or now.mono - self.out_since < after
                or now.mono < home.hold_until_mono):
            return []
        self.raised = True
        return [Alert("night_out_of_bed", Priority.ALARM, {
            "rule": "night_out_of_bed", "out_of_bed_s": round(now.mono - self.out_since, 1),
            "threshold_s": after, "window": self.window.text(),
            "learned": self.learning.session_after("night") is not None,
            "last_room": home.last_room, "since": iso(home.last_activity_wall),
        })]

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        if self.out_since is None or self.raised:
            return None
        return max(self.out_since + self.after_s, home.hold_until_mono)

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {"out_tonight": self.out_tonight, "out_age": age(now_mono, self.out_since),
                "raised": self.raised, "pulsing_bed": self.pulsing_bed}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        self.out_tonight = bool(d.get("out_tonight"))
        self.pulsing_bed = bool(d.get("pulsing_bed"))
        a = d.get("out_age")
        self.out_since = None if a is None else mono_of(a)
        self.raised = bool(d.get("raised"))


class ChairTooLong(Rule):
    """Still in a chair (mat occupied, no other sensor seeing the person) for the threshold.

    Any activity on another sensor shows the person moving and restarts the count; so does
    the cancel button. The threshold is learned from this person's own sittings (longest x
    factor, bounded), else ``after_s``. One pre-warning, then one alarm, per still spell.
    """

    name = "chair_too_long"

    def __init__(self, rule: ChairTooLongRule, clock: LocalClock, learning: Learning,
                 prewarning_s: float) -> None:
        self.default_s = rule.after_s
        self.clock = clock
        self.learning = learning
        self.p = prewarning_s
        self.start: dict[str, float] = {}        # chair -> still on it since (mono)
        self.prewarned: dict[str, float] = {}    # chair -> pre-warning since
        self.raised: set[str] = set()

    @property
    def after_s(self) -> float:
        learned = self.learning.session_after("chair")
        return self.default_s if learned is None else learned

    @property
    def prewarning(self) -> bool:  # type: ignore[override]
        return bool(self.prewarned)

    def _sittings(self, home: HomeState) -> dict[str, float]:
        return {dev: since for dev, (kind, since) in home.mats.items() if kind == "chair"}

    def _end(self, dev: str, now: Instant) -> None:
        since = self.start.pop(dev, None)
        if since is not None and dev not in self.raised:
            self.learning.session("chair", self.clock.local_date(now.wall), now.mono - since,
                                  now.synced)
        self.prewarned.pop(dev, None)
        self.raised.discard(dev)

    def on_obs(self, obs: Observation, now: Instant, home: HomeState, inside: bool) -> None:
        if obs.mat == "chair" and obs.occupied and not obs.momentary:
            self.start.setdefault(obs.device_id, now.mono)
            return
        for dev in list(self.start):
            if dev == obs.device_id or obs.activity or obs.cancel:
                self._end(dev, now)
        for dev in self._sittings(home):
            if dev not in self.start and obs.device_id != dev:
                self.start[dev] = now.mono          # still seated: a new still spell

    def check(self, now: Instant, home: HomeState) -> list[Alert]:
        out: list[Alert] = []
        seated = self._sittings(home)
        for dev in list(self.start):
            if dev not in seated:
                self.start.pop(dev, None)
                self.prewarned.pop(dev, None)
        for dev, since in seated.items():
            self.start.setdefault(dev, since)
        if now.mono < home.hold_until_mono:
            return out
        after = self.after_s
        for dev, since in self.start.items():
            still = now.mono - since
            if dev in self.raised or still < after - self.p:
                continue
            data = {"rule": "chair_too_long", "seated_s": round(still, 1), "threshold_s": after,
                    "learned": self.learning.session_after("chair") is not None,
                    "room": home.last_room}
            if dev not in self.prewarned:
                self.prewarned[dev] = now.mono
                out.append(Alert("chair_too_long_prewarning", Priority.WARNING,
                                 {**data, "alarm_in_s": round(max(after - still, self.p), 1)},
                                 device_id=dev))
            elif still >= after and now.mono - self.prewarned[dev] >= self.p - 1e-6:
                self.raised.add(dev)
                self.prewarned.pop(dev)
                out.append(Alert("chair_too_long", Priority.ALARM, data, device_id=dev))
        return out

    def next_due(self, now: Instant, home: HomeState) -> float | None:
        after = self.after_s
        dues = []
        for dev, since in {**self._sittings(home), **self.start}.items():
            if dev in self.raised:
                continue
            if dev in self.prewarned:
                dues.append(max(since + after, self.prewarned[dev] + self.p))
            else:
                dues.append(since + after - self.p)
        return max(min(dues), home.hold_until_mono) if dues else None

    def snapshot(self, now_mono: float) -> dict[str, Any]:
        return {"raised": sorted(self.raised),
                "start_age": {d: now_mono - s for d, s in self.start.items()},
                "prewarn_age": {d: now_mono - s for d, s in self.prewarned.items()}}

    def restore(self, d: dict[str, Any], mono_of: Any) -> None:
        self.raised = set(d.get("raised") or [])
        self.start = {str(k): mono_of(v) for k, v in (d.get("start_age") or {}).items()}
        self.prewarned = {str(k): mono_of(v) for k, v in (d.get("prewarn_age") or {}).items()}
