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
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.calibration import UprightCalibration
from agent.fall.config import FallConfig
from agent.fall.confirmation import LAY_DOWN_POSITIONS, LYING_BEFORE_S, assess, rule_for
from agent.fall.dataset import Trial, data_version, load_trials
from agent.fall.evaluation import (
    pad_recording,
    priming_segments,
)
from agent.fall.gate import find_peaks
from agent.fall.signal import (
    FEATURES,
    INPUT_TRANSFORM,
    PEAK_RADIUS,
    POST_SAMPLES,
    PRE_SAMPLES,
    REF_SAMPLES,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    free_fall_min_g,
    gravity_reference,
    magnitude,
    model_input,
    window_at,
)
from agent.fall.stream import lying_seconds

log = logging.getLogger("train")

HERE = Path(__file__).resolve().parent
MODEL_NAME = "fall-cnn"
MODEL_MAJOR = 2
LYING_N = int(LYING_BEFORE_S * SAMPLE_RATE_HZ)
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
    weight: np.ndarray | None = None  # per-candidate training weight (position balance)


def extract(trials: list[Trial], cfg: FallConfig) -> Candidates:
    """Every gate candidate, with its label and whether the runtime would confirm it
    (posture measured against the upright learnt from the subject's own walking, as in
    :class:`agent.fall.evaluation.Evaluator`)."""
    rule = rule_for(cfg)
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
            up = cal.upright
            before = acc[max(0, peak - PRE_SAMPLES - LYING_N):max(0, peak - PRE_SAMPLES)]
            lying_before = (lying_seconds(before, up, rule.lying_before_deg)
                            if up is not None and len(before) == LYING_N else None)
            ev = assess(acc[d:d + confirm_n], gravity_reference(w), rule, SAMPLE_RATE_HZ, up,
                        lead=acc[peak:d], lying_before_s=lying_before, peak_g=float(_g),
                        free_fall_min=free_fall_min_g(w))
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
    if cands.weight is not None:
        w = w * np.concatenate([cands.weight[sel], cands.weight[sel]]).astype(np.float32)
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


def select_thresholds(cands: Candidates, trials: list[Trial], positions: np.ndarray,
                      persons: np.ndarray, train: list[str], inner_k: int, seed: int,
                      epochs: int) -> dict[str, dict[str, Any]]:
    """Inner group k-fold over the ``train`` persons only: out-of-fold scores -> one
    threshold per position, each chosen on that position's trials (recovered falls are
    left out of the sensitivity: they should not alarm)."""
    sensitive = np.array([t.is_fall and not t.recovered for t in trials])
    is_fall = np.array([t.is_fall for t in trials])
    in_set = np.isin(persons, train)
    cand_person = persons[cands.trial]
    oof = np.full(len(cands.label), np.nan)
    for j, inner in enumerate(person_folds(train, inner_k, seed + 1000)):
        held = np.isin(cand_person, inner)
        fit_mask = np.isin(cand_person, train) & ~held
        model = fit(cands, fit_mask, seed + 10 * j + 1, epochs)
        oof[held] = predict(model, cands.windows[held])
    scores = np.nan_to_num(oof, nan=-1.0)
    best = trial_max_confirmed(cands, scores, len(trials))
    best_any = trial_max_confirmed(cands, scores, len(trials), confirmed_only=False)
    out = {}
    for pos in sorted(set(positions.tolist())):
        m = in_set & (positions == pos) & (sensitive | ~is_fall)
        thr, sens, spec, prewarn = choose_threshold(best[m], is_fall[m], best_any[m])
        out[pos] = {"decision_threshold": thr, "inner_sensitivity": round(sens, 4),
                    "inner_specificity": round(spec, 4),
                    "inner_prewarning_rate": round(prewarn, 4)}
    return out


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


