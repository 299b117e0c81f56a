"""Helpers for the fall tests: the synthetic recordings and a time-compressed runtime."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.clock import ManualClock
from agent.fall.config import FallConfig
from agent.fall.detector import FallDetector
from agent.fall.evaluation import FallReplayContext
from agent.fall.replay import motion_readings
from agent.model import Reading

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fall"


def recording(code: str) -> np.ndarray:
    with np.load(FIXTURES / "SYN01.npz") as z:
        return z[code]


def hold(samples: np.ndarray, seconds: float) -> np.ndarray:
    """The recording followed by its last second repeated (the wearer stays put)."""
    reps = int(seconds) + 1
    return np.concatenate([samples, np.tile(samples[-50:], (reps, 1))])


class Run:
    """A FallDetector on a FallReplayContext whose clock follows the replayed samples."""

    def __init__(self, cfg: FallConfig, **detector_kw: Any) -> None:
        self.cfg = cfg
        self.detector_kw = detector_kw
        self.clock = ManualClock(mono=100.0)
        self.ctx: FallReplayContext | None = None
        self.detector: FallDetector | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ex = concurrent.futures.ThreadPoolExecutor(1)
        self.ctx = FallReplayContext(loop, self._ex, self.clock)
        self.detector = FallDetector(self.cfg, tick_s=0, **self.detector_kw)
        await self.detector.start(self.ctx)

    async def stop(self) -> None:
        assert self.detector is not None
        await self.detector.stop()
        self._ex.shutdown()

    async def feed(self, readings: list[Reading]) -> None:
        assert self.ctx is not None and self.detector is not None
        for r in readings:
            if r.mono > self.clock.monotonic():
                self.clock.advance(r.mono - self.clock.monotonic())
            self.ctx.emit_reading(r)
            await self.detector.drain()
            self.detector.process_due()

    async def play(self, device: str, samples: np.ndarray, *, rate_hz: float = 50.0,
                   extra: dict[str, Any] | None = None,
                   stop_when: Callable[[], bool] | None = None) -> None:
        t0 = self.clock.monotonic() + 0.02
        for r in motion_readings(device, samples, t0, rate_hz=rate_hz, extra=extra):
            await self.feed([r])
            if stop_when is not None and stop_when():
                return

    async def wait(self, seconds: float) -> None:
        assert self.detector is not None
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            self.clock.advance(0.25)
            self.detector.process_due()
            await self.detector.drain()

    def events(self, type_: str) -> list[Any]:
        assert self.ctx is not None
        return [e for e in self.ctx.events if e.type == type_]

    def cancel(self, device: str) -> None:
        assert self.ctx is not None
        self.ctx.emit_reading(Reading(device, "cancel", data={"source": "test"},
                                      mono=self.clock.monotonic(), publish=False))
