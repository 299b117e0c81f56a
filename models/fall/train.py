"""Train, cross-validate and export the fall model (``fall.tflite`` + ``manifest.json``).

Reproducible from ``../shared/data/fall`` (SisFall at 50 Hz), from the repository root::

    python3 -m venv .trainvenv && .trainvenv/bin/pip install '.[train]'
    .trainvenv/bin/python -m models.fall.train --data sisfall:waist=../shared/data/fall \
        --data fallalld:neck=../shared/data/fallalld/neck \
        --data fallalld:waist=../shared/data/fallalld/waist --folds 8

The second model at the neck (the "either" pair, models/fall/README.md "Step 7"), after the
shipped one, the same seed (the same person held out per fold)::

    .trainvenv/bin/python -m models.fall.train --data fallalld:neck=../shared/data/fallalld/neck \
        --folds 8 --folds-out out/neck-folds --second-model neck

About 15 minutes on two cores (eight outer folds, each with three inner folds, then the
shipped model; ``--skip-cv`` trains only the shipped model). Seeded, with deterministic
TensorFlow ops: the same TensorFlow version (recorded in the manifest's ``code``) gives the
same bytes.

Design (see models/fall/README.md):

- candidates and their labels: :mod:`models.fall.corpus`;
- leave-subjects-out cross-validation: subjects are split into ``--folds`` groups; for each
  outer fold the decision threshold is chosen on out-of-fold scores of an inner group k-fold
  over the *training* subjects only, then a model trained on all training subjects is
  converted to int8 and run over the held-out subjects through the runtime path
  (:class:`agent.fall.evaluation.Evaluator`). Only those held-out figures are reported
  (folds and the threshold rule: :mod:`models.fall.thresholds`; int8 export and manifest:
  :mod:`models.fall.export`);
- the shipped model repeats the same procedure on all subjects;
- ``--bed-negatives`` / ``--bed-weight`` (extra negatives from lying down and turning over
  in bed) and ``--upright-channel`` (a "was lying before" input) were tried in step 8 of
  models/fall/README.md and are not part of what ships; without them nothing changes.

Seeds fix NumPy, Python and TensorFlow; TensorFlow runs deterministic ops on two threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.config import FallConfig
from agent.fall.dataset import Trial, data_version
from agent.fall.signal import FEATURES, WINDOW_SAMPLES
from models.fall.corpus import UPRIGHT_FEATURE, Candidates, Corpus, DataSet, features
from models.fall.export import (
    HERE,
    code_version,
    manifest_for,
    register_second_model,
    second_model_files,
    to_int8,
    write_model,
)
from models.fall.thresholds import (
    PREWARN_WEIGHT,
    SPEC_WEIGHT,
    choose_threshold,
    person_folds,
    trial_max_confirmed,
)

log = logging.getLogger("train")


# ---- model ------------------------------------------------------------------------------
def set_seeds(seed: int) -> None:
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)


def build_model(n_features: int = len(FEATURES)) -> Any:
    """Every layer is named: Keras otherwise numbers them by how many models the process built
    before, and the names end up in the .tflite, so ``--skip-cv`` would give other bytes."""
    from tensorflow import keras

    layers = keras.layers
    inp = keras.Input((WINDOW_SAMPLES, n_features), name="window")
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


def pendant_turn(windows: np.ndarray, rng: np.random.Generator, max_deg: float
                 ) -> np.ndarray:
    """A pendant turning on its lanyard *during* the window: each window rotated about a
    random axis by an angle that ramps from 0 to U(-max_deg, max_deg) over a random second.
    A constant rotation would change nothing (the features are invariant to it, to float
    rounding); a rotation that changes within the window moves the along/across split the
    way a swinging, turning pendant does. Tried for the neck (``--pendant-turn-deg``), not
    adopted: models/fall/README.md."""
    n = len(windows)
    axes = rng.normal(size=(n, 1, 3))
    axes /= np.linalg.norm(axes, axis=2, keepdims=True)
    theta = np.radians(rng.uniform(-max_deg, max_deg, size=(n, 1, 1)))
    start = rng.integers(0, WINDOW_SAMPLES - 50, size=(n, 1, 1))
    ramp = np.clip((np.arange(WINDOW_SAMPLES)[None, :, None] - start) / 50.0, 0.0, 1.0)
    ang = theta * ramp
    v = windows.astype(np.float64)
    kv = np.sum(axes * v, axis=2, keepdims=True)
    out = v * np.cos(ang) + np.cross(axes, v) * np.sin(ang) + axes * kv * (1 - np.cos(ang))
    return out.astype(np.float32)


def fit(cands: Candidates, mask: np.ndarray, seed: int, epochs: int,
        extra_mask: np.ndarray | None = None, extra_weight: float = 1.0) -> Any:
    """The augmented copy of each candidate with ``cands.turn`` > 0 also gets
    :func:`pendant_turn` (up to that many degrees). ``extra_mask`` selects extra negative
    windows (``cands.extra_windows``, ``--bed-negatives``) to train on, each weighed
    ``extra_weight``."""
    set_seeds(seed)
    rng = np.random.default_rng(seed)
    sel = mask & (cands.label >= 0)
    raw = cands.windows[sel]
    ups = cands.uprights(sel)
    y = cands.label[sel].astype(np.float32)
    n_extra = 0
    if extra_mask is not None and cands.extra_windows is not None and extra_mask.any():
        extra = cands.extra_windows[extra_mask]
        n_extra = len(extra)
        raw = np.concatenate([raw, extra])
        y = np.concatenate([y, np.zeros(n_extra, np.float32)])
        if ups is not None and cands.extra_upright is not None:
            ups = np.concatenate([ups, cands.extra_upright[extra_mask]])
    aug = augment(raw, rng)
    if cands.turn is not None and (turned := cands.turn[sel] > 0).any():
        turned = np.concatenate([turned, np.zeros(n_extra, bool)])
        aug[turned] = pendant_turn(aug[turned], rng, float(cands.turn[sel].max()))
    x = np.concatenate([features(raw, ups), features(aug, ups)])
    y = np.concatenate([y, y])
    pos = float(y.sum())
    w = np.where(y > 0.5, (len(y) - pos) / max(pos, 1.0), 1.0).astype(np.float32)
    w = np.minimum(w, 20.0)
    if cands.weight is not None:
        cw = np.concatenate([cands.weight[sel], np.ones(n_extra, np.float32)])
        w = w * np.concatenate([cw, cw]).astype(np.float32)
    if n_extra:
        ew = np.concatenate([np.ones(len(raw) - n_extra, np.float32),
                             np.full(n_extra, extra_weight, np.float32)])
        w = w * np.concatenate([ew, ew])
    model = build_model(x.shape[2])
    model.fit(x, y, sample_weight=w, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model


def extra_for(cands: Candidates, persons: np.ndarray, train: list[str]
              ) -> tuple[np.ndarray | None, float]:
    """(mask of the extra negative windows of the ``train`` persons, their weight) for
    :func:`fit`; (None, 1.0) without ``--bed-negatives``."""
    if cands.extra_trial is None:
        return None, 1.0
    return np.isin(persons[cands.extra_trial], train), cands.extra_weight


def predict(model: Any, windows: np.ndarray, uprights: np.ndarray | None = None
            ) -> np.ndarray:
    return model.predict(features(windows, uprights), batch_size=512, verbose=0).reshape(-1)


def inner_scores(cands: Candidates, persons: np.ndarray, train: list[str], inner_k: int,
                 seed: int, epochs: int) -> np.ndarray:
    """Out-of-fold score of every candidate of the ``train`` persons from an inner group
    k-fold over them (-1 for candidates of other persons)."""
    cand_person = persons[cands.trial]
    oof = np.full(len(cands.label), np.nan)
    for j, inner in enumerate(person_folds(train, inner_k, seed + 1000)):
        held = np.isin(cand_person, inner)
        fit_mask = np.isin(cand_person, train) & ~held
        model = fit(cands, fit_mask, seed + 10 * j + 1, epochs,
                    *extra_for(cands, persons, [p for p in train if p not in inner]))
        oof[held] = predict(model, cands.windows[held], cands.uprights(held))
    return np.nan_to_num(oof, nan=-1.0)


def select_thresholds(cands: Candidates, trials: list[Trial], positions: np.ndarray,
                      persons: np.ndarray, train: list[str], inner_k: int, seed: int,
                      epochs: int) -> dict[str, dict[str, Any]]:
    """Inner group k-fold over the ``train`` persons only: out-of-fold scores -> one
    threshold per position, each chosen on that position's trials (recovered falls are
    left out of the sensitivity: they should not alarm)."""
    sensitive = np.array([t.is_fall and not t.recovered for t in trials])
    is_fall = np.array([t.is_fall for t in trials])
    in_set = np.isin(persons, train)
    scores = inner_scores(cands, persons, train, inner_k, seed, epochs)
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


def write_inner_scores(path: Path, corpus: Corpus, folds: list[list[str]],
                       persons: list[str], args: argparse.Namespace) -> None:
    """The inner out-of-fold scores each threshold choice is made on (every outer fold's,
    ``fold-K``, and the shipped model's, ``all``), with what a threshold rule needs per
    candidate and trial, so that threshold rules can be compared without training
    (the same seeds as :func:`train_one`: the same scores as the training run)."""
    cands = corpus.cands
    out: dict[str, np.ndarray] = {
        "cand_trial": cands.trial, "cand_confirmed": cands.confirmed,
        "cand_label": cands.label, "persons": corpus.persons,
        "positions": corpus.positions, "groups": corpus.groups,
        "is_fall": np.array([t.is_fall for t in corpus.trials]),
        "recovered": np.array([t.recovered for t in corpus.trials]),
        "codes": np.array([t.code for t in corpus.trials])}
    runs = [(f"fold-{k}", [p for p in persons if p not in held], args.seed + 100 * (k + 1))
            for k, held in enumerate(folds)] + [("all", persons, args.seed)]
    for name, train, seed in runs:
        t0 = time.monotonic()
        out[f"scores_{name}"] = inner_scores(cands, corpus.persons, train, args.inner_folds,
                                             seed, args.epochs)
        log.info("inner scores %s (%.0f s)", name, time.monotonic() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)


# ---- main -------------------------------------------------------------------------------
def train_one(corpus: Corpus, train: list[str], seed: int, inner_k: int, epochs: int
              ) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """Per-position thresholds from inner folds over ``train``, then the int8 model trained
    on all of ``train``."""
    cands = corpus.cands
    sel = select_thresholds(cands, corpus.trials, corpus.positions, corpus.persons, train,
                            inner_k, seed, epochs)
    mask = np.isin(corpus.persons[cands.trial], train)
    model = fit(cands, mask, seed, epochs, *extra_for(cands, corpus.persons, train))
    rep = np.flatnonzero(mask)[::7][:400]
    return to_int8(model, features(cands.windows[rep], cands.uprights(rep))), sel


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
    ap.add_argument("--pendant-turn-deg", type=float, default=0.0, metavar="DEG",
                    help="augment neck windows with a pendant turning by up to DEG during the "
                         "window (tried, not adopted: see models/fall/README.md; 0 = off)")
    ap.add_argument("--bed-negatives", metavar="OFFSETS",
                    help="comma-separated sample offsets (e.g. -20,-10,-5,5,10,20): every "
                         "daily-activity candidate in a lying context or that the posture "
                         "check would confirm also gives the windows shifted by these from "
                         "its peak as negatives (step 8 of models/fall/README.md)")
    ap.add_argument("--bed-weight", type=float, default=1.0, metavar="W",
                    help="training weight of each --bed-negatives window (default 1)")
    ap.add_argument("--upright-channel", action="store_true",
                    help="a fourth input channel: each sample along the upright learnt from "
                         "walking (was the wearer lying before the impact?); tried in step 8 "
                         "of models/fall/README.md, the runtime does not compute it")
    ap.add_argument("--folds-out", type=Path, default=Path("out/cv-folds"),
                    help="each fold's model in DIR/fold-K/ (evaluated by models.fall.cv)")
    ap.add_argument("--inner-scores-out", type=Path, metavar="FILE.npz",
                    help="only write the inner out-of-fold scores the thresholds are chosen "
                         "on (every fold's and the shipped model's) to FILE.npz, no models")
    ap.add_argument("--second-model", choices=("neck",), metavar="POSITION",
                    help="train the second model of POSITION (at the neck: --data "
                         "fallalld:neck only): written as fall-POSITION.tflite and "
                         "manifest-POSITION.json in --out and named in --out/manifest.json "
                         "(positions.POSITION.second_model), which must exist")
    args = ap.parse_args(argv)
    if args.second_model and {ds.position for ds in args.data} != {args.second_model}:
        ap.error(f"--second-model {args.second_model}: every --data must be at the "
                 f"{args.second_model}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("agent").setLevel(logging.ERROR)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()

    cfg = FallConfig()
    t_start = time.monotonic()
    wanted = set(args.subjects.split(",")) if args.subjects else None
    bed_offsets = (tuple(int(x) for x in args.bed_negatives.split(","))
                   if args.bed_negatives else ())
    corpus = Corpus.load(args.data, cfg, wanted, bed_offsets)
    corpus.cands.extra_weight = args.bed_weight
    corpus.cands.use_upright = args.upright_channel
    if args.balance_positions:
        corpus.balance_positions()
    if args.pendant_turn_deg > 0:
        corpus.cands.turn = np.where(corpus.positions[corpus.cands.trial] == "neck",
                                     args.pendant_turn_deg, 0.0).astype(np.float32)
    cands = corpus.cands
    persons = sorted(set(corpus.persons.tolist()))
    log.info("%d trials, %d people, %d candidates (%d falls, %d not, %d unlabelled)",
             len(corpus.trials), len(persons), len(cands.label), (cands.label == 1).sum(),
             (cands.label == 0).sum(), (cands.label == -1).sum())
    if cands.extra_trial is not None:
        log.info("%d extra negative windows (--bed-negatives)", len(cands.extra_trial))
    data = {"sets": [{"name": ds.name, "position": ds.position, "sha256": data_version(ds.path),
                      "trials": int(np.sum(corpus.groups == f"{ds.name}:{ds.position}"))}
                     for ds in args.data],
            "subjects": persons, "trials": len(corpus.trials),
            "candidates": int(len(cands.label))}
    code = code_version()
    code["seed"] = args.seed
    code["balance_positions"] = bool(args.balance_positions)
    if args.pendant_turn_deg > 0:
        code["pendant_turn_deg"] = args.pendant_turn_deg
    if args.upright_channel:
        code["upright_channel"] = UPRIGHT_FEATURE
    if bed_offsets:
        code["bed_negatives"] = {"offsets": list(bed_offsets), "weight": args.bed_weight,
                                 "windows": int(len(cands.extra_trial))
                                 if cands.extra_trial is not None else 0}
    folds = person_folds(persons, args.folds, args.seed)

    def make_manifest(tflite: bytes, threshold: float, extra: dict[str, Any]
                      ) -> dict[str, Any]:
        manifest = manifest_for(tflite, threshold, cfg, extra)
        if args.upright_channel:
            manifest["input"]["features"] = [*FEATURES, UPRIGHT_FEATURE]
        return manifest

    if args.inner_scores_out:
        write_inner_scores(args.inner_scores_out, corpus, folds, persons, args)
        return 0
    if not args.skip_cv:
        for k, held in enumerate(folds):
            t0 = time.monotonic()
            train = [p for p in persons if p not in held]
            tflite, sel = train_one(corpus, train, args.seed + 100 * (k + 1), args.inner_folds,
                                    args.epochs)
            extra = {"positions": sel, "held_out": held, "fold": k, "data": data, "code": code}
            write_model(args.folds_out / f"fold-{k}", tflite,
                        make_manifest(tflite, sel["neck"]["decision_threshold"]
                                      if "neck" in sel else 0.5, extra))
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
    manifest = make_manifest(tflite, default, extra)
    if args.second_model:
        manifest["role"] = (f"second model at the {args.second_model}: paired with fall.tflite "
                            "(either model's score over its own threshold is a detection)")
        write_model(args.out, tflite, manifest, *second_model_files(args.second_model))
        register_second_model(args.out / "manifest.json", args.second_model, manifest)
    else:
        write_model(args.out, tflite, manifest)
    log.info("final model %s: %d bytes, thresholds %s (%.0f s); total %.0f s",
             manifest["version"], len(tflite), json.dumps(sel), time.monotonic() - t0,
             time.monotonic() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
