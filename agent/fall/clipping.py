"""Whether a wearable's accelerometer clips at a full-scale range too small for the fall model.

A MEMS accelerometer set to a small full-scale range reports every larger acceleration as
its rail value, so a hard movement shows a *flat top*: the same value on one axis for
several samples in a row. A ±8 g or ±16 g device almost never does that below its rail. On
the data sets here, held out, with the recordings clipped to a smaller range
(models/fall/README.md, "Accelerometer range"):

- ±4 g changes no figure at any position.
- ±2 g loses 12 of 274 detected neck floor falls, 22 of 162 at the FallAllD waist and 8 of
  1,331 on SisFall.

And ±2 g is what some wearables run at out of the box. Nordic's Thingy:52 firmware 2.x
never sets the range, so the MPU-9250 stays at the eMPL driver's ±2 g (``mpu_init``:
``mpu_set_accel_fsr(2)``).

So the fall detector watches each wearable. :class:`ClipMonitor` counts flat-top runs:
``FLAT_RUN`` samples within ``FLAT_TOL_G`` of each other, at ``FLAT_MIN_G`` or more on one
axis, entered by a steep step (a rail cuts a rising movement off; a coarse device reaches
the top of a smooth bump one quantisation step at a time). Once ``EPISODES`` runs agree on a
level within ``LEVEL_TOL_G``, and no sample has gone beyond it, that level is where the
device clips. Below ``WARN_BELOW_G`` the detector raises one ``accelerometer_clipping``
warning for the device, and the wearable should be reconfigured or replaced.

Measured with this monitor on whole recordings in half-second batches, per person:

- Unclipped (FallAllD's neck and waist, SisFall): no person shows more than one run, and
  nobody is concluded.
- Clipped at 2 g: all 8 FallAllD people at each position and 25 of SisFall's 28 are
  concluded at 2.0 g. The other three are older volunteers with few hard movements.
- Clipped at 4 g: one SisFall person is concluded at 4.0 g, which is no warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FLAT_MIN_G = 1.5      # below this a flat run is a still wearer, not a rail
FLAT_RUN = 3          # consecutive samples (60 ms at 50 Hz)
FLAT_TOL_G = 0.002    # "the same value": within 2 mg (a device's LSB at ±16 g is 0.5 mg)
LEVEL_TOL_G = 0.03    # runs at one rail agree within 30 mg (calibration offsets differ per axis)
EPISODES = 5          # runs at one level before concluding
MIN_RANGE_G = 4.0     # the smallest full-scale range measured harmless (±2 g costs falls)
WARN_BELOW_G = MIN_RANGE_G - 0.5   # a ±4 g rail reads a little under 4 g after calibration
MAX_LEVELS = 64       # memory bound: the most recent runs' levels
STEEP_LSBS = 2.5      # a run entered by a step this many device LSBs or more (see _feed_axis)


@dataclass
class ClipMonitor:
    """Fed each batch of one wearable's samples (g, shape (n, 3)); says once where it clips."""

    levels: list[float] = field(default_factory=list)
    clip_g: float | None = None
    max_g: float = 0.0     # the largest |axis| value seen: a rail is never exceeded
    lsb_g: float = float("inf")   # the smallest change seen between two samples
    _anchor: list[float | None] = field(default_factory=lambda: [None, None, None])
    _length: list[int] = field(default_factory=lambda: [0, 0, 0])
    _entry: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _last: list[float | None] = field(default_factory=lambda: [None, None, None])

    def feed(self, acc_g: np.ndarray) -> float | None:
        """The level the device clips at, the first time it is known; else None."""
        if self.clip_g is not None:
            return None
        mag = np.abs(np.asarray(acc_g, dtype=np.float64))
        if not mag.size:
            return None
        self.max_g = max(self.max_g, float(mag.max()))
        if self.lsb_g > FLAT_TOL_G:   # once the resolution is this fine, it cannot matter
            self._learn_lsb(mag)
        if mag.max() < FLAT_MIN_G and all(a is None for a in self._anchor):
            self._last = [float(v) for v in mag[-1]]
            return None
        for axis in range(3):
            self._feed_axis(axis, mag[:, axis])
        return self._conclude()

    def _feed_axis(self, axis: int, values: np.ndarray) -> None:
        """A run counts only if it was entered by a step of ``STEEP_LSBS`` of the device's
        resolution or more: a rail cuts a movement off mid-rise, while the top of a
        smooth bump on a coarse device (an 8-bit +-8 g part steps 62.5 mg) is reached one
        step at a time and repeats a value just the same."""
        anchor, length = self._anchor[axis], self._length[axis]
        entry, last = self._entry[axis], self._last[axis]
        for v in values.tolist():
            if anchor is not None and v >= FLAT_MIN_G and abs(v - anchor) <= FLAT_TOL_G:
                length += 1
                if length == FLAT_RUN and entry >= STEEP_LSBS * self.lsb_g:
                    self.levels.append(anchor)
                    del self.levels[:-MAX_LEVELS]
            elif v >= FLAT_MIN_G:
                anchor, length = v, 1
                entry = abs(v - last) if last is not None else 0.0
            else:
                anchor, length = None, 0
            last = v
        self._anchor[axis], self._length[axis] = anchor, length
        self._entry[axis], self._last[axis] = entry, last

    def _learn_lsb(self, mag: np.ndarray) -> None:
        """The device's resolution: the smallest non-zero change between two samples."""
        prev = np.array([np.nan if v is None else v for v in self._last])
        steps = np.abs(np.diff(np.vstack([prev[None], mag]), axis=0))
        steps = steps[np.isfinite(steps) & (steps > 0)]
        if steps.size:
            self.lsb_g = min(self.lsb_g, float(steps.min()))

    def _conclude(self) -> float | None:
        if len(self.levels) < EPISODES:
            return None
        levels = np.asarray(self.levels)
        # a level some sample went beyond is no rail
        for level in levels[::-1]:
            if level < self.max_g - LEVEL_TOL_G:
                continue
            near = levels[np.abs(levels - level) <= LEVEL_TOL_G]
            if len(near) >= EPISODES:
                self.clip_g = round(float(np.median(near)), 3)
                return self.clip_g
        return None
