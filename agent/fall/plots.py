"""PNG figures for ``tec-agent eval-fall --plot`` (needs matplotlib: ``pip install .[plot]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentError
from agent.fall.dataset import Trial
from agent.fall.evaluation import TrialResult
from agent.fall.signal import SAMPLE_RATE_HZ, magnitude


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise AgentError("--plot needs matplotlib (from a checkout: .venv/bin/pip install -e "
                         "'.[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(out_dir: Path, trials: Sequence[Trial], model: Sequence[TrialResult],
                baseline: Sequence[TrialResult], model_name: str, threshold: float,
                baseline_name: str) -> list[Path]:
    """The confusion matrices, the score distributions and up to three example trials."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _confusion_matrices(plt, out_dir, ((model, model_name), (baseline, baseline_name))),
        _score_distributions(plt, out_dir, model, threshold),
    ]
    by_key = {t.key: t for t in trials}
    for name, r, what in _examples(model):
        written.append(_example(plt, out_dir / name, by_key[f"{r.subject}/{r.code}"], r, what))
    return written


def confusion(results: Sequence[TrialResult]) -> np.ndarray:
    """[[tp, fn], [fp, tn]]: falls and daily activities against alarm / no alarm."""
    tp = sum(r.detected for r in results if r.is_fall)
    fn = sum(not r.detected for r in results if r.is_fall)
    fp = sum(r.detected for r in results if not r.is_fall)
    tn = sum(not r.detected for r in results if not r.is_fall)
    return np.array([[tp, fn], [fp, tn]])


def _confusion_matrices(plt: Any, out_dir: Path,
                        runs: Sequence[tuple[Sequence[TrialResult], str]]) -> Path:
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.6))
    for ax, (results, title) in zip(axes, runs, strict=True):
        m = confusion(results)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > m.max() / 2 else "black")
        ax.set_xticks([0, 1], ["alarm", "no alarm"])
        ax.set_yticks([0, 1], ["fall", "ADL"])
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, out_dir / "confusion_matrix.png")


def _score_distributions(plt: Any, out_dir: Path, model: Sequence[TrialResult],
                         threshold: float) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 1, 41)
    falls = [r.impact_score for r in model if r.is_fall and r.impact_score is not None]
    adls = [r.max_score for r in model if not r.is_fall and r.max_score is not None]
    ax.hist(adls, bins=bins, alpha=0.6, label=f"ADL, highest window ({len(adls)} trials)",
            log=True)
    ax.hist(falls, bins=bins, alpha=0.6, label=f"fall, impact window ({len(falls)} trials)",
            log=True)
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("model score")
    ax.set_ylabel("trials")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, out_dir / "score_distributions.png")


def _examples(model: Sequence[TrialResult]) -> list[tuple[str, TrialResult, str]]:
    """(file name, trial result, caption): the first detected fall, the first missed fall
    and the highest-scoring daily activity, those that exist."""
    examples = []
    detected = [r for r in model if r.is_fall and r.detected]
    if detected:
        examples.append(("example_fall.png", detected[0], "fall detected"))
    missed = [r for r in model if r.is_fall and not r.detected]
    if missed:
        examples.append(("example_missed_fall.png", missed[0], "fall missed"))
    adl_scored = [r for r in model if not r.is_fall and r.max_score is not None]
    if adl_scored:
        near = max(adl_scored, key=lambda r: r.max_score or 0.0)
        examples.append(("example_near_miss.png", near,
                         "false alarm" if near.detected else "near miss (highest-scoring ADL)"))
    return examples


def _example(plt: Any, path: Path, trial: Trial, r: TrialResult, what: str) -> Path:
    mag = magnitude(trial.acc_g)
    t = np.arange(len(mag)) / SAMPLE_RATE_HZ
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(t, mag, lw=0.8)
    ax.set_xlabel("s")
    ax.set_ylabel("|a| (g)")
    score = r.impact_score if r.is_fall else r.max_score
    alarm = "" if r.delay_s is None else f", alarm after {r.delay_s:.1f} s"
    ax.set_title(f"{trial.key}: {what}; score {score if score is not None else '-'}{alarm}",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
