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
        --second-folds neck=out/neck-folds \
        --report models/fall/cv_report.json --manifest models/fall/manifest.json

``--second-folds POSITION=DIR`` evaluates what ships at that position: each fold's model
paired with the second model's same fold (``train --second-model``, the same people held
out per fold), either over its own fold threshold (:class:`agent.fall.pair.PairScorer`).

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

import numpy as np

from agent.fall.config import FallConfig
from agent.fall.dataset import ACC_G_PER_COUNT, Trial, load_trials
from agent.fall.evaluation import (
    ContinuousResult,
    Evaluator,
    TrialResult,
    published_threshold_summary,
    replay_step,
    summarize,
)
from agent.fall.pair import PairScorer
from agent.fall.scoring import PeakThresholdScorer, Scorer
from agent.fall.signal import SAMPLE_RATE_HZ
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
        what = "no fold-K directories" if root.is_dir() else "no such directory"
        raise SystemExit(
            f"{root}: {what}. Fold models are not in the repository: `python -m "
            "models.fall.train ... --folds 8 --folds-out DIR` writes them (the train venv; "
            "models/fall/README.md, 'Training and cross-validation')")
    return out


def pair_factory(second_root: Path) -> Callable[..., Scorer]:
    """A ``model_factory`` for :func:`run_folds`: each fold's model paired with
    ``second_root``'s same fold (``fold-K/fall.tflite``)."""
    def build(path: Path, interpreter: str, position: str) -> PairScorer:
        second = second_root / Path(path).parent.name / "fall.tflite"
        return PairScorer(TfliteFallModel(path, interpreter=interpreter, position=position),
                          TfliteFallModel(second, interpreter=interpreter, position=position))
    return build


def check_same_people(first: list[tuple[Path, list[str]]],
                      second: list[tuple[Path, list[str]]], name: str) -> None:
    """Each fold of the second model must hold out the same ``name`` people as the first's
    (else a held-out person would be in the other model's training set)."""
    def people(folds: list[tuple[Path, list[str]]]) -> list[list[str]]:
        return [sorted(p for p in h if p.split(":", 1)[0] == name) for _, h in folds]

    if people(first) != people(second):
        raise SystemExit(f"the two fold sets hold out different {name} people")


def run_folds(ds: DataSet, trials: list[Trial], folds: list[tuple[Path, list[str]]],
              cfg: FallConfig, model_factory: Callable[..., Scorer] = TfliteFallModel,
              rate_hz: float = SAMPLE_RATE_HZ) -> tuple[Results, list[dict[str, Any]]]:
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
        r, c = Evaluator(model, cfg, rate_hz=rate_hz).run(part)
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


def clipped(trials: list[Trial], rail_g: float | None) -> list[Trial]:
    """The trials as an accelerometer with a +-``rail_g`` full-scale range would have
    recorded them (each axis limited to the rail; the gyroscope untouched)."""
    if rail_g is None:
        return trials
    rail = int(round(rail_g / ACC_G_PER_COUNT))
    out = []
    for t in trials:
        samples = t.samples.copy()
        samples[:, :3] = np.clip(samples[:, :3], -rail, rail)
        out.append(replace(t, samples=samples))
    return out