# ---- packaging --------------------------------------------------------------------------
def manifest_for(tflite: bytes, threshold: float, cfg: FallConfig, extra: dict[str, Any]
                 ) -> dict[str, Any]:
    """``extra`` may hold ``positions`` {position: {decision_threshold, ...}}: the runtime
    takes the threshold of its configured position."""
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
                         "lying_before_deg": cfg.lying_before_deg,
                         "lying_before_s": LYING_BEFORE_S,
                         "already_lying_max_g": cfg.already_lying_max_g,
                         "lay_down_max_g": cfg.lay_down_max_g, "free_fall_g": cfg.free_fall_g,
                         "lay_down_positions": list(LAY_DOWN_POSITIONS)},
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
@dataclass(frozen=True)
class DataSet:
    name: str        # sisfall, fallalld: people with the same name and subject are one person
    position: str    # neck | waist
    path: Path

    @classmethod
    def parse(cls, text: str) -> DataSet:
        """``NAME:POSITION=DIR``, e.g. ``fallalld:neck=../shared/data/fallalld/neck``."""
        try:
            head, path = text.split("=", 1)
            name, position = head.split(":", 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:POSITION=DIR") from None
        return cls(name, position, Path(path))


@dataclass
class Corpus:
    trials: list[Trial]
    persons: np.ndarray       # per trial: "dataset:subject"
    positions: np.ndarray     # per trial
    groups: np.ndarray        # per trial: "dataset:position"
    cands: Candidates

    def balance_positions(self) -> None:
        """Weigh each position's candidates to the same total (the neck has a quarter of the
        candidates). Tried once, not adopted: held out, the neck got worse (README)."""
        pos = self.positions[self.cands.trial]
        names, counts = np.unique(pos, return_counts=True)
        share = dict(zip(names.tolist(), counts.tolist(), strict=True))
        self.cands.weight = np.array([len(pos) / (len(share) * share[p]) for p in pos],
                                     np.float32)

    @classmethod
    def load(cls, sets: list[DataSet], cfg: FallConfig, wanted: set[str] | None) -> Corpus:
        """Candidates are extracted per data set and position: priming (the subject's own
        walking) never mixes positions."""
        trials: list[Trial] = []
        persons, positions, groups, parts = [], [], [], []
        for ds in sets:
            ts = load_trials(ds.path, wanted)
            c = extract(ts, replace(cfg, position=ds.position))
            c.trial += len(trials)
            parts.append(c)
            trials.extend(ts)
            persons += [f"{ds.name}:{t.subject}" for t in ts]
            positions += [ds.position] * len(ts)
            groups += [f"{ds.name}:{ds.position}"] * len(ts)
        cands = Candidates(np.concatenate([c.windows for c in parts]),
                           np.concatenate([c.label for c in parts]),
                           np.concatenate([c.trial for c in parts]),
                           np.concatenate([c.confirmed for c in parts]))
        return cls(trials, np.array(persons), np.array(positions), np.array(groups), cands)


def train_one(corpus: Corpus, train: list[str], seed: int, inner_k: int, epochs: int
              ) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """Per-position thresholds from inner folds over ``train``, then the int8 model trained
    on all of ``train``."""
    cands = corpus.cands
    sel = select_thresholds(cands, corpus.trials, corpus.positions, corpus.persons, train,
                            inner_k, seed, epochs)
    mask = np.isin(corpus.persons[cands.trial], train)
    model = fit(cands, mask, seed, epochs)
    return to_int8(model, features(cands.windows[mask][::7][:400])), sel


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=DataSet.parse, action="append", required=True,
                    metavar="NAME:POSITION=DIR",
                    help="a data set at one position (repeat; the same NAME and subject at two "
                         "positions is one person, kept in one fold)")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--inner-folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--skip-cv", action="store_true", help="only train the shipped model")
    ap.add_argument("--subjects", help="comma-separated subset (smoke tests)")
    ap.add_argument("--balance-positions", action="store_true",
                    help="weigh each position's candidates to the same total (tried for the "
                         "neck, not adopted: see models/fall/README.md)")
    ap.add_argument("--folds-out", type=Path, default=Path("out/cv-folds"),
                    help="each fold's model in DIR/fold-K/ (evaluated by models.fall.cv)")
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
    corpus = Corpus.load(args.data, cfg, wanted)
    if args.balance_positions:
        corpus.balance_positions()
    cands = corpus.cands
    persons = sorted(set(corpus.persons.tolist()))
    log.info("%d trials, %d people, %d candidates (%d falls, %d not, %d unlabelled)",
             len(corpus.trials), len(persons), len(cands.label), (cands.label == 1).sum(),
             (cands.label == 0).sum(), (cands.label == -1).sum())
    data = {"sets": [{"name": ds.name, "position": ds.position, "sha256": data_version(ds.path),
                      "trials": int(np.sum(corpus.groups == f"{ds.name}:{ds.position}"))}
                     for ds in args.data],
            "subjects": persons, "trials": len(corpus.trials),
            "candidates": int(len(cands.label))}
    code = code_version()
    code["seed"] = args.seed
    code["balance_positions"] = bool(args.balance_positions)
    folds = person_folds(persons, args.folds, args.seed)
    if not args.skip_cv:
        for k, held in enumerate(folds):
            t0 = time.monotonic()
            train = [p for p in persons if p not in held]
            tflite, sel = train_one(corpus, train, args.seed + 100 * (k + 1), args.inner_folds,
                                    args.epochs)
            extra = {"positions": sel, "held_out": held, "fold": k, "data": data, "code": code}
            write_model(args.folds_out / f"fold-{k}", tflite,
                        manifest_for(tflite, sel["neck"]["decision_threshold"]
                                     if "neck" in sel else 0.5, cfg, extra))
            log.info("fold %d held out %s: %s (%.0f s)", k, held, json.dumps(sel),
                     time.monotonic() - t0)
    t0 = time.monotonic()
    tflite, sel = train_one(corpus, persons, args.seed, args.inner_folds, args.epochs)
    rule = (f"per position: min (1-sens) + {SPEC_WEIGHT}*(1-spec) + {PREWARN_WEIGHT}*(ADL "
            "pre-warning rate) on inner group-k-fold out-of-fold scores of that position's "
            "trials (recovered falls left out), highest of ties")
    extra = {"positions": sel, "data": data, "code": code,
             "threshold_selection": {"rule": rule},
             "cv": {"folds": [{"fold": k, "held_out": f} for k, f in enumerate(folds)],
                    "report": "models/fall/cv_report.json (python -m models.fall.cv)"}}
    default = sel.get("neck", next(iter(sel.values())))["decision_threshold"]
    manifest = manifest_for(tflite, default, cfg, extra)
    write_model(args.out, tflite, manifest)
    log.info("final model %s: %d bytes, thresholds %s (%.0f s); total %.0f s",
             manifest["version"], len(tflite), json.dumps(sel), time.monotonic() - t0,
             time.monotonic() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
