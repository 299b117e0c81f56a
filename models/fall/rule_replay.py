"""Replay the posture confirmation over the fold models' held-out candidates, to try rules.

A full ``models.fall.cv`` run takes minutes per data set; trying a grid of posture-rule
settings that way would take hours. This module scores every gate candidate of the people
each fold held out with that fold's model (once), keeps the samples around it, and then
replays :func:`agent.fall.confirmation.assess` with each setting: gate, windows, fold models,
fold thresholds and priming are the runtime's own. On step 2's state it gave the runtime's
figures at the neck (260/283 floor falls, 113/144 recovered) with one false alarm more (the
runtime's episode logic drops a second detection in a trial; this replay does not).

Each rule setting is chosen **leave-one-person-out**: for every person, the setting that
minimises :func:`cost` over the *other* people's replayed outcomes is applied to that person;
only those figures are held out. Runs in the runtime venv::

    PYTHONPATH=$PWD python -m models.fall.rule_replay --folds out/cv-folds \\
        --data fallalld:neck=../shared/data/fallalld/neck

(models/fall/README.md, "Step 3", item 5, none of its variants kept; "Step 4": ``still_after``,
kept at the neck; "Step 5": ``lay_down_at``, ``lying_before_at`` and ``quiet_approach``, for
the neck's false alarms lying down on a bed and turning over in it, none kept; "Step 6":
``recovered_upright``, kept at the neck, listed with the rule off first).
``shipped`` is the rules as they ship; ``turned_and_back`` and ``slumped_at`` are tried
against step 3's rules (step 4's and step 6's switched off); step 5's and step 6's against
the shipped rules (step 5's were chosen before step 6: run now, their recovered figures
include step 6's, their floor falls and false alarms are unchanged). Grids
list the shipped setting first and then the settings nearest to it, so that ties go to the
smallest change (``--grid NAME`` runs only that grid).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.calibration import UprightCalibration
from agent.fall.config import FallConfig
from agent.fall.confirmation import (
    LEAD_SKIP_S,
    LYING_BEFORE_S,
    ConfirmRule,
    Evidence,
    assess,
    block_stats,
    rule_for,
)
from agent.fall.dataset import ACC_G_PER_COUNT, load_trials
from agent.fall.evaluation import pad_recording, priming_segments
from agent.fall.gate import find_peaks
from agent.fall.signal import (
    POST_SAMPLES,
    PRE_SAMPLES,
    SAMPLE_RATE_HZ,
    free_fall_min_g,
    gravity_reference,
    magnitude,
    tilt_deg,
    window_at,
)
from agent.fall.stream import lying_seconds
from agent.fall.tflite_model import TfliteFallModel
from models.fall.corpus import UPRIGHT_FEATURE, DataSet, upright_input
from models.fall.cv import fold_dirs

LYING_N = int(LYING_BEFORE_S * SAMPLE_RATE_HZ)
ADL_WARNING_WEIGHT = 0.5   # a wrong fall_recovered report costs half a missed recovered fall


@dataclass
class Candidate:
    score: float
    peak_g: float
    evidence: Evidence           # the shipped rules' verdict
    # Per one-second block from 0.5 s after the impact to the end of confirm_s ([1:]: from
    # 1.5 s, the "after" blocks of the variants):
    tilts: np.ndarray            # tilt from the pre-impact pose
    up_tilts: np.ndarray         # tilt from the learnt upright (180 when not known)
    still: np.ndarray            # spread of |a| below still_g
    pre_tilt: float | None       # pre-impact pose from the learnt upright
    # What assess() was given, to replay it with other rule values (:func:`reassess`):
    inputs: dict[str, Any] | None = None
    # The samples of the 5 s before the window and of the window up to the peak (7 s; fewer
    # at a recording's start): the pose before the impact at other angles, the approach.
    before: np.ndarray | None = None


@dataclass
class TrialCandidates:
    subject: str
    code: str
    is_fall: bool
    recovered: bool
    candidates: list[Candidate]  # over the fold's threshold, in time order


def collect(ds: DataSet, folds: Sequence[tuple[Path, list[str]]],
            min_score: float | None = None) -> list[TrialCandidates]:
    """Every gate candidate over its fold's threshold (over ``min_score`` if given: to try
    other thresholds, :mod:`models.fall.threshold_replay`), for the people of ``ds`` each
    fold held out (as :func:`models.fall.corpus.extract` finds them)."""
    cfg = replace(FallConfig(), position=ds.position)
    rule = rule_for(cfg)
    confirm_n = round(cfg.confirm_s * SAMPLE_RATE_HZ)
    trials = load_trials(ds.path)
    primes = priming_segments(trials)
    out = []
    for d, held in folds:
        subjects = {p.split(":", 1)[1] for p in held if p.split(":", 1)[0] == ds.name}
        model = FoldModel(d, ds.position)
        for t in (t for t in trials if t.subject in subjects):
            acc = pad_recording(t.samples, cfg)[:, :3].astype(np.float32) * ACC_G_PER_COUNT
            cal = UprightCalibration()
            if t.subject in primes:
                cal.feed(primes[t.subject][:, :3].astype(np.float32) * ACC_G_PER_COUNT)
                cal.reset_partial()
            fed, cands = 0, []
            for peak, g in find_peaks(magnitude(acc), cfg.gate_g):
                if peak + POST_SAMPLES > len(acc) or peak >= len(t.samples):
                    continue
                cal.feed(acc[fed:peak + POST_SAMPLES])
                fed = peak + POST_SAMPLES
                w = window_at(acc, peak)
                score = model.score_at(w, cal.upright)
                if score < (model.threshold if min_score is None else min_score):
                    continue
                cands.append(_candidate(acc, peak, float(g), w, score, cal.upright, rule,
                                        confirm_n))
            out.append(TrialCandidates(t.subject, t.code, t.is_fall, t.recovered, cands))
    return out


class FoldModel:
    """A fold model for the replay. One trained with ``--upright-channel`` (manifest feature
    ``along_upright``, step 8: tried, the runtime refuses its input shape) is run here with
    the upright learnt from walking; any other is the runtime's :class:`TfliteFallModel`."""

    def __init__(self, fold_dir: Path, position: str) -> None:
        doc = json.loads((fold_dir / "manifest.json").read_text())
        self.uses_upright = UPRIGHT_FEATURE in doc["input"]["features"]
        self._model: TfliteFallModel | None = None
        if not self.uses_upright:
            self._model = TfliteFallModel(fold_dir / "fall.tflite", interpreter="ai_edge_litert",
                                          position=position)
            self.threshold = self._model.threshold
            return
        from ai_edge_litert.interpreter import Interpreter

        self._interp = Interpreter(model_path=str(fold_dir / "fall.tflite"), num_threads=1)
        self._interp.allocate_tensors()
        inp, out = self._interp.get_input_details()[0], self._interp.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        (self._in_scale, self._in_zp), (self._out_scale, self._out_zp) = (
            inp["quantization"], out["quantization"])
        self.threshold = float(doc["positions"][position]["decision_threshold"])

    def score_at(self, window: np.ndarray, upright: np.ndarray | None) -> float:
        if self._model is not None:
            return self._model.score(window)
        q = np.round(upright_input(window, upright) / self._in_scale) + self._in_zp
        self._interp.set_tensor(self._in, np.clip(q, -128, 127).astype(np.int8)[np.newaxis])
        self._interp.invoke()
        y = int(self._interp.get_tensor(self._out).reshape(-1)[0])
        return float(np.clip((y - self._out_zp) * self._out_scale, 0.0, 1.0))


