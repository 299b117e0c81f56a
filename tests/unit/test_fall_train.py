"""The pure parts of models/fall/train.py (TensorFlow is not needed, nor run, here)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import numpy as np
import pytest

from agent.clock import ManualClock, SystemClock
from agent.fall.config import FallConfig
from agent.fall.dataset import load_trials
from agent.fall.evaluation import FallReplayContext
from agent.fall.replay import ReplaySource
from agent.fall.signal import PRE_SAMPLES, WINDOW_SAMPLES
from models.fall.corpus import extract
from models.fall.thresholds import choose_threshold, subject_folds, trial_max_confirmed
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


def test_person_folds_keep_one_person_at_both_positions_in_one_fold() -> None:
    """FallAllD recorded the neck and the waist of the same people at once: a person's
    recordings at both positions are one person, held out together, never in training and
    test at once; every fold holds out people of every data set."""
    from models.fall.corpus import DataSet
    from models.fall.thresholds import person_folds

    persons = [f"sisfall:SA{i:02d}" for i in range(1, 29)] + \
        [f"fallalld:FA{i:02d}" for i in (1, 2, 3, 4, 5, 7, 8, 9)]
    folds = person_folds(persons, 8, seed=20240601)
    flat = [p for f in folds for p in f]
    assert sorted(flat) == sorted(persons) and len(flat) == len(set(flat))
    assert all(any(p.startswith("fallalld:") for p in f) for f in folds)
    assert all(any(p.startswith("sisfall:") for p in f) for f in folds)
    assert person_folds(persons, 8, seed=20240601) == folds
    ds = DataSet.parse("fallalld:neck=../shared/data/fallalld/neck")
    assert (ds.name, ds.position, ds.path.name) == ("fallalld", "neck", "neck")


def test_cv_report_goes_into_the_manifest_per_position(tmp_path) -> None:
    """What each position was trained and validated on, and its held-out figures, land in
    the manifest; the model's own fields stay as they were."""
    import json

    from agent.fall.tflite_model import shipped_model_paths
    from models.fall.cv import markdown, update_manifest

    manifest = tmp_path / "manifest.json"
    original = json.loads(shipped_model_paths()[1].read_text())
    manifest.write_text(json.dumps(original))
    fig = {"sensitivity": 0.9, "sensitivity_floor": 0.95, "recovered_as_warning": 0.8,
           "specificity": 0.99, "continuous_false_alarms": 1, "continuous_hours": 2.0,
           "false_alarms_per_24h": 12.0, "tp": 9, "falls": 10, "tn": 99, "adls": 100}
    report = {"sets": {"fallalld:neck": {"position": "neck", "model": fig},
                       "sisfall:waist": {"position": "waist", "model": fig}},
              "positions": {"neck": {"model": fig}, "waist": {"model": fig}}}
    update_manifest(manifest, report)
    doc = json.loads(manifest.read_text())
    assert doc["sha256"] == original["sha256"]
    assert doc["positions"]["neck"]["validated_on"] == ["fallalld:neck"]
    assert doc["positions"]["waist"]["validated_on"] == ["sisfall:waist"]
    assert "fallalld:neck" in doc["positions"]["waist"]["trained_on"]
    assert doc["positions"]["neck"]["held_out"]["sensitivity_floor"] == 0.95
    table = markdown(report)
    assert "| fallalld:neck | model (held out) | 0.900 (9/10) | 0.950 | 0.800 |" in table
    # The neck's second model: what ships there is the pair (cv --second-folds).
    assert doc["positions"]["neck"]["second_model"]["validated_on"] == ["fallalld:neck"]
    assert doc["positions"]["neck"]["held_out_detector"] == "shipped model alone"
    alone = {**fig, "sensitivity_floor": 0.9}
    report["sets"]["fallalld:neck"]["model_alone"] = alone
    report["second_folds"] = {"neck": "out/neck-folds"}
    update_manifest(manifest, report)
    doc = json.loads(manifest.read_text())
    assert doc["positions"]["neck"]["held_out_detector"].startswith("pair")
    assert "second_model" not in doc["positions"]["waist"]
    table = markdown(report)
    assert "| fallalld:neck | pair, either (held out; ships) | 0.900 (9/10) | 0.950 |" in table
    assert "| fallalld:neck | shipped model alone (held out) | 0.900 (9/10) | 0.900 |" in table
    assert "| all neck | pair (held out) |" in table
    assert "| all waist | model (held out) |" in table


