"""The pure parts of models/fall/train.py (TensorFlow is not needed, nor run, here)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import numpy as np
import pytest

from agent.clock import ManualClock, SystemClock
from agent.fall.config import FallConfig
from agent.fall.dataset import load_trials
from agent.fall.evaluation import FallReplayContext
from agent.fall.replay import ReplaySource
from agent.fall.signal import PRE_SAMPLES, WINDOW_SAMPLES
from models.fall.train import choose_threshold, extract, subject_folds, trial_max_confirmed
from tests.unit.fall_helpers import FIXTURES, recording


def test_candidates_are_labelled_from_the_runtime_gate() -> None:
    trials = load_trials(FIXTURES)
    c = extract(trials, FallConfig())
    assert c.windows.shape[1:] == (WINDOW_SAMPLES, 3)
    fall_idx = next(i for i, t in enumerate(trials) if t.is_fall)
    pos = np.flatnonzero(c.label == 1)
    assert len(pos) == 1 and c.trial[pos[0]] == fall_idx
    # The positive window is centred on the recording's largest |a| and would be confirmed.
    w = c.windows[pos[0]]
    assert np.argmax(np.linalg.norm(w, axis=1)) == PRE_SAMPLES
    assert c.confirmed[pos[0]]
    # Every candidate of a daily-activity recording is a negative.
    adl = [i for i, t in enumerate(trials) if not t.is_fall]
    assert set(c.label[np.isin(c.trial, adl)]) <= {0}


def test_folds_split_subjects_not_trials_and_are_seeded() -> None:
    subjects = [f"S{i:02d}" for i in range(28)]
    folds = subject_folds(subjects, 7, seed=1)
    assert sorted(s for f in folds for s in f) == subjects
    assert all(len(f) == 4 for f in folds)
    assert folds == subject_folds(subjects, 7, seed=1) != subject_folds(subjects, 7, seed=2)


def test_threshold_choice_weighs_false_alarms_and_takes_the_highest_tie() -> None:
    best = np.array([0.95, 0.9, 0.5, 0.1, 0.2, 0.3])
    is_fall = np.array([True, True, True, False, False, False])
    thr, sens, spec, prewarn = choose_threshold(best, is_fall)
    assert (sens, spec, prewarn) == (1.0, 1.0, 0.0) and thr == pytest.approx(0.5)


def test_threshold_choice_counts_pre_warnings_the_posture_check_cleared() -> None:
    # One fall scores only 0.2; ADLs score up to 0.9 but the posture check clears them all.
    is_fall = np.array([True] * 8 + [False] * 8)
    confirmed = np.array([0.95] * 7 + [0.2] + [-1.0] * 8)
    seen = np.concatenate([confirmed[:8], [0.9, 0.85, 0.8, 0.75, 0.7, 0.1, 0.1, 0.1]])
    thr, sens, spec, _ = choose_threshold(confirmed, is_fall)
    assert thr == pytest.approx(0.2) and sens == 1.0           # alarms alone: catch every fall
    thr, sens, spec, prewarn = choose_threshold(confirmed, is_fall, seen)
    # Five beeps in eight ADLs (cost 0.25 * 5/8) outweigh one missed fall in eight (1/8).
    assert 0.9 < thr <= 0.95 and sens == 0.875 and prewarn == 0.0


def test_trial_score_counts_only_confirmed_candidates() -> None:
    class C:
        trial = np.array([0, 0, 1])
        confirmed = np.array([False, True, False])

    best = trial_max_confirmed(C(), np.array([0.9, 0.4, 0.8]), 2)  # type: ignore[arg-type]
    assert best.tolist() == [0.4, -1.0]
    anyc = trial_max_confirmed(C(), np.array([0.9, 0.4, 0.8]), 2,  # type: ignore[arg-type]
                               confirmed_only=False)
    assert anyc.tolist() == [0.9, 0.8]


def test_paced_replay_emits_in_real_time() -> None:
    got = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            ctx = FallReplayContext(loop, ex, ManualClock())
            ctx.clock = SystemClock(assume_synced=True)
            ctx.subscribe_readings(got.append)
            src = ReplaySource("wear-1", recording("D07_R01")[:50], paced=True)
            start = loop.time()
            await src.start(ctx)
            await asyncio.wait_for(src.done.wait(), 5)
            await src.stop()
            return loop.time() - start

    elapsed = asyncio.run(main())
    assert len(got) == 2 and 0.4 < elapsed < 3.0
    assert got[1].data["t0"] - got[0].data["t0"] == pytest.approx(0.5)
