"""What the stream asks of a fall scorer, and the published threshold detector.

The learned model and the fallback share one interface so the stream, the confirmation
step and the evaluation treat them identically: ``score(window)`` on a raw acceleration
window (g) centred on the impact peak, compared with ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agent.fall.signal import PRE_SAMPLES, magnitude


@dataclass(frozen=True, slots=True)
class ModelScore:
    """One model's own score and threshold for a window, where more than one model scores
    it (:class:`agent.fall.pair.PairScorer`): the fall event names which model passed."""

    role: str          # "shipped" | "second"
    version: str
    score: float
    threshold: float

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "model_version": self.version,
                "score": round(self.score, 4), "threshold": round(self.threshold, 4),
                "passed": self.passed}


class Scorer(Protocol):
    kind: str          # "model" or "baseline"
    version: str       # goes into every fall event
    threshold: float   # score >= threshold is a detection

    def score(self, window: np.ndarray) -> float:
        """Score one (WINDOW_SAMPLES, 3) window in g. Called in the inference executor."""


class PeakThresholdScorer:
    """Bourke et al. 2007: a fall when the resultant trunk acceleration exceeds the upper
    fall threshold (3.52 g at the trunk in their study). With the same posture/stillness
    confirmation as the model it is both the fallback and the benchmark baseline.

    A. K. Bourke, J. V. O'Brien, G. M. Lyons, "Evaluation of a threshold-based tri-axial
    accelerometer fall detection algorithm", Gait & Posture 26(2):194-199, 2007.
    """

    kind = "baseline"

    def __init__(self, peak_g: float = 3.52) -> None:
        self.threshold = float(peak_g)
        self.version = f"bourke2007-uft-{self.threshold:g}g"

    def score(self, window: np.ndarray) -> float:
        # The window is centred on the gate's peak; look +-0.2 s around it.
        seg = window[max(0, PRE_SAMPLES - 10):PRE_SAMPLES + 10]
        return float(magnitude(seg).max())