def test_cv_second_folds_must_hold_out_the_same_people(tmp_path) -> None:
    """The pair's folds: a held-out person in the other model's training set would make
    the pair's figures in-sample."""
    import json

    from models.fall.cv import check_same_people, fold_dirs

    for root, people in (("a", ["fallalld:FA01", "sisfall:SA01"]), ("b", ["fallalld:FA01"]),
                         ("c", ["fallalld:FA02"])):
        (tmp_path / root / "fold-0").mkdir(parents=True)
        (tmp_path / root / "fold-0" / "manifest.json").write_text(
            json.dumps({"held_out": people}))
    a, b, c = (fold_dirs(tmp_path / r) for r in "abc")
    check_same_people(a, b, "fallalld")
    with pytest.raises(SystemExit, match="different fallalld people"):
        check_same_people(a, c, "fallalld")


def test_pendant_turn_changes_the_features_only_where_the_window_turns() -> None:
    from agent.fall.signal import model_input
    from models.fall.train import pendant_turn

    rng = np.random.default_rng(0)
    w = np.tile(np.array([0.0, -1.0, 0.0], np.float32), (WINDOW_SAMPLES, 1))
    w[PRE_SAMPLES] = [0.0, -3.0, 0.0]
    turned = pendant_turn(np.stack([w] * 8), rng, 30.0)
    assert np.allclose(np.linalg.norm(turned, axis=2), np.linalg.norm(w, axis=1), atol=1e-5)
    feats = np.stack([model_input(x) for x in turned])
    assert np.allclose(feats[:, :, 0], model_input(w)[:, 0], atol=1e-5)   # |a| unchanged
    assert not np.allclose(feats, model_input(w)[None], atol=1e-2)      # the split moves
    # A constant rotation of a whole window leaves the features as they were.
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    assert np.allclose(model_input(w @ q.T.astype(np.float32)), model_input(w), atol=1e-5)


def test_rule_replay_chooses_each_persons_setting_on_the_others_only() -> None:
    from models.fall.rule_replay import TrialCandidates, figures, leave_one_person_out

    def trial(person: str, kind: str) -> TrialCandidates:
        return TrialCandidates(person, kind, kind != "adl", kind == "rec", [])

    people = ["A", "B", "C"]
    trials = [trial(p, k) for p in people for k in ("floor", "adl", "adl", "adl")]
    # Setting 0 misses every floor fall; setting 1 finds them, and for person C it also
    # alarms on one daily activity.
    c_adl = next(t for t in trials if t.subject == "C" and not t.is_fall)
    run0 = [(t, "none") for t in trials]
    run1 = [(t, "alarm" if t.is_fall or t is c_adl else "none") for t in trials]
    held, chosen = leave_one_person_out([run0, run1])
    assert chosen == {"A": 1, "B": 1, "C": 1}
    f = figures(held)
    assert f["floor"] == "3/3" and f["false_alarms"] == 1 and f["specificity"] == 0.8889
    # A setting that alarms on every daily activity of B and C is not chosen for A: A's
    # choice is made on B and C only.
    run1b = [(t, "alarm" if t.is_fall or t.subject != "A" else "none") for t in trials]
    held, chosen = leave_one_person_out([run0, run1b])
    assert chosen == {"A": 0, "B": 0, "C": 0}
    assert figures(held)["floor"] == "0/3"


