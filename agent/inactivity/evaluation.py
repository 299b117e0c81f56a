"""Figures for ``tec-agent eval-inactivity``: false alerts and detection of injected collapses.

Three rule sets run over the same log, side by side:

- ``fixed_rules``: the home's rules (``--config``, or derived from the sensor map), fixed
  thresholds, nothing learned;
- ``learned_routine``: the same rules learning this household online from the replayed
  days, as a hub would (get-up time, chair / night / away sessions, stillness per hour);
  the defaults (or seeds) apply during the learning period;
- ``fixed_12h_timer``: the council baseline, no activity for 12 h, every sensor event
  counting as activity (no mats-as-presence, no away mode).

False alerts come from the clean log (the resident was fine throughout). A pre-warning
counts as cancelled only when recorded activity cleared it (the replay never presses the
cancel button): an alarm that follows its pre-warning is a false alert. Each injected
episode is a separate replay with every row in ``[t, t + episode_h)`` removed, ``t`` drawn
(seeded) from times the resident was at home (not inside a labelled ``Leaving``); it is
*detected* by the first alarm inside that span, *in time* if that alarm came no later
than the firing rule's own threshold (for ``not_up``: its deadline) + 5 min after ``t``.
``halves`` learns the stillness routine on one half of the log and tests on the other.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.inactivity.config import InactivityConfig, InactivityWindow, LearnedRoutine
from agent.inactivity.engine import EngineOptions
from agent.inactivity.localtime import LocalClock
from agent.inactivity.replay import Labelled, LogEvent, ReplayResult, overlap_s, replay
from agent.inactivity.routine import Routine, learn, place_key
from agent.inactivity.sensors import DeviceMap
from agent.model import Event, Priority

IN_TIME_MARGIN_S = 300.0
DAY_START_MIN, DAY_END_MIN = 7 * 60, 22 * 60
WARMUP_S = 86400.0
VARIANTS = ("fixed_rules", "learned_routine", "fixed_12h_timer")


def variant_config(base: Any, variant: str, params: LearnedRoutine | None = None) -> Any:
    """The agent config with its ``inactivity`` section set up for ``variant``
    (``params``: the learning parameters of ``learned_routine``, default the config's)."""
    icfg: InactivityConfig = base.inactivity
    if variant == "fixed_rules":
        icfg = dataclasses.replace(icfg, learned=dataclasses.replace(icfg.learned, enabled=False))
    elif variant == "learned_routine":
        icfg = dataclasses.replace(
            icfg, learned=dataclasses.replace(params or icfg.learned, enabled=True))
    elif variant == "fixed_12h_timer":
        icfg = InactivityConfig(
            auto_rules=False, prewarning_s=icfg.prewarning_s, mats_are_presence=False,
            inactivity=(InactivityWindow(start="00:00", end="00:00", after_s=12 * 3600.0),),
            learned=LearnedRoutine(enabled=False),
        )
    else:
        raise ValueError(variant)
    return dataclasses.replace(base, inactivity=dataclasses.replace(icfg, enabled=True))


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def is_daytime(clock: LocalClock, wall: float) -> bool:
    """Whether ``wall`` is in the daytime the delay figures are reported for."""
    return DAY_START_MIN <= clock.minute_of_day(wall) < DAY_END_MIN


def sample_episodes(log: Sequence[LogEvent], labels: Sequence[Labelled], n: int, seed: int,
                    episode_s: float, start: float | None = None,
                    end: float | None = None) -> list[float]:
    """``n`` episode start times, seeded, at home, with room for the whole episode."""
    if n <= 0 or not log:
        return []
    lo = (log[0].wall if start is None else start) + WARMUP_S
    hi = (log[-1].wall if end is None else end) - episode_s
    if hi <= lo:
        return []
    away = [(lb.start, lb.end) for lb in labels if lb.activity == "Leaving"]
    rng = random.Random(seed)
    out: list[float] = []
    tries = 0
    while len(out) < n and tries < 1000 * n:
        tries += 1
        t = rng.uniform(lo, hi)
        if any(s <= t < e for s, e in away):
            continue
        out.append(t)
    return sorted(out)


def _alarms(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.priority == Priority.ALARM]


def _bound_s(event: Event, start: float, clock: LocalClock) -> float:
    if event.type == "not_up":
        by = event.data.get("by", "11:00")
        minute = int(by[:2]) * 60 + int(by[3:])
        return clock.at(clock.local_date(event.wall), minute) - start
    return float(event.data.get("threshold_s") or 0.0)


_DURATION_KEYS = ("still_s", "seated_s", "out_of_bed_s", "away_s")


@dataclass
class Scenario:
    """One home's log and what every variant is measured against."""

    log: Sequence[LogEvent]
    labels: Sequence[Labelled]
    devices: DeviceMap
    clock: LocalClock
    episodes: Sequence[float]
    episode_s: float
    span: tuple[float, float]
    alerts: list[dict[str, Any]] | None = None     # --alerts-out records, appended to
    home: str = ""
    _walls: list[float] | None = None

    def place_at(self, wall: float) -> str:
        """The room of the last sensor row before ``wall`` (where the person was last seen:
        an injected collapse happens there)."""
        if self._walls is None:
            self._walls = [e.wall for e in self.log]
        i = bisect.bisect_left(self._walls, wall) - 1
        while i >= 0:
            info = self.devices.get(self.log[i].sensor_id)
            if info is not None:
                return place_key(info.room, info.device_id)
            i -= 1
        return ""

    def labels_at(self, wall: float) -> str:
        return "|".join(sorted({lb.activity for lb in self.labels if lb.start <= wall < lb.end}))

    def local(self, wall: float) -> str:
        return self.clock.local(wall).isoformat(timespec="seconds")

    def record(self, variant: str, event: Event, injected_at: float | None) -> None:
        if self.alerts is None:
            return
        dur = next((float(event.data[k]) for k in _DURATION_KEYS if k in event.data), None)
        start = event.wall - dur if dur is not None else event.wall
        self.alerts.append({
            "home": self.home, "variant": variant, "rule": event.type,
            "start": self.local(start), "end": self.local(event.wall),
            "injected": injected_at is not None,
            "episode_start": None if injected_at is None else self.local(injected_at),
            "activity": self.labels_at(event.wall),
            "threshold_s": event.data.get("threshold_s"), "by": event.data.get("by"),
            "learned": event.data.get("learned"),
        })


@dataclass
class _Detection:
    delays: list[float] = field(default_factory=list)
    day_delays: list[float] = field(default_factory=list)
    detected: int = 0
    in_time: int = 0
    day_n: int = 0
    day_in_time: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    by_place: dict[str, list[float | None]] = field(default_factory=dict)

    def add(self, sc: Scenario, t: float, hits: list[Event]) -> None:
        daytime = is_daytime(sc.clock, t)
        self.day_n += daytime
        if daytime:
            self.by_place.setdefault(sc.place_at(t) or "-", []).append(
                (hits[0].wall - t) / 60.0 if hits else None)
        if not hits:
            self.missed.append(sc.clock.local(t).isoformat(timespec="minutes"))
            return
        hit = hits[0]
        self.detected += 1
        self.by_rule[hit.type] = self.by_rule.get(hit.type, 0) + 1
        delay = hit.wall - t
        self.delays.append(delay / 60.0)
        if daytime:
            self.day_delays.append(delay / 60.0)
        ok = delay <= _bound_s(hit, t, sc.clock) + IN_TIME_MARGIN_S
        self.in_time += ok
        self.day_in_time += ok and daytime
        if not ok:
            self.late.append({"start": sc.clock.local(t).isoformat(timespec="minutes"),
                              "rule": hit.type, "delay_min": round(delay / 60.0, 1)})

    def figures(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "detected_in_time": self.in_time,
            "daytime_injected": self.day_n,
            "daytime_detected_in_time": self.day_in_time,
            "detection_delay_min_p50": _r(percentile(self.delays, 0.5)),
            "detection_delay_min_p95": _r(percentile(self.delays, 0.95)),
            "daytime_delay_min_p50": _r(percentile(self.day_delays, 0.5)),
            "detected_by_rule": dict(sorted(self.by_rule.items())),
            "daytime_delay_by_place": {
                p: {"injected": len(ds), "detected": sum(d is not None for d in ds),
                    "delay_min_p50": _r(percentile([d for d in ds if d is not None], 0.5))}
                for p, ds in sorted(self.by_place.items())},
            "missed": self.missed,
            "late": self.late,
        }


def cleared_by_activity(warned: Sequence[Event], alarms: Sequence[Event],
                        log_walls: Sequence[float], window_s: float) -> int:
    """Pre-warnings that recorded activity cleared: a sensor row inside the window
    (``window_s`` from the pre-warning) and no alarm of that rule following it. A
    pre-warning that stood down because a learned threshold rose is not counted, nor is
    one the cancel button would have to clear (the replay never presses it)."""
    n = 0
    for w in warned:
        rule = w.type.removesuffix("_prewarning")
        end = w.wall + window_s
        if any(a.type == rule and w.wall <= a.wall <= end + 1.0 for a in alarms):
            continue
        i = bisect.bisect_right(log_walls, w.wall)
        if i < len(log_walls) and log_walls[i] <= end:
            n += 1
    return n


def _clean_figures(sc: Scenario, variant: str, clean: ReplayResult,
                   prewarning_s: float) -> dict[str, Any]:
    first, last = sc.span
    days = (last - first) / 86400.0
    alarms = _alarms(clean.events)
    by_rule: dict[str, int] = {}
    for e in alarms:
        by_rule[e.type] = by_rule.get(e.type, 0) + 1
        sc.record(variant, e, None)
    warned = [e for e in clean.events if e.type.endswith("_prewarning")]
    followed = sum(1 for e in alarms if e.type in ("inactivity", "not_up", "chair_too_long"))
    return {
        "days": round(days, 2),
        "events": len(sc.log),
        "alerts_by_rule": dict(sorted(by_rule.items())),
        "false_alerts": len(alarms),
        "false_alerts_per_30_days": round(len(alarms) / days * 30.0, 2) if days > 0 else None,
        "prewarnings": len(warned),
        "prewarnings_cleared_by_activity": cleared_by_activity(
            warned, alarms, [ev.wall for ev in sc.log], prewarning_s),
        "prewarnings_not_followed": max(0, len(warned) - followed),
    }


def _away_figures(sc: Scenario, clean: ReplayResult) -> dict[str, Any]:
    if not (clean.away_intervals or sc.labels):
        return {}
    first, last = sc.span
    leaving = [(lb.start, lb.end) for lb in sc.labels if lb.activity == "Leaving"
               and lb.end > first and lb.start < last]
    return {
        "away_presumed_h": round(sum(e - s for s, e in clean.away_intervals) / 3600, 2),
        "away_labelled_h": round(sum(e - s for s, e in leaving) / 3600, 2),
        "away_agreeing_h": round(overlap_s(clean.away_intervals, leaving) / 3600, 2),
    }


def learning_block(sc: Scenario, clean: ReplayResult, params: LearnedRoutine) -> dict[str, Any]:
    """What was learned by the end of the log, and how long the learning period lasted."""
    first_day = sc.clock.local_date(sc.log[0].wall)
    hh = clean.household
    routine = clean.routine
    hours = [] if routine is None else [
        {"hour": h, "threshold_s": None if t is None else round(t, 1)}
        for h, t in enumerate(routine.thresholds)]
    places = [] if routine is None else [
        {"place": p, "band": b, "threshold_s": round(t, 1), "samples": n}
        for (p, b), (t, _q, n) in sorted(routine.places.items())]
    return {
        "learning_period_days": params.min_days,
        "days_until_ready": None if clean.ready_on is None else
        (clean.ready_on - first_day).days,
        "household": None if hh is None else hh.as_dict(),
        "stillness_ready": bool(routine and routine.ready),
        "stillness_days": routine.days_used if routine else 0,
        "stillness_thresholds": hours,
        "stillness_by_place": places,
        "params": {k: getattr(params, k) for k in params.__slots__ if k != "enabled"},
    }


def run_variant(sc: Scenario, base_config: Any, variant: str,
                routine: Routine | None = None,
                params: LearnedRoutine | None = None) -> dict[str, Any]:
    """The figures for one rule set over the scenario (optionally a frozen ``routine``)."""
    cfg = variant_config(base_config, variant, params)
    learned = variant == "learned_routine"
    opts = EngineOptions(record=learned, relearn=learned and routine is None)
    last = sc.span[1]
    clean = replay(sc.log, cfg, sc.devices, routine=routine, options=opts, end_wall=last)
    out = _clean_figures(sc, variant, clean, cfg.inactivity.prewarning_s)
    out["injected"] = len(sc.episodes)
    det = _Detection()
    for t in sc.episodes:
        end = t + sc.episode_s
        res = replay(sc.log, cfg, sc.devices, routine=routine, options=opts,
                     end_wall=min(last, end + 60), drop=_dropper(t, end))
        hits = [e for e in _alarms(res.events) if t <= e.wall <= end]
        if hits:
            sc.record(variant, hits[0], t)
        det.add(sc, t, hits)
    out.update(det.figures())
    out.update(_away_figures(sc, clean))
    if learned:
        out["learning"] = learning_block(sc, clean, cfg.inactivity.learned)
    return out


def _dropper(start: float, end: float) -> Callable[[LogEvent], bool]:
    """Rows an episode removes: everything in ``[start, end)``."""
    return lambda ev: start <= ev.wall < end


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def learn_on(log: Sequence[LogEvent], base_config: Any, devices: DeviceMap) -> Routine:
    """Replay ``log`` clean with learning on and learn from all of it."""
    cfg = variant_config(base_config, "learned_routine")
    res = replay(log, cfg, devices, options=EngineOptions(record=True, relearn=False))
    clock = LocalClock(cfg.agent.timezone)
    after = clock.local_date(log[-1].wall)
    after = after.fromordinal(after.toordinal() + 1)
    return learn(res.bins, cfg.inactivity.learned, after, res.places)


def scenario(log: Sequence[LogEvent], labels: Sequence[Labelled], base_config: Any,
             devices: DeviceMap, inject: int, seed: int, episode_h: float,
             alerts: list[dict[str, Any]] | None = None, home: str = "") -> Scenario:
    episode_s = episode_h * 3600.0
    return Scenario(log, labels, devices, LocalClock(base_config.agent.timezone),
                    sample_episodes(log, labels, inject, seed, episode_s), episode_s,
                    (log[0].wall, log[-1].wall), alerts, home)


def _halves(log: Sequence[LogEvent], labels: Sequence[Labelled], base_config: Any,
            devices: DeviceMap, inject: int, seed: int, episode_s: float) -> dict[str, Any]:
    mid = log[0].wall + (log[-1].wall - log[0].wall) / 2.0
    first = [e for e in log if e.wall < mid]
    second = [e for e in log if e.wall >= mid]
    out: dict[str, Any] = {}
    for name, train, test in (("learn_first_test_second", first, second),
                              ("learn_second_test_first", second, first)):
        if len(train) < 2 or len(test) < 2:
            continue
        routine = learn_on(train, base_config, devices)
        eps = sample_episodes(test, labels, max(1, inject // 2) if inject else 0, seed + 1,
                              episode_s)
        sc = Scenario(test, labels, devices, LocalClock(base_config.agent.timezone), eps,
                      episode_s, (test[0].wall, test[-1].wall))
        part: dict[str, Any] = {"learned_days": routine.days_used,
                                "routine_ready": routine.ready}
        for v in VARIANTS:
            part[v] = run_variant(sc, base_config, v,
                                  routine=routine if v == "learned_routine" else None)
        out[name] = part
    return out


def evaluate(
    log: Sequence[LogEvent], labels: Sequence[Labelled], base_config: Any, devices: DeviceMap,
    inject: int, seed: int, episode_h: float, halves: bool = True,
    alerts: list[dict[str, Any]] | None = None, params: LearnedRoutine | None = None,
    home: str = "",
) -> dict[str, Any]:
    sc = scenario(log, labels, base_config, devices, inject, seed, episode_h, alerts, home)
    report: dict[str, Any] = {
        "days": round((log[-1].wall - log[0].wall) / 86400.0, 2),
        "events": len(log),
        "injected": len(sc.episodes),
        "seed": seed,
        "episode_h": episode_h,
        "timezone": base_config.agent.timezone,
    }
    for v in VARIANTS:
        report[v] = run_variant(sc, base_config, v, params=params)
    report["learning"] = report["learned_routine"].pop("learning")
    if halves:
        report["halves"] = _halves(log, labels, base_config, devices, inject, seed, sc.episode_s)
    return report
