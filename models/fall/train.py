"""Train, cross-validate and export the fall model (``fall.tflite`` + ``manifest.json``).

Reproducible from ``../shared/data/fall`` (SisFall at 50 Hz), from the repository root::

    python3 -m venv .trainvenv && .trainvenv/bin/pip install '.[train]'
    .trainvenv/bin/python -m models.fall.train --data ../shared/data/fall

About 11 minutes on two cores (seven outer folds, each with three inner folds, then the
shipped model; ``--skip-cv`` trains only the shipped model). Seeded, with deterministic
TensorFlow ops: the same TensorFlow version (recorded in the manifest's ``code``) gives the
same bytes.

Design (see models/fall/README.md):

- candidates come from the runtime's own impact gate (:mod:`agent.fall.gate`) run over each
  recording, windows and features from :mod:`agent.fall.signal`: what the model learns on is
  what the hub computes;
- labels: in a fall recording the candidate at the largest |a| (the unlabelled impact) is
  positive, candidates more than 3 s before it are negative (walking or jogging before the
  fall), others are left out; every candidate of a daily-activity recording is negative;
- leave-subjects-out cross-validation: subjects are split into ``--folds`` groups; for each
  outer fold the decision threshold is chosen on out-of-fold scores of an inner group k-fold
  over the *training* subjects only, then a model trained on all training subjects is
  converted to int8 and run over the held-out subjects through the runtime path
  (:class:`agent.fall.evaluation.Evaluator`). Only those held-out figures are reported;
- the shipped model repeats the same procedure on all subjects.

Seeds fix NumPy, Python and TensorFlow; TensorFlow runs deterministic ops on two threads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.calibration import UprightCalibration
from agent.fall.config import FallConfig
from agent.fall.confirmation import ConfirmRule, assess
from agent.fall.dataset import Trial, data_version, load_trials
from agent.fall.evaluation import (
    ContinuousResult,
    Evaluator,
    TrialResult,
    pad_recording,
    priming_segments,
    published_threshold_summary,
    shuffled_summary,
    summarize,
)
from agent.fall.gate import find_peaks
from agent.fall.scoring import PeakThresholdScorer
from agent.fall.signal import (
    FEATURES,
    INPUT_TRANSFORM,
    PEAK_RADIUS,
    POST_SAMPLES,
    PRE_SAMPLES,
    REF_SAMPLES,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    gravity_reference,
    magnitude,
    model_input,
    window_at,
)
from agent.fall.tflite_model import TfliteFallModel

log = logging.getLogger("train")

HERE = Path(__file__).resolve().parent
MODEL_NAME = "fall-cnn"
MODEL_MAJOR = 1
POSITIVE_TOLERANCE = 25          # candidate within 0.5 s of the largest |a|
NEGATIVE_BEFORE = 150            # candidates more than 3 s before the impact
THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.01), 2)
SPEC_WEIGHT = 2.0                # a false alarm costs twice a missed fall when choosing
# A model score over the threshold makes the hub pre-warn (buzzer/LED, "cancel now?") even
# when the posture check then clears it: each such beep in daily life costs an eighth of a
# false alarm. Without this term the choice drifted to thresholds of 0.02-0.08, leaving the
# posture check alone to stop false alarms (and pre-warning in about one daily-activity
# trial in fourteen).
PREWARN_WEIGHT = 0.25


@dataclass
class Candidates:
    windows: np.ndarray          # (N, 200, 3) raw acceleration, g
    label: np.ndarray            # 1 fall impact, 0 not a fall, -1 unlabelled (not trained on)
    trial: np.ndarray            # index into trials
    confirmed: np.ndarray        # runtime confirmation would confirm it


def extract(trials: list[Trial], cfg: FallConfig) -> Candidates:
    """Every gate candidate, with its label and whether the runtime would confirm it
    (posture measured against the upright learnt from the subject's own walking, as in
    :class:`agent.fall.evaluation.Evaluator`)."""
    rule = ConfirmRule(cfg.lying_tilt_deg, cfg.slumped_tilt_deg, cfg.still_g,
                       cfg.lying_before_deg)
    confirm_n = int(round(cfg.confirm_s * SAMPLE_RATE_HZ))
    primes = priming_segments(trials)
    wins, labels, idx, conf = [], [], [], []
    for ti, trial in enumerate(trials):
        acc = pad_recording(trial.samples, cfg)[:, :3].astype(np.float32) * 1e-3
        impact = trial.impact_index()
        cal = UprightCalibration()
        if trial.subject in primes:
            cal.feed(primes[trial.subject][:, :3].astype(np.float32) * 1e-3)
            cal.reset_partial()
        fed = 0
        for peak, _g in find_peaks(magnitude(acc), cfg.gate_g):
            if peak + POST_SAMPLES > len(acc):
                continue
            cal.feed(acc[fed:peak + POST_SAMPLES])
            fed = peak + POST_SAMPLES
            w = window_at(acc, peak)
            if trial.is_fall:
                if abs(peak - impact) <= POSITIVE_TOLERANCE:
                    label = 1
                elif peak < impact - NEGATIVE_BEFORE:
                    label = 0
                else:
                    label = -1
            else:
                label = 0
            d = peak + POST_SAMPLES
            ev = assess(acc[d:d + confirm_n], gravity_reference(w), rule, SAMPLE_RATE_HZ,
                        cal.upright)
            wins.append(w)
            labels.append(label)
            idx.append(ti)
            conf.append(ev.confirmed)
    return Candidates(np.stack(wins).astype(np.float32), np.array(labels, np.int8),
                      np.array(idx, np.int32), np.array(conf, bool))


def features(windows: np.ndarray) -> np.ndarray:
    return np.stack([model_input(w) for w in windows]).astype(np.float32)


def subject_folds(subjects: list[str], k: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    order = sorted(subjects)
    rng.shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


# ---- model ------------------------------------------------------------------------------
def set_seeds(seed: int) -> None:
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)


def build_model() -> Any:
    """Every layer is named: Keras otherwise numbers them by how many models the process built
    before, and the names end up in the .tflite, so ``--skip-cv`` would give other bytes."""
    from tensorflow import keras

    layers = keras.layers
    inp = keras.Input((WINDOW_SAMPLES, len(FEATURES)), name="window")
    x = layers.Conv1D(16, 7, strides=2, padding="same", activation="relu", name="conv1")(inp)
    x = layers.Conv1D(24, 5, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Conv1D(32, 5, strides=2, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv1D(32, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Concatenate(name="pools")([layers.GlobalAveragePooling1D(name="avg")(x),
                                          layers.GlobalMaxPooling1D(name="max")(x)])
    x = layers.Dropout(0.2, name="dropout")(x)
    x = layers.Dense(16, activation="relu", name="dense")(x)
    out = layers.Dense(1, activation="sigmoid", name="fall")(x)
    model = keras.Model(inp, out, name="fall_cnn")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return model


def augment(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor gain differences between wearables: a random gain of 0.9-1.1 per window
    (the features are invariant to how the wearable is rotated, not to its gain)."""
    gains = rng.uniform(0.9, 1.1, size=(len(windows), 1, 1)).astype(np.float32)
    return windows * gains


