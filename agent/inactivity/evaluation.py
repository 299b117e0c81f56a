"""Figures for ``tec-agent eval-inactivity``: false alerts and detection of injected collapses.

Three rule sets run over the same log, side by side:

- ``fixed_rules``: the home's rules (``--config``, or derived from the sensor map), fixed
  thresholds;
- ``learned_routine``: the same rules with the learned routine switched on (learned online
  from the replayed days, as a hub would; fixed thresholds until it is ready);
- ``fixed_12h_timer``: the council baseline, no activity for 12 h, every sensor event
  counting as activity (no mats-as-presence, no away mode).

False alerts come from the clean log (the resident was fine throughout). Each injected
episode is a separate replay with every row in ``[t, t + episode_h)`` removed, ``t`` drawn
(seeded) from times the resident was at home (not inside a labelled ``Leaving``); it is
*detected* by the first alarm inside that span, *in time* if that alarm came no later
than the firing rule's own threshold (for ``not_up``: its deadline) + 5 min after ``t``.
``halves`` learns the routine on one half of the log and tests on the other.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from agent.inactivity.config import InactivityConfig, InactivityWindow, LearnedRoutine
from agent.inactivity.engine import EngineOptions
from agent.inactivity.localtime import LocalClock
from agent.inactivity.replay import Labelled, LogEvent, overlap_s, replay
from agent.inactivity.routine import Routine, learn
from agent.inactivity.sensors import DeviceMap
from agent.model import Priority

IN_TIME_MARGIN_S = 300.0
DAY_START_MIN, DAY_END_MIN = 7 * 60, 22 * 60
WARMUP_S = 86400.0
VARIANTS = ("fixed_rules", "learned_routine", "fixed_12h_timer")


def variant_config(base: Any, variant: str) -> Any:
    """The agent config with its ``inactivity`` section set up for ``variant``."""
    icfg: InactivityConfig = base.inactivity
    if variant == "fixed_rules":
        icfg = dataclasses.replace(icfg, learned=dataclasses.replace(icfg.learned, enabled=False))
    elif variant == "learned_routine":
        icfg = dataclasses.replace(icfg, learned=dataclasses.replace(icfg.learned, enabled=True))
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


def _alarms(events: Sequence[Any]) -> list[Any]:
    return [e for e in events if e.priority == Priority.ALARM]


def _bound_s(event: Any, start: float, clock: LocalClock) -> float:
    if event.type == "not_up":
        by = event.data.get("by", "11:00")
        minute = int(by[:2]) * 60 + int(by[3:])
        return clock.at(clock.local_date(event.wall), minute) - start
    return float(event.data.get("threshold_s") or 0.0)


def run_variant(
    log: Sequence[LogEvent], base_config: Any, devices: DeviceMap, variant: str,
    episodes: Sequence[float], episode_s: float, labels: Sequence[Labelled],
    routine: Routine | None = None, span: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The figures for one rule set over ``log`` (optionally a frozen learned ``routine``)."""
    cfg = variant_config(base_config, variant)
    learned = variant == "learned_routine"
    opts = EngineOptions(record=learned, relearn=learned and routine is None)
    first, last = span if span is not None else (log[0].wall, log[-1].wall)
    days = (last - first) / 86400.0
    clean = replay(log, cfg, devices, routine=routine, options=opts, end_wall=last)
    alarms = _alarms(clean.events)
    by_rule: dict[str, int] = {}
    for e in alarms:
        by_rule[e.type] = by_rule.get(e.type, 0) + 1
    clock = LocalClock(cfg.agent.timezone)
    delays: list[float] = []
    detected = in_time = day_n = day_in_time = 0
    detected_by: dict[str, int] = {}
    missed: list[str] = []
    late: list[dict[str, Any]] = []
    for t in episodes:
        end = t + episode_s
        res = replay(log, cfg, devices, routine=routine, options=opts, end_wall=min(last, end + 60),
                     drop=_dropper(t, end))
        hits = [e for e in _alarms(res.events) if t <= e.wall <= end]
        daytime = DAY_START_MIN <= clock.minute_of_day(t) < DAY_END_MIN
        day_n += daytime
        if not hits:
            missed.append(clock.local(t).isoformat(timespec="minutes"))
            continue
        hit = hits[0]
        detected += 1
        detected_by[hit.type] = detected_by.get(hit.type, 0) + 1
        delay = hit.wall - t
        delays.append(delay / 60.0)
        ok = delay <= _bound_s(hit, t, clock) + IN_TIME_MARGIN_S
        in_time += ok
        day_in_time += ok and daytime
        if not ok:
            late.append({"start": clock.local(t).isoformat(timespec="minutes"), "rule": hit.type,
                         "delay_min": round(delay / 60.0, 1)})
    out: dict[str, Any] = {
        "days": round(days, 2),
        "events": len(log),
        "alerts_by_rule": dict(sorted(by_rule.items())),
        "false_alerts": len(alarms),
        "false_alerts_per_30_days": round(len(alarms) / days * 30.0, 2) if days > 0 else None,
        "prewarnings": clean.prewarnings,
        "injected": len(episodes),
        "detected": detected,
        "detected_in_time": in_time,
        "daytime_injected": day_n,
        "daytime_detected_in_time": day_in_time,
        "detection_delay_min_p50": _r(percentile(delays, 0.5)),
        "detection_delay_min_p95": _r(percentile(delays, 0.95)),
        "detected_by_rule": dict(sorted(detected_by.items())),
        "missed": missed,
        "late": late,
    }
    if clean.away_intervals or labels:
        leaving = [(lb.start, lb.end) for lb in labels if lb.activity == "Leaving"
                   and lb.end > first and lb.start < last]
        out["away_presumed_h"] = round(sum(e - s for s, e in clean.away_intervals) / 3600, 2)
        out["away_labelled_h"] = round(sum(e - s for s, e in leaving) / 3600, 2)
        out["away_agreeing_h"] = round(overlap_s(clean.away_intervals, leaving) / 3600, 2)
    if learned and clean.routine is not None:
        out["routine_ready"] = clean.routine.ready
        out["routine_days"] = clean.routine.days_used
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
    return learn(res.bins, cfg.inactivity.learned, after)


