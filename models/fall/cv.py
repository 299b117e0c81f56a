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

``--from-report`` prints the README tables of an existing report (and with ``--manifest``
puts it into the manifest) without evaluating again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
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
from agent.fall.scoring import PeakThresholdScorer, Scorer
from agent.fall.tflite_model import TfliteFallModel
from models.fall.corpus import DataSet

log = logging.getLogger("cv")

# The runtime's posture rules, each switched off or loosened in turn on the same held-out
# trials with the same fold models: what the rule saves (false alarms) and costs (falls).
RULE_VARIANTS: dict[str, dict[str, Any]] = {
    "no_already_lying_rule": {"lying_before_deg": 181.0},
    "already_lying_at_any_impact": {"already_lying_max_g": 99.0},
    "no_lay_down_rule": {"lay_down_max_g": 0.0},
    "no_reclined_still_rule": {"reclined_still_g": 0.0},
    "no_recovered_upright_rule": {"recovered_upright_deg": 0.0},
    "no_posture_confirmation": {"lying_tilt_deg": 0.0, "slumped_tilt_deg": 0.0,
                                "lying_before_deg": 181.0, "lay_down_max_g": 0.0,
                                "reclined_still_g": 0.0, "recovered_upright_deg": 0.0},
}
KEYS = ("trials", "falls", "adls", "sensitivity", "specificity", "tp", "fp", "fn", "tn",
        "falls_floor", "sensitivity_floor", "falls_recovered", "recovered_as_warning",
        "recovered_as_alarm", "adl_warnings", "adl_warning_rate", "continuous_hours",
        "continuous_false_alarms", "false_alarms_per_24h",
        "continuous_false_alarms_at_junctions", "continuous_false_alarms_held",
        "continuous_false_alarms_held_at_junctions",
        "false_alarms_per_24h_held", "detection_delay_s_p50", "reasons")

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
              cfg: FallConfig, model_factory: Callable[..., Scorer] = TfliteFallModel
              ) -> tuple[Results, list[dict[str, Any]]]:
    """Each fold's model on the people of ``ds`` it held out (``model_factory(path,
    interpreter=, position=)`` builds the scorer; :mod:`models.fall.pair_replay` passes a
    pair)."""
    res: list[TrialResult] = []
    cont: list[ContinuousResult] = []
    per_fold = []
    for d, held in folds:
        subjects = {p.split(":", 1)[1] for p in held if p.split(":", 1)[0] == ds.name}
        part = [t for t in trials if t.subject in subjects]
        if not part:
            continue
        model = model_factory(d / "fall.tflite", interpreter="ai_edge_litert",
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


def evaluate_set(ds: DataSet, folds: list[tuple[Path, list[str]]], rules: bool,
                 baseline: bool = True) -> tuple[dict[str, Any], dict[str, Results]]:
    cfg = replace(FallConfig(), position=ds.position)
    trials = load_trials(ds.path)
    t0 = time.monotonic()
    (res, cont), per_fold = run_folds(ds, trials, folds, cfg)
    runs = {"model": (res, cont)}
    out: dict[str, Any] = {"position": ds.position, "held_out": True,
                           "model": summarize(res, cont), "folds": per_fold}
    if baseline:
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


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _held(s: dict[str, Any]) -> str:
    """The held-ends continuous figure (agent.fall.evaluation), '-' where not measured
    (the published baseline, reports from before it)."""
    n = s.get("continuous_false_alarms_held")
    return "-" if n is None else f"{n} ({_f(s.get('false_alarms_per_24h_held'))})"


def markdown(report: dict[str, Any]) -> str:
    """The tables of models/fall/README.md, from the report."""
    rows = ["| data set, position | detector | sensitivity, all falls | falls on the floor | "
            "recovered falls as fall_recovered | specificity | continuous false alarms "
            "(hours; per 24 h) | continuous, held ends (per 24 h) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, v in report["sets"].items():
        for det, s in (("model (held out)", v["model"]),
                       ("Bourke 2007, same path", v.get("baseline")),
                       ("Bourke 2007, as published", v.get("baseline_published"))):
            if s is None:
                continue
            rows.append(
                f"| {name} | {det} | {_f(s.get('sensitivity'))} ({s.get('tp')}/{s.get('falls')})"
                f" | {_f(s.get('sensitivity_floor'))} | {_f(s.get('recovered_as_warning'))}"
                f" | {_f(s.get('specificity'))} ({s.get('tn')}/{s.get('adls')})"
                f" | {s.get('continuous_false_alarms')} ({_f(s.get('continuous_hours'))} h;"
                f" {_f(s.get('false_alarms_per_24h'))}) | {_held(s)} |")
    for pos, runs in report["positions"].items():
        s = runs["model"]
        rows.append(f"| all {pos} | model (held out) | {_f(s['sensitivity'])} | "
                    f"{_f(s['sensitivity_floor'])} | {_f(s['recovered_as_warning'])} | "
                    f"{_f(s['specificity'])} | {s['continuous_false_alarms']} "
                    f"({_f(s['continuous_hours'])} h; {_f(s['false_alarms_per_24h'])}) | "
                    f"{_held(s)} |")
    rules = ["", "| data set, position | rule changed | falls on the floor | recovered as "
             "fall_recovered | specificity | continuous false alarms | held ends |",
             "|---|---|---|---|---|---|---|"]
    for name, v in report["sets"].items():
        for rule, s in [("none (shipped rules)", v["model"]), *v.get("rules", {}).items()]:
            rules.append(f"| {name} | {rule} | {_f(s['sensitivity_floor'])} | "
                         f"{_f(s['recovered_as_warning'])} | {_f(s['specificity'])} | "
                         f"{s['continuous_false_alarms']} | "
                         f"{_f(s.get('continuous_false_alarms_held'))} |")
    return "\n".join(rows + (rules if len(rules) > 3 else [])) + "\n"


def update_manifest(path: Path, report: dict[str, Any]) -> None:
    """Put the held-out summary into the manifest (``cv.summary``, and per position
    ``trained_on`` / ``validated_on`` / ``held_out``); the model and its sha256 are unchanged."""
    doc = json.loads(path.read_text())
    doc["cv"]["summary"] = {
        "held_out": "every figure: fold models on people their fold never trained on",
        "sets": {k: {"model": brief(v["model"]), "baseline": v.get("baseline")}
                 for k, v in report["sets"].items()},
        "positions": report["positions"],
    }
    trained_on = [f"{d['name']}:{d['position']}" for d in doc["data"]["sets"]]
    for pos, entry in doc["positions"].items():
        entry["trained_on"] = trained_on
        entry["validated_on"] = sorted(k for k, v in report["sets"].items()
                                       if v["position"] == pos)
        if pos in report["positions"]:
            entry["held_out"] = report["positions"][pos]["model"]
    path.write_text(json.dumps(doc, indent=2) + "\n")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    folds = fold_dirs(args.folds)
    report: dict[str, Any] = {"folds": [{"fold": d.name, "held_out": h} for d, h in folds],
                              "sets": {}, "positions": {}}
    by_position: dict[str, dict[str, list[Any]]] = {}
    for ds in args.data:
        out, runs = evaluate_set(ds, folds, not (args.no_rules or args.model_only),
                                 not args.model_only)
        report["sets"][f"{ds.name}:{ds.position}"] = out
        acc = by_position.setdefault(ds.position, {})
        for name, (r, c) in runs.items():
            acc.setdefault(name, [[], []])
            acc[name][0] += r
            acc[name][1] += c
    for pos, joined in by_position.items():
        report["positions"][pos] = {name: brief(summarize(r, c))
                                    for name, (r, c) in joined.items()}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"))
    ap.add_argument("--data", type=DataSet.parse, action="append", default=[],
                    metavar="NAME:POSITION=DIR")
    ap.add_argument("--report", type=Path, required=True,
                    help="write the report here (with --from-report: read it from here)")
    ap.add_argument("--from-report", action="store_true",
                    help="do not evaluate: print the tables of --report (and --manifest it)")
    ap.add_argument("--manifest", type=Path,
                    help="also put the summary into this manifest's 'cv' (model unchanged)")
    ap.add_argument("--no-rules", action="store_true", help="skip the posture-rule variants")
    ap.add_argument("--model-only", action="store_true",
                    help="skip the posture-rule variants and the baselines")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("agent").setLevel(logging.ERROR)
    if args.from_report:
        report = json.loads(args.report.read_text())
    else:
        if not args.data:
            ap.error("--data is required (unless --from-report)")
        report = evaluate(args)
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    if args.manifest:
        update_manifest(args.manifest, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
