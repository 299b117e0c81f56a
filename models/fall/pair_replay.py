"""Two fold models per held-out person at the neck, held out, without a runtime change (the
study behind step 7: the agent now ships the "either" pair, :mod:`agent.fall.pair`).

Step 6 trained a neck-only model (``train --data fallalld:neck=... --folds 8``, the same seed:
the same person held out per fold as the shipped folds). This replays every held-out neck gate
candidate through the runtime's confirmation with a candidate kept when the shipped fold
model's score reaches its fold threshold (``shipped``), the neck-only fold model's reaches its
own (``neck_only``), both (``both``) or either (``either``), or either but both for a
candidate whose wearer was lying before it (``either_both_if_lying``, step 8); each fold
threshold is the one
its training run chose on that fold's training people. The mode is then chosen
**leave-one-person-out** (:func:`models.fall.rule_replay.leave_one_person_out`; ``shipped``
first, so it wins ties). Runs in the runtime venv (models/fall/README.md, "Step 6")::

    PYTHONPATH=$PWD python -m models.fall.pair_replay --folds out/cv-folds \\
        --other-folds out/neck-folds --data fallalld:neck=../shared/data/fallalld/neck
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.fall.config import FallConfig
from agent.fall.confirmation import ConfirmRule, rule_for
from agent.fall.dataset import load_trials
from agent.fall.evaluation import summarize
from models.fall.corpus import DataSet, lying_context
from models.fall.cv import brief, check_same_people, fold_dirs, pair_factory, run_folds
from models.fall.rule_replay import (
    Candidate,
    TrialCandidates,
    collect,
    figures,
    leave_one_person_out,
    outcomes,
    shipped,
)

MODES = ("shipped", "neck_only", "both", "either", "either_both_if_lying")
# ``either_both_if_lying`` (step 8, tried, not shipped): "either", but a candidate whose
# wearer was lying before it (:func:`models.fall.corpus.lying_context`) needs both models.


def runtime_either(ds: DataSet, folds: list[tuple[Path, list[str]]], other: Path
                   ) -> dict[str, Any]:
    """The pair through :func:`models.fall.cv.run_folds` (the runtime's Evaluator: episodes,
    trial and continuous tests), each fold's first model paired with ``other``'s same fold."""
    cfg = replace(FallConfig(), position=ds.position)
    (res, cont), _ = run_folds(ds, load_trials(ds.path), folds, cfg,
                               model_factory=pair_factory(other))
    return brief(summarize(res, cont))


def fold_threshold(fold_dir: Path, position: str) -> float:
    doc = json.loads((fold_dir / "manifest.json").read_text())
    return float(doc["positions"][position]["decision_threshold"])


def keep(mode: str, a: bool, b: bool, lying: bool = False) -> bool:
    """Whether a candidate is a detection: ``a`` / ``b``, the first / second model's score
    reached its fold threshold; ``lying``: the wearer was lying before it."""
    if mode == "either_both_if_lying":
        return (a and b) if lying else (a or b)
    return {"shipped": a, "neck_only": b, "both": a and b, "either": a or b}[mode]


def lying_before(c: Candidate, rule: ConfirmRule) -> bool:
    """The wearer was lying before the candidate (:func:`models.fall.corpus.lying_context`)."""
    return lying_context(c.evidence.lying_before_s, c.pre_tilt, rule.lying_before_deg)


def pair_outcomes(first: Sequence[Sequence[TrialCandidates]],
                  second: Sequence[Sequence[TrialCandidates]],
                  thr_first: Sequence[float], thr_second: Sequence[float], mode: str,
                  rule: ConfirmRule) -> list[tuple[TrialCandidates, str]]:
    """Per fold, the same trials' candidates (every gate candidate, in time order) scored by
    each model; the first model's candidate carries the runtime's verdict (the posture
    judgement does not depend on the model)."""
    trials = []
    for k, (ts_a, ts_b) in enumerate(zip(first, second, strict=True)):
        by_key = {(t.subject, t.code): t for t in ts_b}
        for ta in ts_a:
            tb = by_key[(ta.subject, ta.code)]
            kept = [ca for ca, cb in zip(ta.candidates, tb.candidates, strict=True)
                    if keep(mode, ca.score >= thr_first[k], cb.score >= thr_second[k],
                            lying_before(ca, rule))]
            trials.append(TrialCandidates(ta.subject, ta.code, ta.is_fall, ta.recovered, kept))
    return outcomes(trials, shipped, rule)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.fall.pair_replay",
                                 description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"))
    ap.add_argument("--other-folds", type=Path, required=True,
                    help="the second model's fold-K directories (the same people per fold)")
    ap.add_argument("--data", type=DataSet.parse, required=True, metavar="NAME:POSITION=DIR")
    ap.add_argument("--runtime", action="store_true",
                    help="also run the 'either' pair through the runtime path (models.fall.cv's "
                         "run_folds: trial and continuous figures)")
    args = ap.parse_args(argv)
    pos = args.data.position
    fa, fb = fold_dirs(args.folds), fold_dirs(args.other_folds)
    check_same_people(fa, fb, args.data.name)
    rule = rule_for(replace(FallConfig(), position=pos))
    first = [collect(args.data, [f], min_score=0.0) for f in fa]
    second = [collect(args.data, [f], min_score=0.0) for f in fb]
    ta = [fold_threshold(d, pos) for d, _ in fa]
    tb = [fold_threshold(d, pos) for d, _ in fb]
    runs = [pair_outcomes(first, second, ta, tb, m, rule) for m in MODES]
    held, chosen = leave_one_person_out(runs)
    report: dict[str, Any] = {"fold_thresholds": {"first": ta, "second": tb},
                              "modes": {m: figures(r) for m, r in zip(MODES, runs,
                                                                     strict=True)},
                              "held_out": figures(held),
                              "chosen": {p: MODES[i] for p, i in chosen.items()}}
    if args.runtime:
        report["runtime_either"] = runtime_either(args.data, fa, args.other_folds)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
