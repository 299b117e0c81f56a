"""Cancel recently raised alarms from the hub's cancel button (or a wearable's)."""

from __future__ import annotations

import collections
import logging

from agent.model import Event, Priority, Reading
from agent.ports import AgentContext, DeviceInfo

log = logging.getLogger(__name__)


class AlarmCanceller:
    """A ``cancel`` reading produces one ``alarm_cancelled`` event naming the alarms raised in
    the last ``window_s`` seconds. The alarms themselves were already stored and are still
    delivered: the monitoring centre sees both, in order, and can stand down."""

    name = "alarm-canceller"

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._recent: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=256)
        self._cancelled: set[str] = set()
        self._ctx: AgentContext | None = None

    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        ctx.subscribe_events(self._on_event)
        ctx.subscribe_readings(self._on_reading)

    async def stop(self) -> None:
        self._ctx = None

    def devices(self) -> list[DeviceInfo]:
        return []

    def _on_event(self, event: Event) -> None:
        if event.priority == Priority.ALARM:
            self._recent.append((event.mono, event.id, event.type))

    def _on_reading(self, reading: Reading) -> None:
        if reading.type != "cancel" or self._ctx is None:
            return
        now = reading.mono
        hits = [
            (eid, etype) for mono, eid, etype in self._recent
            if now - mono <= self.window_s and eid not in self._cancelled
        ]
        if not hits:
            log.info("cancel pressed on %s with no alarm in the last %.0f s",
                     reading.device_id, self.window_s)
            return
        self._cancelled.update(eid for eid, _ in hits)
        self._ctx.submit_event(Event(
            type="alarm_cancelled",
            priority=Priority.INFO,
            device_id=reading.device_id,
            data={"cancelled_ids": [e for e, _ in hits], "cancelled_types": [t for _, t in hits],
                  "source": reading.data.get("source", reading.device_id)},
        ))