def evaluate_set(ds: DataSet, folds: list[tuple[Path, list[str]]], rules: bool,
                 baseline: bool = True, second: Path | None = None,
                 clip_g: float | None = None, rate_hz: float = SAMPLE_RATE_HZ
                 ) -> tuple[dict[str, Any], dict[str, Results]]:
    """``second``: the second model's fold directories at this position (the pair ships
    there), evaluated as the pair; the first model alone is then ``model_alone``.
    ``clip_g``: evaluate the recordings clipped to that accelerometer range; ``rate_hz``:
    streamed as a wearable at that rate would (:func:`agent.fall.evaluation.slower`)."""
    cfg = replace(FallConfig(), position=ds.position)
    trials = clipped(load_trials(ds.path), clip_g)
    t0 = time.monotonic()
    factory: Callable[..., Scorer] = TfliteFallModel
    if second is not None:
        check_same_people(folds, fold_dirs(second), ds.name)
        factory = pair_factory(second)
    (res, cont), per_fold = run_folds(ds, trials, folds, cfg, factory, rate_hz)
    runs = {"model": (res, cont)}
    out: dict[str, Any] = {"position": ds.position, "held_out": True,
                           "model": summarize(res, cont), "folds": per_fold}
    if second is not None:
        out["detector"] = ("pair: the fold model and the second model's same fold, either "
                           f"over its own fold threshold ({second})")
        alone, _ = run_folds(ds, trials, folds, cfg, rate_hz=rate_hz)
        runs["model_alone"] = alone
        out["model_alone"] = brief(summarize(*alone))
    if baseline:
        base = Evaluator(PeakThresholdScorer(cfg.baseline_peak_g), cfg,
                         rate_hz=rate_hz).run(trials)
        runs["baseline"] = base
        out["baseline"] = brief(summarize(*base))
        out["baseline"]["detector"] = PeakThresholdScorer(cfg.baseline_peak_g).version
        out["baseline_published"] = published_threshold_summary(trials, cfg.baseline_peak_g)
    if rules:
        out["rules"] = {}
        for name, change in RULE_VARIANTS.items():
            (r, c), _ = run_folds(ds, trials, folds, replace(cfg, **change), factory,
                                  rate_hz)
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
        for det, s in (("model (held out)" if "model_alone" not in v
                        else "pair, either (held out; ships)", v["model"]),
                       ("shipped model alone (held out)", v.get("model_alone")),
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
        det = "pair (held out)" if pos in report.get("second_folds", {}) else "model (held out)"
        rows.append(f"| all {pos} | {det} | {_f(s['sensitivity'])} | "
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
        if "second_model" in entry:
            entry["second_model"]["validated_on"] = entry["validated_on"]
            entry["held_out_detector"] = ("pair: shipped and second model, either over its "
                                          "own threshold" if pos in report.get("second_folds",
                                                                                {})
                                          else "shipped model alone")
    path.write_text(json.dumps(doc, indent=2) + "\n")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    folds = fold_dirs(args.folds)
    second = dict(args.second_folds)
    report: dict[str, Any] = {"folds": [{"fold": d.name, "held_out": h} for d, h in folds],
                              "clip_g": args.clip_g, "rate_hz": args.rate_hz,
                              "second_folds": {p: str(d) for p, d in second.items()},
                              "sets": {}, "positions": {}}
    by_position: dict[str, dict[str, list[Any]]] = {}
    for ds in args.data:
        out, runs = evaluate_set(ds, folds, not (args.no_rules or args.model_only),
                                 not args.model_only, second.get(ds.position), args.clip_g,
                                 args.rate_hz)
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


def _position_dir(text: str) -> tuple[str, Path]:
    position, sep, path = text.partition("=")
    if not sep or not position or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected POSITION=DIR")
    return position, Path(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("out/cv-folds"))
    ap.add_argument("--data", type=DataSet.parse, action="append", default=[],
                    metavar="NAME:POSITION=DIR")
    ap.add_argument("--second-folds", type=_position_dir, action="append", default=[],
                    metavar="POSITION=DIR",
                    help="the second model's fold-K directories at POSITION (train "
                         "--second-model): evaluate the pair that ships there")
    ap.add_argument("--report", type=Path, required=True,
                    help="write the report here (with --from-report: read it from here)")
    ap.add_argument("--from-report", action="store_true",
                    help="do not evaluate: print the tables of --report (and --manifest it)")
    ap.add_argument("--manifest", type=Path,
                    help="also put the summary into this manifest's 'cv' (model unchanged)")
    ap.add_argument("--no-rules", action="store_true", help="skip the posture-rule variants")
    ap.add_argument("--model-only", action="store_true",
                    help="skip the posture-rule variants and the baselines")
    ap.add_argument("--clip-g", type=float, metavar="G",
                    help="evaluate the recordings as an accelerometer with a +-G g range "
                         "would have recorded them (models/fall/README.md, 'Accelerometer "
                         "range')")
    ap.add_argument("--rate-hz", type=float, default=SAMPLE_RATE_HZ, metavar="HZ",
                    help="replay as a wearable streaming at HZ (50 divided by a whole "
                         "number) would: each sample the mean of the 50 Hz samples in its "
                         "period (models/fall/README.md, 'Sample rate')")
    args = ap.parse_args(argv)
    try:
        replay_step(args.rate_hz)
    except ValueError as exc:
        ap.error(str(exc))
    if args.clip_g is not None and args.clip_g <= 1.0:
        ap.error("--clip-g must be over 1 g (gravity alone reaches 1 g)")
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
