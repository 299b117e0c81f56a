"""Learn which way is "up" for a wearable from the wearer's own walking.

The model's features do not depend on how the wearable is mounted, but that leaves one
question open: was the wearer upright before an impact, or already lying (rolling over in
bed looks like a fall relative to the pose just before it). People walk every day, and
while walking the trunk is upright, so the mean acceleration over a few steps points
"down" in the wearable's own frame. We keep a slowly-forgetting average of it over walking
blocks; once enough walking was seen, confirmation measures posture against it.

Walking is recognised per two-second block: mean |a| near 1 g, a spread of |a| typical of
steps, |a| crossing its mean 4-18 times, and |a| repeating itself at a step period of
0.26-1 s (autocorrelation). Block boundaries are
fixed on the sample index, so any chunking gives the same result.
"""

from __future__ import annotations

import numpy as np

from agent.fall.signal import magnitude, unit

BLOCK = 100              # two seconds at 50 Hz
MIN_BLOCKS = 5           # ten seconds of walking before the estimate is used
FORGET = 0.05            # weight of each new walking block
OUTLIER_DEG = 40.0       # a "walking" block this far from the estimate is set aside...
REMOUNT_BLOCKS = 10      # ...unless this many agree with each other: the wearable was re-clipped
STEP_SPREAD_G = (0.08, 0.9)
MEAN_G = (0.85, 1.2)
CROSSINGS = (4, 18)
STEP_LAGS = (13, 50)     # a step every 0.26-1.0 s
MIN_PERIODICITY = 0.3    # autocorrelation at the step period


def is_walking(block: np.ndarray) -> bool:
    m = magnitude(block)
    mean = float(m.mean())
    if not MEAN_G[0] <= mean <= MEAN_G[1]:
        return False
    if not STEP_SPREAD_G[0] <= float(m.std()) <= STEP_SPREAD_G[1]:
        return False
    above = m > mean
    crossings = int(np.count_nonzero(above[1:] != above[:-1]))
    if not CROSSINGS[0] <= crossings <= CROSSINGS[1]:
        return False
    x = (m - mean).astype(np.float64)
    energy = float(x @ x)
    ac = max(float(x[:-lag] @ x[lag:]) / energy * len(x) / (len(x) - lag)
             for lag in range(STEP_LAGS[0], STEP_LAGS[1] + 1))
    return ac >= MIN_PERIODICITY


class UprightCalibration:
    def __init__(self) -> None:
        self._pending = np.empty((0, 3), dtype=np.float32)
        self._sum = np.zeros(3, dtype=np.float64)
        self._outliers: list[np.ndarray] = []
        self.walking_blocks = 0

    @property
    def upright(self) -> np.ndarray | None:
        """Unit vector of gravity while walking, in the wearable's frame; None until known."""
        if self.walking_blocks < MIN_BLOCKS:
            return None
        return unit(self._sum.astype(np.float32))

    def reset_partial(self) -> None:
        """A gap in the stream: never join blocks across it (the estimate itself stays)."""
        self._pending = np.empty((0, 3), dtype=np.float32)

    def feed(self, acc: np.ndarray) -> None:
        data = np.concatenate([self._pending, acc]) if len(self._pending) else acc
        full = len(data) // BLOCK * BLOCK
        for start in range(0, full, BLOCK):
            block = data[start:start + BLOCK]
            if is_walking(block):
                self._add(block.mean(axis=0).astype(np.float64))
        self._pending = data[full:].copy()

    def _add(self, direction: np.ndarray) -> None:
        direction = direction / max(float(np.linalg.norm(direction)), 1e-6)
        if self.walking_blocks >= MIN_BLOCKS and _angle_deg(direction, self._sum) > OUTLIER_DEG:
            self._outliers.append(direction)
            mean = np.mean(self._outliers, axis=0)
            if len(self._outliers) >= REMOUNT_BLOCKS and all(
                    _angle_deg(d, mean) <= OUTLIER_DEG for d in self._outliers):
                self._sum = mean / max(float(np.linalg.norm(mean)), 1e-6)
                self.walking_blocks = len(self._outliers)
                self._outliers = []
            elif len(self._outliers) > REMOUNT_BLOCKS:
                self._outliers.pop(0)
            return
        self._outliers = []
        if self.walking_blocks == 0:
            self._sum = direction
        else:
            self._sum = (1 - FORGET) * self._sum + FORGET * direction
        self.walking_blocks += 1


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def upright_from(acc: np.ndarray) -> np.ndarray | None:
    """The estimate after a whole recording (training and tests)."""
    cal = UprightCalibration()
    cal.feed(np.asarray(acc, dtype=np.float32))
    return cal.upright