def evaluate(
    log: Sequence[LogEvent], labels: Sequence[Labelled], base_config: Any, devices: DeviceMap,
    inject: int, seed: int, episode_h: float, halves: bool = True,
) -> dict[str, Any]:
    episode_s = episode_h * 3600.0
    episodes = sample_episodes(log, labels, inject, seed, episode_s)
    report: dict[str, Any] = {
        "days": round((log[-1].wall - log[0].wall) / 86400.0, 2),
        "events": len(log),
        "injected": len(episodes),
        "seed": seed,
        "episode_h": episode_h,
    }
    for v in VARIANTS:
        report[v] = run_variant(log, base_config, devices, v, episodes, episode_s, labels)
    if halves:
        mid = log[0].wall + (log[-1].wall - log[0].wall) / 2.0
        first = [e for e in log if e.wall < mid]
        second = [e for e in log if e.wall >= mid]
        report["halves"] = {}
        for name, train, test in (("learn_first_test_second", first, second),
                                  ("learn_second_test_first", second, first)):
            if len(train) < 2 or len(test) < 2:
                continue
            routine = learn_on(train, base_config, devices)
            eps = sample_episodes(test, labels, max(1, inject // 2) if inject else 0, seed + 1,
                                  episode_s)
            part: dict[str, Any] = {"learned_days": routine.days_used,
                                    "routine_ready": routine.ready}
            for v in VARIANTS:
                part[v] = run_variant(test, base_config, devices, v, eps, episode_s, labels,
                                      routine=routine if v == "learned_routine" else None)
            report["halves"][name] = part
    return report
