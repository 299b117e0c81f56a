"""``tec-agent eval-fall --data DIR [--position P] [--model PATH] [--no-second-model] ...``.

Runs every trial under DIR (the format of ``../shared/data/fall/``) through the runtime fall
detector configured for one wearing position, time-compressed, once with the model (at the
neck the shipped pair: the shipped model and the neck-only model, either over its own
threshold; with ``--no-second-model`` the shipped model alone, as a hub with ``[fall]
second_model = false``) and once with the threshold fallback, plus the continuous test (each
subject's daily activities back to back; and again with each recording's final second held
before the next begins, ``continuous_false_alarms_held``, so that no impact is judged on the
next recording's posture), and prints one JSON object. With ``--trials-out FILE`` it also
writes one JSON line per trial (subject, trial, label, outcome, score, peak_g, reason) so
anyone can apply their own labels to the outcomes. With ``--shuffled-orders N`` the
continuous test is repeated with each subject's recordings in N seeded random orders. Trials
the model was trained on give in-sample figures (named in ``in_sample_subjects``): the
cross-validated, held-out figures are in ``models/fall/cv_report.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from agent.errors import AgentError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from agent.fall.config import POSITIONS, SUPPORTED_POSITIONS

    unsupported = [p for p in POSITIONS if p not in SUPPORTED_POSITIONS]
    p = sub.add_parser(
        "eval-fall",
        help="evaluate fall detection on recorded trials through the runtime path",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--data", required=True, type=Path,
                   help="directory of SUBJECT.npz recordings (format of shared/data/fall; "
                        "a mapping.json beside them names the codes and marks recovered falls)")
    # 'wrist' stays a choice so that it is refused with the reason (no data backs it), but
    # the usage line offers only what runs.
    p.add_argument("--position", choices=POSITIONS, metavar="{neck,waist}",
                   help="where the recordings were worn: the runtime configuration evaluated "
                        "(threshold for that position). Default: the device named in the "
                        "data's mapping.json, else neck (the [fall] default). "
                        + "".join(f"{p}: not supported (no {p} recordings back a model "
                                  "or posture rules), refused with an error. "
                                  for p in unsupported))
    p.add_argument("--model", type=Path,
                   help="fall.tflite to evaluate (manifest.json beside it; a second model "
                        "its manifest names for the position is paired with it, as at the "
                        "neck); default: shipped (at the neck: the shipped pair)")
    p.add_argument("--no-second-model", action="store_true",
                   help="the shipped model (or --model) alone, as a hub with [fall] "
                        "second_model = false runs it: the second model the manifest names "
                        "for the position (at the neck: fall-neck.tflite) is not run. "
                        "Default: the pair at the neck. No effect at the waist (one model). "
                        "model.scored in the JSON lists the models that scored")
    p.add_argument("--trials-out", type=Path, metavar="FILE",
                   help="write one JSON line per trial: subject, trial, label, outcome "
                        "(alarm|warning|cancelled|none), score, peak_g, reason")
    p.add_argument("--plot", type=Path, metavar="OUTDIR",
                   help="write PNGs: confusion matrix, score distributions, example signals "
                        "(needs matplotlib; without it a warning, and the JSON all the same)")
    p.add_argument("--shuffled-orders", type=int, default=0, metavar="N",
                   help="also run the continuous test with each subject's daily activities "
                        "in N seeded random orders (default 0)")
    p.set_defaults(func=cmd_eval_fall)


def _progress(label: str) -> Any:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 5 or done == total:
            last[0] = now
            print(f"{label}: {done}/{total} trials", file=sys.stderr)
    return report


def _position(args: argparse.Namespace) -> str:
    """--position, else the device named in the data's mapping.json, else the default."""
    from agent.fall.config import FallConfig

    if args.position:
        return str(args.position)
    try:
        device = json.loads((args.data / "mapping.json").read_text(encoding="utf-8"))["device"]
    except (OSError, ValueError, KeyError, TypeError):
        return FallConfig().position
    return str(device) if device in ("neck", "waist", "wrist") else FallConfig().position


def _check_args(args: argparse.Namespace) -> str | None:
    if not args.data.is_dir():
        return f"{args.data}: not a directory"
    if not any(args.data.glob("*.npz")):
        below = sorted(str(d) for d in args.data.iterdir() if d.is_dir() and any(d.glob("*.npz")))
        hint = (f": the recordings are one level down, e.g. --data {below[0]}" if below
                else " (SUBJECT.npz recordings, e.g. ../shared/data/fallalld/neck)")
        return f"{args.data}: no SUBJECT.npz files{hint}"
    if args.model is not None and not args.model.is_file():
        return (f"--model {args.model}: no such file "
                "(a fall.tflite with its manifest.json beside it)")
    if args.shuffled_orders < 0:
        return "--shuffled-orders must be 0 or more"
    if args.trials_out is not None and not args.trials_out.parent.is_dir():
        return f"--trials-out: {args.trials_out.parent} is not a directory"
    return None


def _plot_available(args: argparse.Namespace) -> bool:
    if args.plot is None:
        return False
    try:
        import matplotlib  # noqa: F401  (only to know it is there)
    except ImportError:
        print("warning: --plot needs matplotlib, which is not installed "
              "(from a checkout: .venv/bin/pip install -e '.[plot]'): no plots written, the JSON "
              "follows",
              file=sys.stderr)
        return False
    return True


