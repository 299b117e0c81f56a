"""``tec-agent eval-fall --data DIR [--model PATH] [--plot OUTDIR] [--shuffled-orders N]``.

Runs every trial under DIR (the format of ``../shared/data/fall/``) through the runtime
fall detector, time-compressed, once with the model and once with the threshold fallback,
plus the continuous test (each subject's daily activities back to back), and prints one
JSON object. With ``--shuffled-orders N`` the continuous test is repeated with each
subject's recordings in N seeded random orders (``continuous_shuffled``): which postures
meet at the junctions between recordings changes the count. Note that trials the model was
trained on give in-sample figures: the cross-validated, held-out figures are in
``models/fall/manifest.json`` (``cv``).
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
    p = sub.add_parser(
        "eval-fall",
        help="evaluate fall detection on recorded trials through the runtime path",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--data", required=True, type=Path,
                   help="directory of SUBJECT.npz recordings (format of shared/data/fall)")
    p.add_argument("--model", type=Path,
                   help="fall.tflite to evaluate (manifest.json beside it); default: shipped")
    p.add_argument("--plot", type=Path, metavar="OUTDIR",
                   help="write PNGs: confusion matrix, score distributions, example signals")
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


def cmd_eval_fall(args: argparse.Namespace) -> int:
    from agent.fall.config import FallConfig
    from agent.fall.dataset import load_trials
    from agent.fall.evaluation import (
        Evaluator,
        hold_s,
        published_threshold_summary,
        shuffled_summary,
        summarize,
    )
    from agent.fall.scoring import PeakThresholdScorer
    from agent.fall.tflite_model import TfliteFallModel

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # Every suspected fall is logged at WARNING on a hub; thousands of trials would drown
    # the report.
    logging.getLogger("agent.fall").setLevel(logging.ERROR)
    if not args.data.is_dir():
        print(f"error: {args.data}: not a directory", file=sys.stderr)
        return 2
    if args.shuffled_orders < 0:
        print("error: --shuffled-orders must be 0 or more", file=sys.stderr)
        return 2
    cfg = FallConfig()
    try:
        trials = load_trials(args.data)
        model = TfliteFallModel(args.model, interpreter=cfg.interpreter)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
        "version": model.version, "threshold": model.threshold,
        "interpreter": model.interpreter_package, "path": str(model.model_path),
        "trained_subjects": model.manifest.raw.get("data", {}).get("subjects", []),
    }
    trained = set(out["model"]["trained_subjects"])
    seen = sorted(trained & {t.subject for t in trials})
    out["in_sample_subjects"] = seen
    out["settings"] = {
        "gate_g": cfg.gate_g, "confirm_s": cfg.confirm_s,
        "cancel_window_s": cfg.cancel_window_s,
        "padding": f"final 1 s of each trial repeated for {hold_s(cfg):.0f} s",
        "priming": "each trial follows 20 s of the subject's own walking (D01) and a gap, "
                   "so the wearable's upright orientation is learnt as on a hub",
        "detection_delay": "impact (largest |a|) to alarm, includes the cancel window",
    }
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.plot is not None:
        from agent.fall.plots import write_plots

        try:
            paths = write_plots(args.plot, trials, m_res, b_res, f"model {model.version}",
                                model.threshold, baseline.version)
        except AgentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        out["plots"] = [str(p) for p in paths]
    print(json.dumps(out, indent=None, separators=(",", ":")))
    return 0