def _candidate(acc: np.ndarray, peak: int, peak_g: float, w: np.ndarray, score: float,
               up: np.ndarray | None, rule: ConfirmRule, confirm_n: int) -> Candidate:
    before = acc[max(0, peak - PRE_SAMPLES - LYING_N):max(0, peak - PRE_SAMPLES)]
    lying_before = (lying_seconds(before, up, rule.lying_before_deg)
                    if up is not None and len(before) == LYING_N else None)
    d = peak + POST_SAMPLES
    ref = gravity_reference(w)
    inputs: dict[str, Any] = {
        "post": acc[d:d + confirm_n].copy(), "reference": ref, "rate_hz": SAMPLE_RATE_HZ,
        "upright": up, "lead": acc[peak:d].copy(), "lying_before_s": lying_before,
        "peak_g": peak_g, "free_fall_min": free_fall_min_g(w)}
    ev = assess(rule=rule, **inputs)
    skip = round(LEAD_SKIP_S * SAMPLE_RATE_HZ)
    tilts, up_tilts, acts = block_stats(acc[peak + skip:d + confirm_n], ref, up)
    return Candidate(score, peak_g, ev, tilts, up_tilts, acts < rule.still_g,
                     None if up is None else tilt_deg(ref, up), inputs,
                     acc[max(0, peak - PRE_SAMPLES - LYING_N):peak].copy())