def _in_sample(trained: list[str], subjects: set[str]) -> list[str]:
    """Subjects of the data the model was trained on (names like ``SA01`` or, for models
    trained on several data sets, ``sisfall:SA01``)."""
    bare = {s.split(":")[-1] for s in trained}
    return sorted(subjects & bare)


def _scored(model: Any) -> list[dict[str, Any]]:
    """The models that scored the trials (``model.scored`` in the JSON): the shipped (or
    ``--model``) one, and the position's second model when it ran beside it."""
    from agent.fall.pair import PairScorer

    parts = [("shipped", model.first), ("second", model.second)] \
        if isinstance(model, PairScorer) else [("shipped", model)]
    return [{"role": role, "version": m.version, "threshold": m.threshold,
             "path": str(m.model_path)} for role, m in parts if m is not None]


def cmd_eval_fall(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from agent.fall.config import FallConfig
    from agent.fall.dataset import load_trials
    from agent.fall.evaluation import (
        Evaluator,
        hold_s,
        published_threshold_summary,
        shuffled_summary,
        summarize,
        unprimed_subjects,
    )
    from agent.fall.pair import PairScorer, load_model
    from agent.fall.scoring import PeakThresholdScorer

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # Every suspected fall is logged at WARNING on a hub; thousands of trials would drown
    # the report.
    logging.getLogger("agent.fall").setLevel(logging.ERROR)
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    cfg = replace(FallConfig(), position=_position(args),
                  second_model=not args.no_second_model)
    bad_position = cfg.validate("--position")
    if bad_position:
        print(f"error: {bad_position[0].replace('--position.position', '--position')}",
              file=sys.stderr)
        return 2
    plot = _plot_available(args)
    try:
        trials = load_trials(args.data)
        model = load_model(replace(cfg, model_path=None if args.model is None
                                   else str(args.model)))
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pair = model if isinstance(model, PairScorer) else None
    if pair is not None and pair.error:
        print(f"warning: {pair.error}", file=sys.stderr)
    unprimed = unprimed_subjects(trials)
    for subject in unprimed:
        print(f"warning: {subject} has no walking trial (D01/D02) to learn the wearable's "
              "upright from: evaluated as a hub that has not seen the wearer walk yet "
              "(posture against the pose before each impact only, no 'already lying' check)",
              file=sys.stderr)
    baseline = PeakThresholdScorer(cfg.baseline_peak_g)
    started = time.monotonic()
    m_eval, b_eval = Evaluator(model, cfg), Evaluator(baseline, cfg)
    m_res, m_cont = m_eval.run(trials, progress=_progress("model"))
    b_res, b_cont = b_eval.run(trials, progress=_progress("baseline"))
    out = summarize(m_res, m_cont)
    out["baseline"] = summarize(b_res, b_cont)
    if args.shuffled_orders:
        out["continuous_shuffled"] = shuffled_summary(
            m_eval.run_shuffled(trials, args.shuffled_orders))
        out["baseline"]["continuous_shuffled"] = shuffled_summary(
            b_eval.run_shuffled(trials, args.shuffled_orders))
    out["baseline"]["detector"] = baseline.version
    out["baseline_published"] = published_threshold_summary(trials, cfg.baseline_peak_g)
    out["model"] = {
        "version": model.version, "threshold": model.threshold, "position": cfg.position,
        "interpreter": model.interpreter_package, "path": str(model.model_path),
        "trained_subjects": model.manifest.raw.get("data", {}).get("subjects", []),
    }
    out["model"]["scored"] = _scored(model)
    if pair is not None:
        out["model"]["pair"] = pair.describe()
    out["in_sample_subjects"] = _in_sample(out["model"]["trained_subjects"],
                                           {t.subject for t in trials})
    out["unprimed_subjects"] = unprimed
    out["settings"] = {
        "position": cfg.position, "second_model": cfg.second_model,
        "gate_g": cfg.gate_g, "confirm_s": cfg.confirm_s,
        "cancel_window_s": cfg.cancel_window_s,
        "padding": f"final 1 s of each trial repeated for {hold_s(cfg):.0f} s",
        "priming": "each trial follows 20 s of the subject's own walking (the first D01, "
                   "else D02, recording from which upright can be learnt) and a gap, so the "
                   "wearable's upright orientation is learnt as on a hub",
        "detection_delay": "impact (largest |a|) to alarm, includes the cancel window",
    }
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.trials_out is not None:
        with args.trials_out.open("w", encoding="utf-8") as fh:
            for r in m_res:
                fh.write(json.dumps(r.to_line(), separators=(",", ":")) + "\n")
        out["trials_out"] = str(args.trials_out)
    if plot:
        from agent.fall.plots import write_plots

        try:
            paths = write_plots(args.plot, trials, m_res, b_res, f"model {model.version}",
                                model.threshold, baseline.version)
        except AgentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        out["plots"] = [str(p) for p in paths]
    elif args.plot is not None:
        out["plots"] = []
    print(json.dumps(out, indent=None, separators=(",", ":")))
    return 0
