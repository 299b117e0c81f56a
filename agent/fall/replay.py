"""Recorded motion as ``motion_samples`` readings: the same path a live wearable takes.

:func:`motion_readings` chunks an int16 recording (milli-g, 0.1 deg/s at 50 Hz, the
format of ``../shared/data/fall/``) into readings exactly as the BLE wearable driver emits
them. :class:`ReplaySource` is a component that emits such readings into a running agent,
either paced in real time or *backdated* (the whole recording is delivered at once, stamped
as if it had just happened), which is how tests and demos inject a fall without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from agent.aio import cancel_and_wait
from agent.fall.dataset import ACC_G_PER_COUNT, GYRO_DPS_PER_COUNT
from agent.fall.signal import SAMPLE_RATE_HZ
from agent.model import Priority, Reading
from agent.ports import AgentContext, DeviceInfo

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 25   # 0.5 s per reading, like the wearable driver


def motion_readings(
    device_id: str,
    samples: np.ndarray,
    t0: float,
    *,
    wall0: float | None = None,
    rate_hz: float = SAMPLE_RATE_HZ,
    chunk: int = CHUNK_SAMPLES,
    first_chunk: int = 0,
    gap_before: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[Reading]:
    """Readings for an int16 ``(n, 6)`` (or ``(n, 3)``, no gyro) recording starting at
    monotonic time ``t0``. Each reading is stamped when its last sample was taken."""
    samples = np.asarray(samples)
    acc = np.round(samples[:, :3].astype(np.float64) * ACC_G_PER_COUNT, 4)
    gyro = (np.round(samples[:, 3:6].astype(np.float64) * GYRO_DPS_PER_COUNT, 2)
            if samples.shape[1] >= 6 else None)
    wall0 = t0 if wall0 is None else wall0
    for k, start in enumerate(range(0, len(samples), chunk)):
        stop = min(start + chunk, len(samples))
        t_first = t0 + start / rate_hz
        t_last = t0 + (stop - 1) / rate_hz
        data: dict[str, Any] = dict(extra or {})
        data.update({
            "rate_hz": rate_hz,
            "t0": t_first,
            "acc_g": tuple(map(tuple, acc[start:stop].tolist())),
            "gyro_dps": None if gyro is None else tuple(map(tuple, gyro[start:stop].tolist())),
            "gap_before": gap_before and k == 0,
            "chunk": first_chunk + k,
            "source": "replay",
        })
        yield Reading(device_id=device_id, type="motion_samples", priority=Priority.TELEMETRY,
                      data=data, mono=t_last, wall=wall0 + (t_last - t0), publish=False)


class ReplaySource:
    """A component that replays one recording into the agent as a wearable would.

    By default it backdates: every reading is emitted at start, stamped so that the last
    sample is "now". With ``paced=True`` each reading is emitted when its last sample is
    due, in real time, as a live wearable would.
    """

    def __init__(self, device_id: str, samples: np.ndarray, *, paced: bool = False,
                 room: str = "", role: str = "") -> None:
        self.name = f"replay:{device_id}"
        self.device_id = device_id
        self.samples = np.asarray(samples)
        self.paced = paced
        self.extra = {"room": room, "role": role}
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: AgentContext) -> None:
        self._task = ctx.loop.create_task(self._run(ctx), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(self.device_id, "wearable", "replay", online=True)]

    async def _run(self, ctx: AgentContext) -> None:
        n = len(self.samples)
        now_mono, now_wall = ctx.clock.monotonic(), ctx.clock.wall()
        if not self.paced:
            t0 = now_mono - (n - 1) / SAMPLE_RATE_HZ
            for r in motion_readings(self.device_id, self.samples, t0,
                                     wall0=now_wall - (now_mono - t0), extra=self.extra):
                ctx.emit_reading(r)
        else:
            t0 = now_mono
            for r in motion_readings(self.device_id, self.samples, t0, wall0=now_wall,
                                     extra=self.extra):
                delay = r.mono - ctx.clock.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                ctx.emit_reading(r)
        log.info("%s: replayed %d samples", self.name, n)
        self.done.set()
