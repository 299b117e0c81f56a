"""The impact gate: a cheap streaming peak finder on |a| that decides when the model runs.

A sample ``p`` is an impact candidate when ``|a|[p] >= gate_g`` and it is the largest value
within ``radius`` samples on either side (strictly larger than the ones before it, at least
as large as the ones after). The streaming form below emits exactly the peaks the offline
definition finds, ``radius`` samples after they happen, so training (which runs this same
class over whole recordings) and the live stream agree sample for sample.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agent.fall.signal import PEAK_RADIUS


class ImpactGate:
    """Feed |a| values in order; get back ``(index, peak_g)`` of confirmed peaks."""

    def __init__(self, gate_g: float, radius: int = PEAK_RADIUS) -> None:
        self.gate_g = float(gate_g)
        self.radius = int(radius)
        self._recent: deque[float] = deque(maxlen=self.radius)
        self._index = 0                      # absolute index of the next sample
        self._cand: tuple[int, float] | None = None

    @property
    def next_index(self) -> int:
        return self._index

    def reset(self, next_index: int | None = None) -> None:
        """Forget history (after a gap in the stream)."""
        self._recent.clear()
        self._cand = None
        if next_index is not None:
            self._index = next_index

    def flush(self) -> list[tuple[int, float]]:
        """The stream stopped: hand over the current candidate without waiting ``radius``."""
        cand, self._cand = self._cand, None
        return [] if cand is None else [cand]

    def feed(self, mags: np.ndarray) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        if self._cand is None and len(mags) and float(mags.max()) < self.gate_g:
            # Fast path: nothing can become a candidate in this chunk.
            self._recent.extend(float(m) for m in mags[-self.radius:])
            self._index += len(mags)
            return out
        for m in mags.tolist():
            i = self._index
            cand = self._cand
            if cand is not None:
                if m > cand[1]:
                    cand = self._cand = None
                elif i - cand[0] >= self.radius:
                    out.append(cand)
                    cand = self._cand = None
            if cand is None and m >= self.gate_g and (not self._recent or m > max(self._recent)):
                self._cand = (i, m)
                if self.radius == 0:
                    out.append(self._cand)
                    self._cand = None
            self._recent.append(m)
            self._index = i + 1
        return out


def find_peaks(
    mags: np.ndarray, gate_g: float, radius: int = PEAK_RADIUS
) -> list[tuple[int, float]]:
    """All candidates in a whole recording (peaks in the last ``radius`` samples excluded)."""
    return ImpactGate(gate_g, radius).feed(np.asarray(mags, dtype=np.float32))
