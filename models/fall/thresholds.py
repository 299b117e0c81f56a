"""Leave-persons-out folds and the decision-threshold rule of the fall model (pure numpy).

A person is in exactly one fold, with all of their recordings at every position; each
position's threshold is chosen on out-of-fold scores of that position's training trials.
"""

from __future__ import annotations

import numpy as np

from models.fall.corpus import Candidates

THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.01), 2)
SPEC_WEIGHT = 2.0                # a false alarm costs twice a missed fall when choosing
# A model score over the threshold makes the hub pre-warn (buzzer/LED, "cancel now?") even
# when the posture check then clears it: each such beep in daily life costs an eighth of a
# false alarm. Without this term the choice drifted to thresholds of 0.02-0.08, leaving the
# posture check alone to stop false alarms (and pre-warning in about one daily-activity
# trial in fourteen).
PREWARN_WEIGHT = 0.25


def subject_folds(subjects: list[str], k: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    order = sorted(subjects)
    rng.shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def person_folds(persons: list[str], k: int, seed: int) -> list[list[str]]:
    """Leave-persons-out folds, each data set's people spread over the folds (so every
    fold holds out people of every data set); a person is in exactly one fold, with all
    of their recordings at every position."""
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for ds in sorted({p.split(":")[0] for p in persons}):
        group = [p for p in persons if p.split(":")[0] == ds]
        for i, fold in enumerate(subject_folds(group, k, seed)):
            folds[(i + offset) % k].extend(fold)
        offset += len(group) % k
    return [sorted(f) for f in folds]


def trial_max_confirmed(cands: Candidates, scores: np.ndarray, n_trials: int,
                        confirmed_only: bool = True) -> np.ndarray:
    """Per trial: highest score among candidates the confirmation would confirm (-1 none);
    with ``confirmed_only=False`` among all candidates (what would pre-warn)."""
    best = np.full(n_trials, -1.0)
    ok = cands.confirmed if confirmed_only else np.ones(len(scores), bool)
    np.maximum.at(best, cands.trial[ok], scores[ok])
    return best


def choose_threshold(best: np.ndarray, is_fall: np.ndarray,
                     best_any: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Minimise (1 - sens) + SPEC_WEIGHT * (1 - spec) + PREWARN_WEIGHT * pre-warning rate
    on out-of-fold scores; ``best`` is each trial's highest confirmed score, ``best_any``
    its highest score at all (default ``best``). Where several thresholds tie (the inner
    folds cannot tell them apart), take the highest: in continuous wear false alarms from
    low-scoring everyday impacts dominate. Returns threshold, sens, spec, pre-warning rate."""
    if best_any is None:
        best_any = best
    costs = []
    for thr in THRESHOLDS:
        pred = best >= thr
        sens = pred[is_fall].mean()
        spec = (~pred[~is_fall]).mean()
        prewarn = (best_any[~is_fall] >= thr).mean()
        costs.append(((1 - sens) + SPEC_WEIGHT * (1 - spec) + PREWARN_WEIGHT * prewarn,
                      sens, spec, prewarn))
    c = np.array([x[0] for x in costs])
    tied = np.flatnonzero(np.isclose(c, c.min()))
    i = int(tied[-1])
    return (float(THRESHOLDS[i]), float(costs[i][1]), float(costs[i][2]),
            float(costs[i][3]))
