"""Cross-validated figures of the fall models that ``models.fall.train`` left per fold.

Runs in the runtime venv (no TensorFlow): every fold's int8 model is evaluated on the people
that fold held out, through the runtime path (:class:`agent.fall.evaluation.Evaluator`,
time-compressed), configured for the data set's position (that position's threshold, chosen
on the fold's training people only). Figures per data set and position, and per position
over its data sets; the Bourke 2007 threshold detector through the same path and as
published on the same trials (same run); and what each posture rule costs and saves (the
same held-out run with the rule changed)::

    PYTHONPATH=$PWD python -m models.fall.cv --folds out/cv-folds \\
        --data sisfall:waist=../shared/data/fall \\
        --data fallalld:neck=../shared/data/fallalld/neck \\
        --data fallalld:waist=../shared/data/fallalld/waist \\
        --report models/fall/cv_report.json --manifest models/fall/manifest.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.fall.config import FallConfig
from agent.fall.dataset import Trial, load_trials
from agent.fall.evaluation import (
    ContinuousResult,
    Evaluator,
    TrialResult,
    published_threshold_summary,
    summarize,
)
from agent.fall.scoring import PeakThresholdScorer
from agent.fall.tflite_model import TfliteFallModel
from models.fall.train import DataSet

log = logging.getLogger("cv")

# The runtime's posture rules, each switched off or loosened in turn on the same held-out
# trials with the same fold models: what the rule saves (false alarms) and costs (falls).
RULE_VARIANTS: dict[str, dict[str, float]] = {
    "no_already_lying_rule": {"lying_before_deg": 181.0},
    "already_lying_at_any_impact": {"already_lying_max_g": 99.0},
    "no_posture_confirmation": {"lying_tilt_deg": 0.0, "slumped_tilt_deg": 0.0,
                                "lying_before_deg": 181.0},
}
KEYS = ("trials", "falls", "adls", "sensitivity", "specificity", "tp", "fp", "fn", "tn",
        "falls_floor", "sensitivity_floor", "falls_recovered", "recovered_as_warning",
        "recovered_as_alarm", "adl_warnings", "adl_warning_rate", "continuous_hours",
        "continuous_false_alarms", "false_alarms_per_24h",
        "continuous_false_alarms_at_junctions", "detection_delay_s_p50", "reasons")

Results = tuple[list[TrialResult], list[ContinuousResult]]


def fold_dirs(root: Path) -> list[tuple[Path, list[str]]]:
    out = []
    for d in sorted(root.glob("fold-*"), key=lambda p: int(p.name.split("-")[1])):
        doc = json.loads((d / "manifest.json").read_text())
        out.append((d, list(doc["held_out"])))
    if not out:
        raise SystemExit(f"{root}: no fold-K directories")
    return out


def run_folds(ds: DataSet, trials: list[Trial], folds: list[tuple[Path, list[str]]],
              cfg: FallConfig) -> tuple[Results, list[dict[str, Any]]]:
    """Each fold's model on the people of ``ds`` it held out."""
    res: list[TrialResult] = []
    cont: list[ContinuousResult] = []
    per_fold = []
    for d, held in folds:
        subjects = {p.split(":", 1)[1] for p in held if p.split(":", 1)[0] == ds.name}
        part = [t for t in trials if t.subject in subjects]
        if not part:
            continue
        model = TfliteFallModel(d / "fall.tflite", interpreter="ai_edge_litert",
                                position=ds.position)
        r, c = Evaluator(model, cfg).run(part)
        res += r
        cont += c
        s = summarize(r, c)
        per_fold.append({"fold": d.name, "held_out": sorted(subjects),
                         "threshold": model.threshold,
                         **{k: s[k] for k in ("sensitivity", "sensitivity_floor",
                                              "recovered_as_warning", "specificity",
                                              "continuous_false_alarms")}})
    return (res, cont), per_fold


def brief(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in KEYS if k in s}


def evaluate_set(ds: DataSet, folds: list[tuple[Path, list[str]]], rules: bool
                 ) -> tuple[dict[str, Any], dict[str, Results]]:
    cfg = replace(FallConfig(), position=ds.position)
    trials = load_trials(ds.path)
    t0 = time.monotonic()
    (res, cont), per_fold = run_folds(ds, trials, folds, cfg)
    runs = {"model": (res, cont)}
    out: dict[str, Any] = {"position": ds.position, "held_out": True,
                           "model": summarize(res, cont), "folds": per_fold}
    base = Evaluator(PeakThresholdScorer(cfg.baseline_peak_g), cfg).run(trials)
    runs["baseline"] = base
    out["baseline"] = brief(summarize(*base))
    out["baseline"]["detector"] = PeakThresholdScorer(cfg.baseline_peak_g).version
    out["baseline_published"] = published_threshold_summary(trials, cfg.baseline_peak_g)
    if rules:
        out["rules"] = {}
        for name, change in RULE_VARIANTS.items():
            (r, c), _ = run_folds(ds, trials, folds, replace(cfg, **change))
            out["rules"][name] = brief(summarize(r, c))
    out["seconds"] = round(time.monotonic() - t0, 1)
    log.info("%s:%s %s", ds.name, ds.position, json.dumps(brief(out["model"])))
    return out, runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"))
    ap.add_argument("--data", type=DataSet.parse, action="append", required=True,
                    metavar="NAME:POSITION=DIR")
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--manifest", type=Path,
                    help="also put the summary into this manifest's 'cv' (model unchanged)")
    ap.add_argument("--no-rules", action="store_true", help="skip the posture-rule variants")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("agent").setLevel(logging.ERROR)
    folds = fold_dirs(args.folds)
    report: dict[str, Any] = {"folds": [{"fold": d.name, "held_out": h} for d, h in folds],
                              "sets": {}, "positions": {}}
    by_position: dict[str, dict[str, list[Any]]] = {}
    for ds in args.data:
        out, runs = evaluate_set(ds, folds, not args.no_rules)
        report["sets"][f"{ds.name}:{ds.position}"] = out
        acc = by_position.setdefault(ds.position, {})
        for name, (r, c) in runs.items():
            acc.setdefault(name, [[], []])
            acc[name][0] += r
            acc[name][1] += c
    for pos, runs in by_position.items():
        report["positions"][pos] = {name: brief(summarize(r, c)) for name, (r, c) in runs.items()}
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    if args.manifest:
        doc = json.loads(args.manifest.read_text())
        doc["cv"]["summary"] = {
            "held_out": "every figure: fold models on people their fold never trained on",
            "sets": {k: {"model": brief(v["model"]), "baseline": v["baseline"]}
                     for k, v in report["sets"].items()},
            "positions": report["positions"],
        }
        args.manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
