"""Turn motion notifications into timestamped ``motion_samples`` chunks, flagging gaps.

A wearable samples on its own clock at a fixed rate; BLE delivers the samples in bursts
(several per connection event). So sample times are reconstructed, not read off arrival:
each sample is one period after the previous one, and the stream's clock is nudged a
little towards arrival times (a phase-locked loop) so the two cannot drift apart.

When samples arrive later than expected by more than ``gap_tolerance_s``, samples were
lost (a dropped notification, a radio fade): the current chunk is closed and the next one
starts at the arrival time with ``gap_before = True``. A reconnect is always a gap.
Detectors must not treat the samples on either side of a gap as continuous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.ble.wearable.profile import MotionSample

# How strongly arrival times pull the stream clock (per notification). Small: BLE bursts
# jitter by a connection interval; large enough to follow a crystal 1 % off nominal.
_PLL_GAIN = 0.05


@dataclass(frozen=True, slots=True)
class MotionChunk:
    """The ``motion_samples`` reading's data (contract names)."""

    rate_hz: float
    t0: float
    acc_g: tuple[tuple[float, float, float], ...]
    gyro_dps: tuple[tuple[float, float, float], ...] | None
    gap_before: bool
    chunk: int

    def as_data(self) -> dict[str, object]:
        return {
            "rate_hz": self.rate_hz,
            "t0": self.t0,
            "acc_g": self.acc_g,
            "gyro_dps": self.gyro_dps,
            "gap_before": self.gap_before,
            "chunk": self.chunk,
        }


class MotionStream:
    def __init__(self, rate_hz: float, chunk_size: int, gap_tolerance_s: float | None = None,
                 has_gyro: bool = True) -> None:
        if rate_hz <= 0 or chunk_size < 1:
            raise ValueError("rate_hz must be > 0 and chunk_size >= 1")
        self.rate_hz = rate_hz
        self.period = 1.0 / rate_hz
        self.chunk_size = chunk_size
        self.tolerance = gap_tolerance_s if gap_tolerance_s is not None else max(
            0.25, 5 * self.period)
        self.has_gyro = has_gyro
        self._t_next: float | None = None
        self._t0: float | None = None
        self._acc: list[tuple[float, float, float]] = []
        self._gyro: list[tuple[float, float, float]] = []
        self._gap_next = False
        self._chunk_gap = False
        self.chunks = 0
        self.samples = 0
        self.gaps = 0
        self.lost_estimate = 0

    def set_rate(self, rate_hz: float) -> list[MotionChunk]:
        """The device confirmed a different rate: close what we have, restart timing."""
        out = self.break_stream()
        self.rate_hz = rate_hz
        self.period = 1.0 / rate_hz
        return out

    def break_stream(self) -> list[MotionChunk]:
        """A disconnect or reconnect: emit the partial chunk; the next samples follow a gap."""
        out = self._flush()
        if self._t_next is not None:
            self._gap_next = True
        self._t_next = None
        return out

    def push(self, samples: Sequence[MotionSample], arrival: float) -> list[MotionChunk]:
        """``samples`` arrived (monotonic ``arrival``); returns the chunks that completed."""
        if not samples:
            return []
        out: list[MotionChunk] = []
        first = arrival - (len(samples) - 1) * self.period
        if self._t_next is None:
            t = first
        else:
            lag = first - self._t_next
            if lag > self.tolerance:
                out.extend(self._flush())
                self.gaps += 1
                self.lost_estimate += max(1, round(lag / self.period))
                self._gap_next = True
                t = first
            elif lag < -self.tolerance:
                # Faster than nominal (device clock or a backlog burst): re-anchor, not a gap.
                out.extend(self._flush())
                t = first
            else:
                t = self._t_next + _PLL_GAIN * lag
        for s in samples:
            if not self._acc:
                self._t0 = t
                self._chunk_gap = self._gap_next
                self._gap_next = False
            self._acc.append(s.acc_g)
            if self.has_gyro:
                self._gyro.append(s.gyro_dps or (0.0, 0.0, 0.0))
            self.samples += 1
            t += self.period
            if len(self._acc) >= self.chunk_size:
                out.extend(self._flush())
        self._t_next = t
        return out

    def _flush(self) -> list[MotionChunk]:
        if not self._acc or self._t0 is None:
            return []
        chunk = MotionChunk(
            rate_hz=self.rate_hz,
            t0=self._t0,
            acc_g=tuple(self._acc),
            gyro_dps=tuple(self._gyro) if self.has_gyro else None,
            gap_before=self._chunk_gap,
            chunk=self.chunks,
        )
        self.chunks += 1
        self._acc = []
        self._gyro = []
        self._t0 = None
        self._chunk_gap = False
        return [chunk]