def test_rule_replay_reassesses_with_the_runtimes_own_assess() -> None:
    """A replayed candidate keeps what ``assess`` was given, so a rule variant is the
    runtime's verdict with one value changed: here a wearer who sits still, slumped 20 deg
    from upright after the impact, is ``reclined_still`` at the neck and ``not_down`` with
    the rule off (step 3's state)."""
    from agent.fall.confirmation import rule_for
    from agent.fall.signal import POST_SAMPLES
    from models.fall.rule_replay import _candidate, reassess, shipped

    a = np.radians(20.0)
    rng = np.random.default_rng(3)
    acc = np.tile(np.float32([0.0, -1.0, 0.0]), (PRE_SAMPLES + POST_SAMPLES + 600, 1))
    acc[PRE_SAMPLES + 5:] = [0.0, -np.cos(a), np.sin(a)]
    acc[PRE_SAMPLES + 5:] += rng.normal(0, 0.003, acc[PRE_SAMPLES + 5:].shape)
    acc[PRE_SAMPLES] = [0.0, -3.0, 0.0]                     # the impact
    acc[PRE_SAMPLES - 20:PRE_SAMPLES - 10] *= 0.3           # falling freely before it
    acc = acc.astype(np.float32)
    rule = rule_for(FallConfig(position="neck"))
    c = _candidate(acc, PRE_SAMPLES, 3.0, acc[:PRE_SAMPLES + POST_SAMPLES], 0.9,
                   np.float32([0.0, -1.0, 0.0]), rule, 500)
    assert shipped(c, rule).reason == "reclined_still"
    assert reassess()(c, rule) == c.evidence
    assert reassess(reclined_still_g=0.0)(c, rule).reason == "not_down"


def test_rule_replay_judges_the_pose_before_the_impact_at_other_angles() -> None:
    """Step 5's variants: a wearer reclined 60 deg from upright for 7 s (as FallAllD FA05
    lies in bed at the pendant) who then lands softly (2.4 g, no free fall) and lies on the
    other side is a fall for the shipped rules (70 deg), "already lying" when the pose
    before is judged at 55 deg, a fall again at 55 deg with a 2 g soft-impact limit; the
    smooth approach is ``lay_down`` for ``quiet_approach`` under 2.75 g only."""
    from agent.fall.confirmation import rule_for
    from agent.fall.signal import POST_SAMPLES
    from models.fall.rule_replay import (
        LYING_N,
        _candidate,
        approach_spread_g,
        lying_before_at,
        quiet_approach,
        shipped,
    )

    def pose(deg: float) -> list[float]:
        a = np.radians(deg)
        return [0.0, -np.cos(a), np.sin(a)]

    peak = PRE_SAMPLES + LYING_N
    rng = np.random.default_rng(5)
    acc = np.tile(np.float32(pose(60.0)), (peak + POST_SAMPLES + 600, 1))
    acc[peak + 5:] = pose(-60.0)
    acc += rng.normal(0, 0.003, acc.shape)
    acc[peak] = [0.0, -2.4, 0.0]
    acc = acc.astype(np.float32)
    rule = rule_for(FallConfig(position="neck"))
    c = _candidate(acc, peak, 2.4, acc[peak - PRE_SAMPLES:peak + POST_SAMPLES], 0.9,
                   np.float32([0.0, -1.0, 0.0]), rule, 500)
    assert c.before is not None and len(c.before) == LYING_N + PRE_SAMPLES
    assert shipped(c, rule).confirmed
    assert lying_before_at(70.0, 3.0)(c, rule) == c.evidence
    assert lying_before_at(55.0, 3.0)(c, rule).reason == "already_lying"
    assert lying_before_at(55.0, 2.0)(c, rule).confirmed
    assert approach_spread_g(c) < 0.01
    assert quiet_approach(0.14, 2.75)(c, rule).reason == "lay_down"
    assert quiet_approach(0.14, 2.0)(c, rule) == c.evidence
    assert quiet_approach(None, 2.75)(c, rule) == c.evidence


def test_threshold_replay_reproduces_the_training_choice_on_inner_scores() -> None:
    """models.fall.threshold_replay chooses each fold's threshold from the inner scores that
    train --inner-scores-out writes; its shipped rule must choose what train chose
    (choose_threshold), or its held-out figures would not be the shipped rule's."""
    from models.fall.threshold_replay import by_cost, inner_curves, max_sensitivity
    from models.fall.thresholds import PREWARN_WEIGHT, SPEC_WEIGHT

    rng = np.random.default_rng(3)
    n_trials = 40
    persons = np.array([f"ds:P{i % 4}" for i in range(n_trials)])
    is_fall = np.arange(n_trials) % 2 == 0
    recovered = np.arange(n_trials) % 10 == 0
    cand_trial = np.repeat(np.arange(n_trials), 2).astype(np.int32)
    scores = np.clip(np.where(is_fall[cand_trial], 0.7, 0.2)
                     + rng.normal(0, 0.25, len(cand_trial)), 0, 1)
    confirmed = rng.random(len(cand_trial)) < 0.8
    z = {"persons": persons, "is_fall": is_fall, "recovered": recovered,
         "positions": np.array(["neck"] * n_trials), "cand_label": np.zeros(len(cand_trial)),
         "cand_trial": cand_trial, "cand_confirmed": confirmed, "scores_fold-0": scores}
    held = ["ds:P3"]
    curve = inner_curves(z, 0, held, "neck")
    cands = _candidates(cand_trial, confirmed)
    best = trial_max_confirmed(cands, scores, n_trials)
    best_any = trial_max_confirmed(cands, scores, n_trials, confirmed_only=False)
    m = (persons != "ds:P3") & ((is_fall & ~recovered) | ~is_fall)
    thr, sens, spec, _ = choose_threshold(best[m], is_fall[m], best_any[m])
    assert by_cost(SPEC_WEIGHT, PREWARN_WEIGHT)(curve) == pytest.approx(thr)
    # The constrained rule keeps to its specificity where it can.
    t = max_sensitivity(0.9)(curve)
    assert next(x for x in curve if x[0] == t)[2] >= 0.9


