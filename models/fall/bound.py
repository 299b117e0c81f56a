"""What no setting of the pair's threshold, the recovered angle or the confirmation time
reaches at the neck, even chosen in hindsight (models/fall/README.md, "Step 9").

Every figure runs the runtime path held out, exactly as :mod:`models.fall.cv` does: each
fold's pair (the shipped fold model and the second model's same fold) on the people that
fold never trained on. Three studies:

- ``threshold_shift``: the pair's decision threshold moved from 0.5 (each model at its own
  fold threshold, what ships) up to 0.95 (both models' scores are mapped so that their own
  threshold lands on 0.5, :func:`agent.fall.pair.calibrated`), one setting for all folds.
- ``recovered_angle``: ``[fall] recovered_upright_deg`` (shipped 70 deg) down to 20 deg.
- ``confirm``: ``[fall] confirm_s`` (shipped 10 s) up to 20 s. The alarm is raised at
  max(confirm_s, cancel_window_s), 20 s, so a longer confirmation costs no alarm time: it
  gives a wearer longer to get up.
- ``rotation``: the largest rotation rate of the pendant (gyroscope, 0.2 s mean of |w|)
  from 2 s before to 0.5 s after each recording's peak |a|, for the falls that alarmed and
  the daily activities that did (the runtime does not read the gyroscope; this asks whether
  it would separate them).

For each of the first three, ``hindsight`` is every setting on all people (the test people
included: a bound, not a result) and ``held_out`` the setting chosen leave-one-person-out
(:func:`models.fall.rule_replay.leave_one_person_out`, its cost; the shipped setting is
listed first and wins ties). Runs in the runtime venv, about 16 s per setting::

    PYTHONPATH=$PWD python -m models.fall.bound --folds out/cv-folds \\
        --second-folds out/neck-folds --data fallalld:neck=../shared/data/fallalld/neck
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.config import FallConfig
from agent.fall.dataset import SAMPLE_RATE_HZ, Trial, load_trials
from agent.fall.evaluation import TrialResult
from agent.fall.pair import PAIR_THRESHOLD, PairScorer
from models.fall.corpus import DataSet
from models.fall.cv import check_same_people, fold_dirs, pair_factory, run_folds
from models.fall.rule_replay import figures, leave_one_person_out

SHIFTS = (PAIR_THRESHOLD, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
ANGLES = (70.0, 60.0, 50.0, 45.0, 40.0, 35.0, 30.0, 25.0, 20.0)
CONFIRMS = (10.0, 12.0, 15.0, 20.0)   # confirm_s; the alarm waits for cancel_window_s (20 s)
ROTATION_BEFORE_S = 2.0
ROTATION_AFTER_S = 0.5
ROTATION_MEAN_S = 0.2

Outcomes = list[tuple[Any, str]]   # (TrialResult, outcome): rule_replay's figures take them


def shifted(second_root: Path, threshold: float) -> Callable[..., PairScorer]:
    """:func:`models.fall.cv.pair_factory` with the pair's threshold moved to ``threshold``."""
    build = pair_factory(second_root)

    def make(path: Path, interpreter: str, position: str) -> PairScorer:
        scorer = build(path, interpreter, position)
        scorer.threshold = threshold
        return scorer
    return make


def outcomes(results: Sequence[TrialResult]) -> Outcomes:
    return [(r, r.outcome) for r in results]


def study(runs: Sequence[tuple[float, Outcomes]]) -> dict[str, Any]:
    """Hindsight figures of every setting, and the leave-one-person-out choice."""
    held, chosen = leave_one_person_out([o for _, o in runs])
    people = sorted({r.subject for r, _ in runs[0][1]})
    return {
        "hindsight": [{"setting": s, **figures(o)} for s, o in runs],
        "held_out": {"chosen": {p: runs[chosen[p]][0] for p in people}, **figures(held)},
        "held_out_per_person": {p: figures([x for x in held if x[0].subject == p])
                                for p in people},
    }


def peak_rotation_dps(trial: Trial) -> float | None:
    """The largest ``ROTATION_MEAN_S`` mean of |gyro| around the recording's peak |a|."""
    if trial.samples.shape[1] < 6:
        return None
    w = np.linalg.norm(trial.gyro_dps, axis=1)
    k = max(1, int(ROTATION_MEAN_S * SAMPLE_RATE_HZ))
    mean = np.convolve(w, np.ones(k) / k, mode="same")
    i = trial.impact_index()
    lo = max(0, i - int(ROTATION_BEFORE_S * SAMPLE_RATE_HZ))
    hi = min(len(mean), i + int(ROTATION_AFTER_S * SAMPLE_RATE_HZ) + 1)
    return float(mean[lo:hi].max())


