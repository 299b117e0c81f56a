"""The simulated sensor paces its readings like a real one, even after its consumer stalls."""

from __future__ import annotations

import asyncio
import time

from agent.model import Priority, Reading
from agent.sim.scenarios import SimSource


class _SlowContext:
    """Takes 80 ms over the first reading (a stalled loop), then is quick."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def emit_reading(self, r: Reading) -> None:
        self.stamps.append(r.mono)
        if len(self.stamps) == 1:
            time.sleep(0.08)


def test_readings_after_a_stall_are_not_emitted_in_one_burst() -> None:
    ctx = _SlowContext()
    sim = SimSource()
    asyncio.run(sim.start(ctx))  # type: ignore[arg-type]
    rate = 100.0
    readings = [Reading("s", "telemetry", Priority.TELEMETRY, {"n": n}) for n in range(6)]
    sim.emit_from_thread(readings, rate).join(5)
    assert len(ctx.stamps) == 6
    gaps = [b - a for a, b in zip(ctx.stamps, ctx.stamps[1:], strict=False)]
    # Caught up after the stall, readings 2..8 would come out back to back (gaps ~0).
    assert min(gaps) >= 0.9 / rate, gaps