def _candidates(trial: np.ndarray, confirmed: np.ndarray) -> Any:
    from models.fall.corpus import Candidates

    return Candidates(np.empty(0), np.zeros(len(trial), np.int8), trial, confirmed)


def test_pair_replay_keeps_a_detection_by_either_models_own_fold_threshold() -> None:
    """models.fall.pair_replay: each model's score is held against its own fold threshold,
    and the runtime's verdict of the candidate decides the outcome."""
    from agent.fall.confirmation import ConfirmRule, Evidence
    from models.fall.pair_replay import pair_outcomes
    from models.fall.rule_replay import Candidate, TrialCandidates

    def cand(score: float, confirmed: bool) -> Candidate:
        ev = Evidence(confirmed, "lying" if confirmed else "not_down", 10.0, 0.0, 0.0, 0.0,
                      0.0)
        z = np.zeros(3)
        return Candidate(score, 3.0, ev, z, z, z.astype(bool), None)

    def trial(code: str, *scores_confirmed: tuple[float, bool]) -> TrialCandidates:
        return TrialCandidates("P1", code, code.startswith("F"), False,
                               [cand(s, c) for s, c in scores_confirmed])

    # Fold 0: the fall is over the first model's threshold (0.5) only, the ADL over the
    # second's (0.2) only.
    first = [[trial("F01_R01", (0.6, True)), trial("D01_R01", (0.1, True))]]
    second = [[trial("F01_R01", (0.1, True)), trial("D01_R01", (0.3, True))]]
    rule = ConfirmRule()

    def outcome(mode: str) -> list[str]:
        return [o for _, o in pair_outcomes(first, second, [0.5], [0.2], mode, rule)]

    assert outcome("shipped") == ["alarm", "none"]
    assert outcome("neck_only") == ["none", "alarm"]
    assert outcome("both") == ["none", "none"]
    assert outcome("either") == ["alarm", "alarm"]


def test_bed_negatives_add_shifted_windows_of_lying_daily_activities_only(
        shared_dir) -> None:
    """``train --bed-negatives``: each daily-activity candidate in a lying context (or that
    the posture check would confirm) also gives its window shifted by each offset, as extra
    negatives that are trained on but never scored; falls (out of bed too) give none, and
    without offsets the candidates are exactly today's."""
    trials = [t for t in load_trials(shared_dir / "data" / "fallalld" / "neck", {"FA05"})
              if t.code.split("_")[0] in ("D01", "D19", "F27")]
    plain = extract(trials, FallConfig(position="neck"))
    offsets = (-10, 5)
    c = extract(trials, FallConfig(position="neck"), offsets)
    assert plain.extra_windows is None and plain.extra_trial is None
    np.testing.assert_array_equal(plain.windows, c.windows)
    np.testing.assert_array_equal(plain.label, c.label)
    assert c.extra_windows is not None and c.extra_trial is not None
    assert len(c.extra_windows) == len(c.extra_trial) > 0
    kinds = {trials[i].code.split("_")[0] for i in c.extra_trial}
    assert kinds == {"D19"}, kinds          # turning over in bed; not walking, not falls
    # The extras are the runtime's windows at the offsets from a candidate's peak: the
    # first extra of a trial (offset -10) is a candidate's window 10 samples earlier.
    first = int(c.extra_trial[0])
    cand = c.windows[np.flatnonzero(c.trial == first)]
    early = c.extra_windows[0]
    assert any(np.array_equal(early[10:], w[:-10]) for w in cand)
    assert not any(np.array_equal(early, w) for w in cand)