def rotation(trials: Sequence[Trial], base: Sequence[TrialResult]) -> dict[str, Any]:
    """Peak rotation of the floor falls that alarmed against the daily activities that
    did, from the shipped settings' run."""
    by_key = {(t.subject, t.code): t for t in trials}
    groups: dict[str, list[float]] = {"floor_falls_alarmed": [], "recovered_as_warning": [],
                                      "adl_alarms": [], "adl_all": []}
    alarms = []
    for r in base:
        w = peak_rotation_dps(by_key[(r.subject, r.code)])
        if w is None:
            continue
        if not r.is_fall:
            groups["adl_all"].append(w)
            if r.alarms:
                groups["adl_alarms"].append(w)
                alarms.append({"subject": r.subject, "trial": r.code, "dps": round(w)})
        elif r.recovered:
            if r.warnings and not r.alarms:
                groups["recovered_as_warning"].append(w)
        elif r.alarms:
            groups["floor_falls_alarmed"].append(w)
    pct = (5, 25, 50, 75, 95)
    floor = groups["floor_falls_alarmed"]
    return {
        "percentiles": list(pct),
        "groups_dps": {g: {"n": len(v), "dps": [round(float(x)) for x in
                                                 np.percentile(v, pct)] if v else []}
                       for g, v in groups.items()},
        "adl_alarms": alarms,
        # what a "no fast rotation, no fall" rule would keep: for each false alarm's rotation
        # as the rule's limit, the floor falls it would lose
        "floor_falls_at_or_below": {a["trial"] + ":" + a["subject"]:
                                    int(sum(x <= a["dps"] for x in floor)) for a in alarms},
    }


def evaluate(ds: DataSet, folds: list[tuple[Path, list[str]]], second: Path,
             shifts: Sequence[float] = SHIFTS, angles: Sequence[float] = ANGLES,
             confirms: Sequence[float] = CONFIRMS,
             progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """``shifts``, ``angles`` and ``confirms`` start with the shipped setting (it wins
    ties)."""
    check_same_people(folds, fold_dirs(second), ds.name)
    trials = load_trials(ds.path)
    cfg = replace(FallConfig(), position=ds.position)

    def run(c: FallConfig, t: float) -> list[TrialResult]:
        (res, _cont), _ = run_folds(ds, trials, folds, c, shifted(second, t))
        return res

    shift_runs = []
    base: list[TrialResult] = []
    for t in shifts:
        progress(f"threshold {t}")
        res = run(cfg, t)
        base = base or res
        shift_runs.append((t, outcomes(res)))

    def sweep(key: str, values: Sequence[float]) -> list[tuple[float, Outcomes]]:
        """``[fall] key`` at each value, the pair at its own thresholds (the shipped
        value's run is the first threshold run's)."""
        runs = []
        for v in values:
            progress(f"{key} {v}")
            res = base if v == getattr(cfg, key) else run(replace(cfg, **{key: v}),
                                                          PAIR_THRESHOLD)
            runs.append((v, outcomes(res)))
        return runs

    return {"data": f"{ds.name}:{ds.position}", "held_out": True,
            "threshold_shift": study(shift_runs),
            "recovered_angle": study(sweep("recovered_upright_deg", angles)),
            "confirm": study(sweep("confirm_s", confirms)),
            "rotation": rotation(trials, base)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m models.fall.bound",
        description=" ".join(__doc__.split("\n\n")[0].split()),
        epilog="The fold directories are not in the repository: the two train commands of "
               "models/fall/README.md ('Training and cross-validation') write them, "
               "--folds-out out/cv-folds and --second-model neck --folds-out out/neck-folds "
               "(about 15 min and more in the train venv).")
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"),
                    help="the shipped model's fold-K directories (train --folds-out; "
                         "default out/cv-folds)")
    ap.add_argument("--second-folds", type=Path, default=Path("out/neck-folds"),
                    help="the second model's fold-K directories (train --second-model neck "
                         "--folds-out; default out/neck-folds)")
    ap.add_argument("--data", type=DataSet.parse, required=True, metavar="NAME:POSITION=DIR",
                    help="the neck recordings, e.g. fallalld:neck=../shared/data/fallalld/neck")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    out = evaluate(args.data, fold_dirs(args.folds), args.second_folds,
                   progress=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