Variant = Callable[[Candidate, ConfirmRule], Evidence]


def shipped(c: Candidate, rule: ConfirmRule) -> Evidence:
    return c.evidence


def reassess(**values: float) -> Variant:
    """The runtime's :func:`assess` on the same inputs with ``values`` changed in the rule."""
    def fn(c: Candidate, rule: ConfirmRule) -> Evidence:
        assert c.inputs is not None
        return assess(rule=replace(rule, **values), **c.inputs)
    return fn


def turned_and_back(turn_deg: float | None, within_s: int, hard_from_lying_g: float | None
                    ) -> Variant:
    """A detection never "down" whose pendant turned >= ``turn_deg`` from its pre-impact pose
    within ``within_s`` s and not in the last 2 s is recovered; a hard impact (>=
    ``hard_from_lying_g``) from lying that stays lying is confirmed (a fall out of bed)."""
    def fn(c: Candidate, rule: ConfirmRule) -> Evidence:
        ev = _without_still_after(c, rule)
        if ev.reason != "not_down":
            return ev
        post_up = c.up_tilts[1:]
        if (hard_from_lying_g is not None and c.pre_tilt is not None
                and c.pre_tilt >= rule.lying_before_deg and c.peak_g >= hard_from_lying_g
                and np.mean(post_up >= rule.lying_tilt_deg) >= 0.9):
            return replace(ev, confirmed=True, reason="lying")
        if (turn_deg is not None and (c.tilts[:within_s] >= turn_deg).any()
                and not (c.tilts[-2:] >= turn_deg).any()):
            return replace(ev, reason="recovered")
        return ev
    return fn


def slumped_at(tilt: float, upright_tilt: float, min_score: float) -> Variant:
    """Slumped and still (>= 90 % still blocks) at smaller angles than the shipped 25 / 25."""
    def fn(c: Candidate, rule: ConfirmRule) -> Evidence:
        ev = _without_still_after(c, rule)
        if ev.reason != "not_down" or c.score < min_score:
            return ev
        post = slice(1, None)   # blocks from 1.5 s after the impact
        if (np.mean(c.still[post]) >= 0.9 and np.median(c.tilts[post]) >= tilt
                and np.median(c.up_tilts[post]) >= upright_tilt):
            return replace(ev, confirmed=True, reason="slumped_still")
        return ev
    return fn