def test_upright_channel_is_the_pose_from_the_learnt_upright_and_turns_with_the_wearable(
) -> None:
    """``train --upright-channel`` (step 8, tried): a fourth input channel, each sample along
    the upright learnt from walking; the first three are the runtime's. Lying before the
    impact reads about 0, upright about 1 g; without an upright it is the component along
    the window's first second (as if upright before); a constant rotation of the wearable
    and its learnt upright together changes nothing (mount independence kept)."""
    from agent.fall.signal import model_input
    from models.fall.corpus import features, upright_input

    rng = np.random.default_rng(3)
    lying = np.tile(np.array([0.0, 0.0, 1.0], np.float32), (WINDOW_SAMPLES, 1))
    lying += rng.normal(0, 0.02, lying.shape).astype(np.float32)
    up = np.array([0.0, -1.0, 0.0], np.float32)
    x = upright_input(lying, up)
    assert x.shape == (WINDOW_SAMPLES, 4)
    np.testing.assert_array_equal(x[:, :3], model_input(lying))
    assert np.abs(x[:, 3]).max() < 0.1                       # lying: nothing along upright
    standing = np.tile(up, (WINDOW_SAMPLES, 1))              # (0, -1, 0) g: upright
    assert np.allclose(upright_input(standing, up)[:, 3], 1.0, atol=1e-6)  # log2(1 + 1)
    # Unknown upright: the window's own first second stands in (about 1 g along it).
    np.testing.assert_allclose(upright_input(lying, None)[:, 3],
                               upright_input(lying, np.full(3, np.nan))[:, 3])
    assert upright_input(lying, None)[:, 3].mean() > 0.9
    # Rotate the wearable and its upright by the same constant rotation: same input.
    a = np.radians(40.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]],
                   np.float32)
    np.testing.assert_allclose(upright_input(lying @ rot.T, up @ rot.T), x, atol=1e-5)
    f = features(np.stack([lying, standing]), np.stack([up, np.full(3, np.nan, np.float32)]))
    assert f.shape == (2, WINDOW_SAMPLES, 4)
    assert features(np.stack([lying])).shape == (1, WINDOW_SAMPLES, 3)


def test_pair_replay_either_both_if_lying_needs_both_models_only_after_lying() -> None:
    """Step 8's pair mode (tried, not shipped): "either", except that a candidate whose
    wearer was lying before it (a second of the 5 s before the window, or the window's
    first second, at lying_before_deg from the learnt upright) needs both models."""
    from agent.fall.confirmation import ConfirmRule, Evidence
    from models.fall.pair_replay import pair_outcomes
    from models.fall.rule_replay import Candidate, TrialCandidates

    rule = ConfirmRule()

    def cand(score: float, lying_s: float | None, pre_tilt: float | None) -> Candidate:
        ev = Evidence(True, "lying", 10.0, 0.0, 0.0, 0.0, 0.0, lying_before_s=lying_s)
        z = np.zeros(3)
        return Candidate(score, 3.0, ev, z, z, z.astype(bool), pre_tilt)

    cases = [(None, 10.0), (0.0, 10.0), (1.0, 10.0), (None, rule.lying_before_deg),
             (0.0, rule.lying_before_deg - 1)]
    # every trial: the first model passes (0.6 >= 0.5), the second does not (0.1 < 0.2)
    first = [[TrialCandidates("P1", f"D{i:02d}_R01", False, False, [cand(0.6, s, t)])
              for i, (s, t) in enumerate(cases)]]
    second = [[TrialCandidates("P1", f"D{i:02d}_R01", False, False, [cand(0.1, s, t)])
               for i, (s, t) in enumerate(cases)]]
    got = [o for _, o in pair_outcomes(first, second, [0.5], [0.2], "either_both_if_lying",
                                       rule)]
    assert got == ["alarm", "alarm", "none", "none", "alarm"]
    assert [o for _, o in pair_outcomes(first, second, [0.5], [0.2], "either", rule)] == [
        "alarm"] * 5
