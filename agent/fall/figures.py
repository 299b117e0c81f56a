"""Figures from evaluation results (pure: counts in, JSON-ready dicts out).

One detector's :func:`summarize` is what ``tec-agent eval-fall`` prints and what the
cross-validation report (:mod:`models.fall.cv`) gathers per data set and position. Falls
are split by how they end: on the floor (the detector must alarm) or *recovered* (the wearer
got up within the confirmation time: the detector should report ``fall_recovered``, a
warning, and no alarm); ``sensitivity`` counts alarms over all falls as before,
``sensitivity_floor`` over the falls that end on the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.fall.dataset import Trial, adls_by_subject
from agent.fall.signal import SAMPLE_RATE_HZ, magnitude

if TYPE_CHECKING:
    from agent.fall.evaluation import ContinuousResult, TrialResult

SHUFFLE_SEED = 20261126
PUBLISHED_REFRACTORY_S = 60.0


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _figures(falls: int, adls: int, tp: int, fp: int, cont_alarms: int, hours: float
             ) -> dict[str, Any]:
    """Trial-level and continuous figures from the counts (every detector's summary)."""
    fn, tn = falls - tp, adls - fp
    return {
        "falls": falls,
        "adls": adls,
        "sensitivity": _ratio(tp, falls),
        "specificity": _ratio(tn, adls),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "false_alarms_per_hour": round(cont_alarms / hours, 4) if hours else None,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "continuous_hours": round(hours, 3),
        "continuous_false_alarms": cont_alarms,
        "false_alarms_per_24h": round(24 * cont_alarms / hours, 3) if hours else None,
    }


def _per_subject(results: Sequence[TrialResult], cont: Sequence[ContinuousResult]
                 ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for subject in sorted({r.subject for r in results} | {c.subject for c in cont}):
        rs = [r for r in results if r.subject == subject]
        sf = [r for r in rs if r.is_fall]
        sa = [r for r in rs if not r.is_fall]
        out[subject] = {
            "trials": len(rs), "falls": len(sf), "adls": len(sa),
            "sensitivity": _ratio(sum(r.detected for r in sf), len(sf)),
            "specificity": _ratio(sum(not r.detected for r in sa), len(sa)),
            "missed": [r.code for r in sf if not r.detected and not r.recovered],
            "false_alarms": [r.code for r in sa if r.detected],
            "continuous_false_alarms": sum(x.alarms for x in cont if x.subject == subject),
        }
    return out


def _fall_endings(results: Sequence[TrialResult]) -> dict[str, Any]:
    """Falls that end on the floor vs recovered falls, and warnings on daily activities."""
    floor = [r for r in results if r.is_fall and not r.recovered]
    rec = [r for r in results if r.is_fall and r.recovered]
    adls = [r for r in results if not r.is_fall]
    return {
        "falls_floor": len(floor),
        "sensitivity_floor": _ratio(sum(r.detected for r in floor), len(floor)),
        "falls_recovered": len(rec),
        "recovered_as_warning": _ratio(sum(r.outcome == "warning" for r in rec), len(rec)),
        "recovered_as_alarm": _ratio(sum(r.detected for r in rec), len(rec)),
        "adl_warnings": sum(r.outcome == "warning" for r in adls),
        "adl_warning_rate": _ratio(sum(r.outcome == "warning" for r in adls), len(adls)),
        "floor_falls_as_warning": sum(r.outcome == "warning" for r in floor),
    }


def _continuous(cont: Sequence[ContinuousResult]) -> dict[str, Any]:
    hours = sum(c.hours for c in cont)
    held = sum(c.held_alarms for c in cont)
    return {
        # Each recording's end held before the next (agent.fall.evaluation): an impact is
        # judged on its own recording only; same recorded hours.
        "continuous_false_alarms_held": held,
        "false_alarms_per_24h_held": round(24 * held / hours, 3) if hours else None,
        # An impact in a recording's first 2 s has its window in the held end before it.
        "continuous_false_alarms_held_at_junctions": sum(c.held_junction_alarms for c in cont),
        "continuous_alarm_recordings": sorted(
            f"{c.subject} {code}" for c in cont for code in c.alarm_recordings),
        "continuous_held_alarm_recordings": sorted(
            f"{c.subject} {code}" for c in cont for code in c.held_alarm_recordings),
        "continuous_false_alarms_at_junctions": sum(c.junction_alarms for c in cont),
        "continuous_junction_exposure": _ratio(round(sum(c.junction_exposure_s for c in cont)),
                                               round(hours * 3600)),
    }


def reasons(results: Sequence[TrialResult]) -> dict[str, dict[str, int]]:
    """How many falls (on the floor / recovered) and daily activities ended for each reason
    (``--trials-out`` reasons)."""
    out: dict[str, dict[str, int]] = {"fall": {}, "fall_recovered": {}, "adl": {}}
    for r in results:
        d = out[("fall_recovered" if r.recovered else "fall") if r.is_fall else "adl"]
        d[r.reason] = d.get(r.reason, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def summarize(results: Sequence[TrialResult], cont: Sequence[ContinuousResult]) -> dict[str, Any]:
    """The figures ``tec-agent eval-fall`` prints (one detector)."""
    falls = [r for r in results if r.is_fall]
    adls = [r for r in results if not r.is_fall]
    delays = [r.delay_s for r in falls if r.delay_s is not None]
    return {
        "trials": len(results),
        **_figures(len(falls), len(adls), sum(r.detected for r in falls),
                   sum(r.detected for r in adls), sum(c.alarms for c in cont),
                   sum(c.hours for c in cont)),
        **_fall_endings(results),
        **_continuous(cont),
        "detection_delay_s_p50": round(float(np.median(delays)), 2) if delays else None,
        "outcomes": {o: sum(r.outcome == o for r in results)
                     for o in ("alarm", "warning", "cancelled", "none")},
        "reasons": reasons(results),
        "per_subject": _per_subject(results, cont),
    }


def shuffled_summary(orders: Sequence[Sequence[ContinuousResult]],
                     seed: int = SHUFFLE_SEED) -> dict[str, Any]:
    """Figures of :meth:`Evaluator.run_shuffled`: false alarms per order and overall."""
    hours = sum(c.hours for streams in orders for c in streams)
    alarms = [sum(c.alarms for c in streams) for streams in orders]
    return {
        "orders": len(orders),
        "seed": seed,
        "hours_per_order": round(hours / len(orders), 3) if orders else 0.0,
        "false_alarms": alarms,
        "false_alarms_at_junctions": [sum(c.junction_alarms for c in streams)
                                      for streams in orders],
        "junction_exposure": _ratio(
            round(sum(c.junction_exposure_s for streams in orders for c in streams)),
            round(hours * 3600)),
        "false_alarms_per_24h": round(24 * sum(alarms) / hours, 3) if hours else None,
    }


def published_threshold_summary(trials: Sequence[Trial], peak_g: float) -> dict[str, Any]:
    """The threshold detector exactly as published (Bourke et al. 2007): a fall whenever the
    resultant acceleration reaches the upper fall threshold, with no posture or stillness
    check. Computed on the raw recordings (it has no other state): a trial is detected when
    any sample reaches ``peak_g``; in the continuous test crossings closer than
    :data:`PUBLISHED_REFRACTORY_S` count as one alarm. ``baseline`` in the eval-fall output is
    the same threshold run through the hub's path (gate, confirmation, episodes), which is
    what the agent falls back to."""
    mags = {t.key: magnitude(t.acc_g) for t in trials}
    falls = [t for t in trials if t.is_fall]
    adls = [t for t in trials if not t.is_fall]
    alarms, seconds = 0, 0.0
    gap = int(PUBLISHED_REFRACTORY_S * SAMPLE_RATE_HZ)
    for _subject, stream in adls_by_subject(adls):
        m = np.concatenate([mags[t.key] for t in stream])
        seconds += len(m) / SAMPLE_RATE_HZ
        above = np.flatnonzero(m >= peak_g)
        if len(above):
            alarms += 1 + int(np.count_nonzero(np.diff(above) > gap))
    floor = [t for t in falls if not t.recovered]
    return {
        "detector": f"bourke2007-uft-{peak_g:g}g, as published (no posture check)",
        "trials": len(trials),
        **_figures(len(falls), len(adls), sum(bool(mags[t.key].max() >= peak_g) for t in falls),
                   sum(bool(mags[t.key].max() >= peak_g) for t in adls), alarms,
                   seconds / 3600.0),
        "falls_floor": len(floor),
        "sensitivity_floor": _ratio(sum(bool(mags[t.key].max() >= peak_g) for t in floor),
                                    len(floor)),
    }