def lying_before_at(lying_deg: float, max_g: float) -> Variant:
    """The runtime's "already lying" rule with the pose before the impact judged at
    ``lying_deg`` from the learnt upright (5 s before the window and the window's first
    second, as shipped at 70) and the soft-impact limit at ``max_g`` (shipped 3 g)."""
    def fn(c: Candidate, rule: ConfirmRule) -> Evidence:
        assert c.inputs is not None and c.before is not None
        inputs = dict(c.inputs)
        up = inputs["upright"]
        pre = c.before[:LYING_N]
        if up is not None and len(c.before) == LYING_N + PRE_SAMPLES:
            inputs["lying_before_s"] = lying_seconds(pre, up, lying_deg)
        return assess(rule=replace(rule, lying_before_deg=lying_deg,
                                   already_lying_max_g=max_g), **inputs)
    return fn


def approach_spread_g(c: Candidate) -> float:
    """Spread (std) of |a| over the 2 s before the peak: lowering oneself onto a bed is
    smooth, a fall is not."""
    assert c.before is not None
    return float(magnitude(c.before[-round(2 * SAMPLE_RATE_HZ):]).std())


def quiet_approach(spread_g: float | None, max_g: float) -> Variant:
    """A confirmed detection is set aside as ``lay_down`` when the approach was quiet
    (:func:`approach_spread_g` below ``spread_g``) and the impact soft (below ``max_g``)."""
    def fn(c: Candidate, rule: ConfirmRule) -> Evidence:
        ev = c.evidence
        if (spread_g is not None and ev.confirmed and c.peak_g < max_g
                and approach_spread_g(c) < spread_g):
            return replace(ev, confirmed=False, reason="lay_down")
        return ev
    return fn


def _without_still_after(c: Candidate, rule: ConfirmRule) -> Evidence:
    """The verdict without step 4's ``reclined_still`` / ``motionless`` and step 6's
    ``recovered_upright_deg`` (what step 3's variants were tried against)."""
    return reassess(reclined_still_g=0.0, motionless_g=0.0, recovered_upright_deg=0.0)(c, rule)


def outcomes(trials: Sequence[TrialCandidates], variant: Variant, rule: ConfirmRule
             ) -> list[tuple[TrialCandidates, str]]:
    """alarm (a confirmed detection) | warning (a recovered one) | none, per trial."""
    out = []
    for t in trials:
        verdicts = [variant(c, rule) for c in t.candidates]
        outcome = ("alarm" if any(v.confirmed for v in verdicts)
                   else "warning" if any(v.recovered for v in verdicts) else "none")
        out.append((t, outcome))
    return out


def figures(res: Sequence[tuple[TrialCandidates, str]]) -> dict[str, Any]:
    floor = [o for t, o in res if t.is_fall and not t.recovered]
    rec = [o for t, o in res if t.recovered]
    adl = [o for t, o in res if not t.is_fall]
    return {"floor": f"{floor.count('alarm')}/{len(floor)}",
            "sensitivity_floor": round(floor.count("alarm") / max(1, len(floor)), 4),
            "recovered_as_warning": round(rec.count("warning") / max(1, len(rec)), 4),
            "recovered": f"{rec.count('warning')}/{len(rec)}",
            "specificity": round(1 - adl.count("alarm") / max(1, len(adl)), 4),
            "false_alarms": adl.count("alarm"), "adl_warnings": adl.count("warning"),
            "adl_warning_rate": round(adl.count("warning") / max(1, len(adl)), 4)}


def cost(f: dict[str, Any]) -> float:
    return ((1 - f["sensitivity_floor"]) + 2 * (1 - f["specificity"])
            + (1 - f["recovered_as_warning"]) + ADL_WARNING_WEIGHT * f["adl_warning_rate"])


