"""Compare rules for choosing the decision threshold, held out, without training.

Each fold's threshold is chosen on inner out-of-fold scores of its *training* people
(``python -m models.fall.train ... --inner-scores-out FILE.npz``: the scores the training run
chose on) and applied to the fold model's held-out candidates, replayed through the runtime's
confirmation (:mod:`models.fall.rule_replay`, every candidate kept, whatever its score). The
rule itself is then chosen **leave-one-person-out** over the data set's people, as the
posture rules are (:func:`models.fall.rule_replay.leave_one_person_out`). Runs in the runtime
venv (models/fall/README.md, "Step 6")::

    PYTHONPATH=$PWD python -m models.fall.threshold_replay --folds out/cv-folds \\
        --inner out/inner.npz --data fallalld:neck=../shared/data/fallalld/neck
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.config import FallConfig
from agent.fall.confirmation import rule_for
from models.fall.corpus import Candidates, DataSet
from models.fall.cv import fold_dirs
from models.fall.rule_replay import (
    TrialCandidates,
    collect,
    figures,
    leave_one_person_out,
    outcomes,
    shipped,
)
from models.fall.thresholds import PREWARN_WEIGHT, SPEC_WEIGHT, THRESHOLDS, trial_max_confirmed

Curve = list[tuple[float, float, float, float]]   # threshold, sens, spec, pre-warning rate


def inner_curves(z: Any, fold: int, held: list[str], position: str) -> Curve:
    """Sensitivity (falls that end on the floor), specificity and ADL pre-warning rate per
    threshold on fold ``fold``'s inner out-of-fold scores, that position's training trials."""
    persons, is_fall = z["persons"], z["is_fall"]
    cands = Candidates(np.empty(0), z["cand_label"], z["cand_trial"], z["cand_confirmed"])
    scores = z[f"scores_fold-{fold}"]
    best = trial_max_confirmed(cands, scores, len(persons))
    best_any = trial_max_confirmed(cands, scores, len(persons), confirmed_only=False)
    m = (~np.isin(persons, held) & (z["positions"] == position)
         & ((is_fall & ~z["recovered"]) | ~is_fall))
    best, best_any, fall = best[m], best_any[m], is_fall[m]
    return [(float(t), float((best[fall] >= t).mean()), float((best[~fall] < t).mean()),
             float((best_any[~fall] >= t).mean())) for t in THRESHOLDS]


def by_cost(spec_weight: float, prewarn_weight: float) -> Callable[[Curve], float]:
    """min (1 - sens) + spec_weight (1 - spec) + prewarn_weight pre-warning, highest of ties
    (the shipped rule at 2 / 0.25: :func:`models.fall.thresholds.choose_threshold`)."""
    def choose(curve: Curve) -> float:
        c = np.array([(1 - s) + spec_weight * (1 - sp) + prewarn_weight * p
                      for _, s, sp, p in curve])
        return curve[int(np.flatnonzero(np.isclose(c, c.min()))[-1])][0]
    return choose


def max_sensitivity(min_spec: float) -> Callable[[Curve], float]:
    """The most sensitive threshold whose specificity is ``min_spec`` or more (highest of
    ties); the shipped rule where none reaches it."""
    def choose(curve: Curve) -> float:
        ok = [x for x in curve if x[2] >= min_spec]
        if not ok:
            return by_cost(SPEC_WEIGHT, PREWARN_WEIGHT)(curve)
        top = max(x[1] for x in ok)
        return max(x[0] for x in ok if x[1] >= top - 1e-12)
    return choose


def rules() -> dict[str, Callable[[Curve], float]]:
    """The shipped rule first (it wins ties), then the cost's weights and constrained rules."""
    out = {f"cost spec {SPEC_WEIGHT:g} prewarn {PREWARN_WEIGHT:g} (shipped)":
           by_cost(SPEC_WEIGHT, PREWARN_WEIGHT)}
    for sw in (1.0, 2.0, 3.0, 4.0, 6.0, 8.0):
        for pw in (0.0, 0.1, 0.25, 0.5):
            out.setdefault(f"cost spec {sw:g} prewarn {pw:g}", by_cost(sw, pw))
    for ms in (0.98, 0.985, 0.99, 0.995):
        out[f"max sensitivity at specificity >= {ms:g}"] = max_sensitivity(ms)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"))
    ap.add_argument("--inner", type=Path, required=True, metavar="FILE.npz",
                    help="models.fall.train --inner-scores-out of the same training run")
    ap.add_argument("--data", type=DataSet.parse, required=True, metavar="NAME:POSITION=DIR")
    args = ap.parse_args(argv)
    z = np.load(args.inner)
    folds = fold_dirs(args.folds)
    rule = rule_for(replace(FallConfig(), position=args.data.position))
    per_fold = [collect(args.data, [f], min_score=0.0) for f in folds]
    report: dict[str, Any] = {"rules": []}
    runs = []
    for name, choose in rules().items():
        thr = [choose(inner_curves(z, k, held, args.data.position))
               for k, (_, held) in enumerate(folds)]
        trials = [TrialCandidates(t.subject, t.code, t.is_fall, t.recovered,
                                  [c for c in t.candidates if c.score >= thr[k]])
                  for k, ts in enumerate(per_fold) for t in ts]
        run = outcomes(trials, shipped, rule)
        runs.append(run)
        report["rules"].append({"rule": name, "fold_thresholds": thr, **figures(run)})
    held, chosen = leave_one_person_out(runs)
    names = list(rules())
    report["held_out"] = figures(held)
    report["chosen"] = {p: names[i] for p, i in chosen.items()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
