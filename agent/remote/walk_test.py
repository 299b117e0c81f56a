"""Walk test: an installer or carer triggers every sensor in turn while support watches.

While active, every sensor trigger becomes a ``walk_test`` info event naming the device,
so support sees each one arrive at the platform. Nothing is suppressed: a real pull cord
pulled during a walk test is still an alarm (the ``walk_test`` event comes on top). The
test ends by itself after its duration so a forgotten one does not flood the platform.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agent.model import MEASUREMENT, Event, Priority, Reading
from agent.ports import AgentContext

log = logging.getLogger(__name__)

# Raw streams and periodic measurements are not "a sensor was triggered".
_NOT_TRIGGERS = frozenset({"motion_samples", "telemetry", MEASUREMENT})


class WalkTest:
    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self._ctx: AgentContext | None = None
        self._until: float | None = None
        self._started_wall: float | None = None
        self._counts: dict[str, int] = {}

    def attach(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        ctx.subscribe_readings(self._on_reading)

    def detach(self) -> None:
        self._ctx = None
        self._until = None

    @property
    def active(self) -> bool:
        return self._until is not None and time.monotonic() < self._until

    def start(self, duration_s: float) -> dict[str, Any]:
        duration_s = min(duration_s, self.max_s)
        self._until = time.monotonic() + duration_s
        self._started_wall = time.time()
        self._counts = {}
        log.info("walk test started for %.0f s", duration_s)
        return {"active": True, "remaining_s": round(duration_s, 1)}

    def stop(self, configured: list[str]) -> dict[str, Any]:
        was_active = self.active
        self._until = None
        triggered = dict(sorted(self._counts.items()))
        log.info("walk test stopped: %d devices triggered", len(triggered))
        return {"active": False, "was_active": was_active, "triggered": triggered,
                "not_triggered": sorted(d for d in configured if d not in triggered)}

    def status(self) -> dict[str, Any]:
        remaining = max(0.0, self._until - time.monotonic()) if self.active and self._until else 0.0
        return {"active": self.active, "remaining_s": round(remaining, 1),
                "triggered": dict(sorted(self._counts.items()))}

    def _on_reading(self, reading: Reading) -> None:
        if self._ctx is None or self._until is None:
            return
        if time.monotonic() >= self._until:
            self._until = None
            log.info("walk test ended after its duration")
            return
        if reading.type in _NOT_TRIGGERS or reading.type == "walk_test":
            return
        self._counts[reading.device_id] = self._counts.get(reading.device_id, 0) + 1
        data = {"reading": reading.type, "room": reading.data.get("room", ""),
                "role": reading.data.get("role", ""), "source": reading.data.get("source", "")}
        self._ctx.submit_event(Event(type="walk_test", priority=Priority.INFO,
                                     device_id=reading.device_id, data=data,
                                     wall=reading.wall, mono=reading.mono))