def leave_one_person_out(runs: Sequence[list[tuple[TrialCandidates, str]]]
                         ) -> tuple[list[tuple[TrialCandidates, str]], dict[str, int]]:
    """For each person, the run (setting) of least :func:`cost` on the others (the first of
    ties: list the shipped setting first); returns the held-out outcomes and the choices."""
    people = sorted({t.subject for t, _ in runs[0]})
    held, chosen = [], {}
    for p in people:
        costs = [cost(figures([x for x in run if x[0].subject != p])) for run in runs]
        best = int(np.argmin(np.round(costs, 9)))
        chosen[p] = best
        held += [x for x in runs[best] if x[0].subject == p]
    return held, chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"))
    ap.add_argument("--data", type=DataSet.parse, required=True, metavar="NAME:POSITION=DIR")
    ap.add_argument("--grid", action="append", default=[], help="run only this grid")
    args = ap.parse_args(argv)
    trials = collect(args.data, fold_dirs(args.folds))
    rule = rule_for(replace(FallConfig(), position=args.data.position))
    grids: dict[str, list[tuple[dict[str, Any], Variant]]] = {
        "turned_and_back": [({"turn_deg": t, "within_s": k, "hard_from_lying_g": g},
                             turned_and_back(t, k, g))
                            for t in (None, 25, 30, 35, 40, 45) for k in (3, 5)
                            for g in (None, 3.0, 3.5, 4.0, 4.5, 5.0)],
        "slumped_at": [({"tilt": t, "upright_tilt": u, "min_score": s}, slumped_at(t, u, s))
                       for t in (25, 20, 15) for u in (25, 20, 15, 10, 0)
                       for s in (0.8, 0.5, 0.0)],
        # Step 4 (shipped at the neck): still for all of confirm_s after a detection that was
        # never down; the first setting (both off) is step 3's state and wins ties.
        "still_after": [({"motionless_g": m, "reclined_still_g": a, "reclined_tilt_deg": u},
                         reassess(motionless_g=m, reclined_still_g=a, reclined_tilt_deg=u))
                        for m in (0.0, 0.001, 0.002, 0.003)
                        for a in (0.0, 0.005, 0.01, 0.015)
                        for u in ((20.0,) if a == 0.0 else (10.0, 15.0, 20.0, 25.0))],
        # Step 5 (none kept): the neck's false alarms lying down on a bed (D18) and turning
        # over in it (D19), against the falls out of bed (F27) that start lying too.
        "lay_down_at": [({"free_fall_g": a, "lay_down_max_g": b},
                         reassess(free_fall_g=a, lay_down_max_g=b))
                        for b in (rule.lay_down_max_g, 2.25, 2.5, 2.75, 3.0, 3.5)
                        for a in (0.5, 0.6, 0.7, 0.8)],
        "lying_before_at": [({"lying_before_deg": d, "already_lying_max_g": g},
                             lying_before_at(d, g))
                            for d in (70.0, 65.0, 60.0, 55.0, 50.0, 45.0, 40.0)
                            for g in (3.0, 2.5, 3.5, 2.0, 4.0, 5.0)],
        "quiet_approach": [({"spread_g": None, "max_g": None}, shipped)] + [
            ({"spread_g": s, "max_g": g}, quiet_approach(s, g))
            for s in (0.10, 0.12, 0.14, 0.16, 0.18, 0.20)
            for g in (2.25, 2.5, 2.75, 3.0, 3.5, 4.0)],
        # Step 6 (shipped at the neck): down by the learnt upright alone counts for
        # "recovered" (a fall whose pendant was already tilted in the window's first second
        # never turns 45 deg from it); off first, so that it wins ties.
        "recovered_upright": [({"recovered_upright_deg": d}, reassess(recovered_upright_deg=d))
                              for d in (0.0, 80.0, 75.0, 70.0, 65.0, 60.0, 55.0, 50.0,
                                        45.0)],
    }
    if args.grid:
        grids = {k: v for k, v in grids.items() if k in args.grid}
    report: dict[str, Any] = {"shipped": figures(outcomes(trials, shipped, rule))}
    for name, grid in grids.items():
        runs = [outcomes(trials, fn, rule) for _, fn in grid]
        held, chosen = leave_one_person_out(runs)
        report[name] = {
            "in_sample": [{**setting, **figures(run)} for (setting, _), run in zip(grid, runs,
                                                                                   strict=True)],
            "chosen": {p: grid[i][0] for p, i in chosen.items()},
            "held_out": figures(held)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