def fit(cands: Candidates, mask: np.ndarray, seed: int, epochs: int) -> Any:
    set_seeds(seed)
    rng = np.random.default_rng(seed)
    sel = mask & (cands.label >= 0)
    raw = cands.windows[sel]
    y = cands.label[sel].astype(np.float32)
    x = np.concatenate([features(raw), features(augment(raw, rng))])
    y = np.concatenate([y, y])
    pos = float(y.sum())
    w = np.where(y > 0.5, (len(y) - pos) / max(pos, 1.0), 1.0).astype(np.float32)
    w = np.minimum(w, 20.0)
    model = build_model()
    model.fit(x, y, sample_weight=w, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model


def predict(model: Any, windows: np.ndarray) -> np.ndarray:
    return model.predict(features(windows), batch_size=512, verbose=0).reshape(-1)


def to_int8(model: Any, rep: np.ndarray) -> bytes:
    import tensorflow as tf

    def representative() -> Any:
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


# ---- threshold --------------------------------------------------------------------------
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


def select_threshold(cands: Candidates, trials: list[Trial], subjects: list[str],
                     inner_k: int, seed: int, epochs: int) -> dict[str, Any]:
    """Inner group k-fold over ``subjects`` only: out-of-fold scores -> threshold."""
    subj = np.array([t.subject for t in trials])
    is_fall = np.array([t.is_fall for t in trials])
    in_set = np.isin(subj, subjects)
    oof = np.full(len(cands.label), np.nan)
    for j, inner in enumerate(subject_folds(subjects, inner_k, seed + 1000)):
        held = np.isin(subj[cands.trial], inner)
        train = np.isin(subj[cands.trial], subjects) & ~held
        model = fit(cands, train, seed + 10 * j + 1, epochs)
        oof[held] = predict(model, cands.windows[held])
    scores = np.nan_to_num(oof, nan=-1.0)
    best = trial_max_confirmed(cands, scores, len(trials))
    best_any = trial_max_confirmed(cands, scores, len(trials), confirmed_only=False)
    thr, sens, spec, prewarn = choose_threshold(best[in_set], is_fall[in_set],
                                                best_any[in_set])
    return {"threshold": thr, "inner_sensitivity": round(sens, 4),
            "inner_specificity": round(spec, 4), "inner_prewarning_rate": round(prewarn, 4)}


# ---- packaging --------------------------------------------------------------------------
def manifest_for(tflite: bytes, threshold: float, cfg: FallConfig, extra: dict[str, Any]
                 ) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    sha = hashlib.sha256(tflite).hexdigest()
    return {
        "format": 1,
        "name": MODEL_NAME,
        "version": f"{MODEL_MAJOR}.0+{sha[:8]}",
        "file": "fall.tflite",
        "sha256": sha,
        "size_bytes": len(tflite),
        "input": {
            "shape": [int(x) for x in inp["shape"]],
            "dtype": "int8",
            "scale": float(inp["quantization"][0]),
            "zero_point": int(inp["quantization"][1]),
            "features": list(FEATURES),
            "transform": INPUT_TRANSFORM,
            "reference": "unit mean acceleration over the first 1 s of the window",
        },
        "output": {
            "dtype": "int8",
            "scale": float(out["quantization"][0]),
            "zero_point": int(out["quantization"][1]),
            "meaning": "probability that the window holds a fall impact",
        },
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "window": {
            "samples": WINDOW_SAMPLES,
            "pre_samples": PRE_SAMPLES,
            "post_samples": POST_SAMPLES,
            "reference_samples": REF_SAMPLES,
            "stride": "event-driven: one window per impact-gate peak",
            "peak_radius_samples": PEAK_RADIUS,
        },
        "gate_g": cfg.gate_g,
        "decision_threshold": threshold,
        "confirmation": {"confirm_s": cfg.confirm_s, "lying_tilt_deg": cfg.lying_tilt_deg,
                         "slumped_tilt_deg": cfg.slumped_tilt_deg, "still_g": cfg.still_g,
                         "lying_before_deg": cfg.lying_before_deg},
        **extra,
    }


def write_model(out_dir: Path, tflite: bytes, manifest: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fall.tflite").write_bytes(tflite)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def code_version() -> dict[str, Any]:
    import tensorflow as tf

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "train_py_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
    }


# ---- main -------------------------------------------------------------------------------
def evaluate_fold(tflite: bytes, threshold: float, cfg: FallConfig, trials: list[Trial],
                  extra: dict[str, Any], save: Path | None = None, orders: int = 0
                  ) -> tuple[list[TrialResult], list[ContinuousResult],
                             list[list[ContinuousResult]]]:
    """Held-out trials, the continuous test and ``orders`` shuffled continuous tests,
    through the runtime path."""
    with tempfile.TemporaryDirectory() as tmp:
        out = save or Path(tmp)
        write_model(out, tflite, manifest_for(tflite, threshold, cfg, extra))
        scorer = TfliteFallModel(out / "fall.tflite", interpreter="ai_edge_litert")
        evaluator = Evaluator(scorer, cfg)
        res, cont = evaluator.run(trials, continuous=True)
        return res, cont, evaluator.run_shuffled(trials, orders) if orders else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--folds", type=int, default=7)
    ap.add_argument("--inner-folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--skip-cv", action="store_true", help="only train the shipped model")
    ap.add_argument("--subjects", help="comma-separated subset (smoke tests)")
    ap.add_argument("--report", type=Path, help="write the CV report JSON here as well")
    ap.add_argument("--save-folds", type=Path, help="keep each fold's model in DIR/fold-K/")
    ap.add_argument("--shuffled-orders", type=int, default=5,
                    help="continuous test also in N seeded random orders of the recordings")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("agent").setLevel(logging.ERROR)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()

    cfg = FallConfig()
    t_start = time.monotonic()
    wanted = set(args.subjects.split(",")) if args.subjects else None
    trials = load_trials(args.data, wanted)
    subjects = sorted({t.subject for t in trials})
    cands = extract(trials, cfg)
    log.info("%d trials, %d subjects, %d candidates (%d falls, %d not, %d unlabelled)",
             len(trials), len(subjects), len(cands.label), (cands.label == 1).sum(),
             (cands.label == 0).sum(), (cands.label == -1).sum())
    subj_of_cand = np.array([trials[i].subject for i in cands.trial])
    data = {"source": "SisFall (Sucerquia et al., Sensors 2017), waist, 50 Hz",
            "sha256": data_version(args.data), "subjects": subjects,
            "trials": len(trials), "candidates": int(len(cands.label))}
    code = code_version()
    code["seed"] = args.seed
    report: dict[str, Any] = {"data": data, "code": code, "folds": []}

    if not args.skip_cv:
        all_results: list[TrialResult] = []
        all_cont: list[ContinuousResult] = []
        all_orders: list[list[ContinuousResult]] = [[] for _ in range(args.shuffled_orders)]
        for k, held in enumerate(subject_folds(subjects, args.folds, args.seed)):
            t0 = time.monotonic()
            train_subj = [s for s in subjects if s not in held]
            sel = select_threshold(cands, trials, train_subj, args.inner_folds,
                                   args.seed + 100 * (k + 1), args.epochs)
            model = fit(cands, np.isin(subj_of_cand, train_subj), args.seed + k, args.epochs)
            rep = features(cands.windows[np.isin(subj_of_cand, train_subj)][::7][:400])
            tflite = to_int8(model, rep)
            held_trials = [t for t in trials if t.subject in held]
            save = args.save_folds / f"fold-{k}" if args.save_folds else None
            res, cont, orders = evaluate_fold(tflite, sel["threshold"], cfg, held_trials,
                                              {"held_out": held}, save, args.shuffled_orders)
            all_results.extend(res)
            all_cont.extend(cont)
            for i, streams in enumerate(orders):
                all_orders[i].extend(streams)
            s = summarize(res, cont)
            fold = {"fold": k, "held_out": held, **sel, "sensitivity": s["sensitivity"],
                    "specificity": s["specificity"], "fn": s["fn"], "fp": s["fp"],
                    "continuous_hours": s["continuous_hours"],
                    "continuous_false_alarms": s["continuous_false_alarms"],
                    "continuous_false_alarms_at_junctions":
                        s["continuous_false_alarms_at_junctions"],
                    "shuffled_false_alarms": [sum(c.alarms for c in o) for o in orders],
                    "seconds": round(time.monotonic() - t0, 1)}
            report["folds"].append(fold)
            log.info("fold %d %s", k, json.dumps(fold))
        cv = summarize(all_results, all_cont)
        base_eval = Evaluator(PeakThresholdScorer(cfg.baseline_peak_g), cfg)
        base_results, base_cont = base_eval.run(trials, continuous=True)
        base = summarize(base_results, base_cont)
        keys = ("trials", "falls", "adls", "sensitivity", "specificity", "f1", "tp", "fp", "fn",
                "tn", "detection_delay_s_p50", "false_alarms_per_hour", "false_alarms_per_24h",
                "continuous_hours", "continuous_false_alarms",
                "continuous_false_alarms_at_junctions", "continuous_junction_exposure")
        report["cv"] = {key: cv[key] for key in keys}
        if args.shuffled_orders:
            report["cv"]["continuous_shuffled"] = shuffled_summary(all_orders)
            base["continuous_shuffled"] = shuffled_summary(
                base_eval.run_shuffled(trials, args.shuffled_orders))
            keys += ("continuous_shuffled",)
        report["cv"]["per_subject"] = {
            s: {k2: v[k2] for k2 in ("sensitivity", "specificity", "missed", "false_alarms",
                                     "continuous_false_alarms")}
            for s, v in cv["per_subject"].items()}
        report["baseline"] = {key: base[key] for key in keys if key != "trials"}
        report["baseline"]["detector"] = PeakThresholdScorer(cfg.baseline_peak_g).version
        report["baseline_published"] = published_threshold_summary(trials, cfg.baseline_peak_g)
        log.info("CV %s", json.dumps({k: v for k, v in report["cv"].items()
                                       if k != "per_subject"}))
        log.info("baseline %s", json.dumps(report["baseline"]))

    t0 = time.monotonic()
    sel = select_threshold(cands, trials, subjects, args.inner_folds, args.seed, args.epochs)
    model = fit(cands, np.ones(len(cands.label), bool), args.seed, args.epochs)
    tflite = to_int8(model, features(cands.windows[::7][:400]))
    extra = {"data": data, "code": code,
             "threshold_selection": {**sel, "rule": f"min (1-sens) + {SPEC_WEIGHT}*(1-spec) + "
                                     f"{PREWARN_WEIGHT}*(ADL pre-warning rate) on inner "
                                     "group-k-fold out-of-fold scores, highest of ties"},
             "cv": {k: report[k] for k in ("cv", "baseline", "baseline_published", "folds")
                    if k in report}}
    manifest = manifest_for(tflite, sel["threshold"], cfg, extra)
    write_model(args.out, tflite, manifest)
    log.info("final model %s: %d bytes, threshold %.2f (%.0f s); total %.0f s",
             manifest["version"], len(tflite), sel["threshold"], time.monotonic() - t0,
             time.monotonic() - t_start)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
