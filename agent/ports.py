"""Ports: the protocols the application wires together in ``agent/app.py``.

A *component* is anything with a life cycle that plugs into the agent: a driver (GPIO,
serial, BLE), a detector (fall, inactivity), an output (status LED, buzzer). It receives an
:class:`AgentContext` at start and must not construct its own collaborators.

Threading rule: everything on ``AgentContext`` is called on the agent's asyncio loop,
except :meth:`AgentContext.emit_reading`, which any thread may call (it hops to the loop with
``call_soon_threadsafe``). Never block the loop: blocking I/O belongs in a driver thread,
inference in ``ctx.executor``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agent.clock import Clock
from agent.model import Event, Reading


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a driver knows about one configured device (inventory, supervision, reports)."""

    device_id: str
    kind: str
    driver: str
    online: bool | None = None
    last_seen_wall: float | None = None
    battery_pct: float | None = None
    rssi: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the outputs (LED, buzzer) and commands need to know, as one immutable value."""

    online: bool = False
    backlog: int = 0
    alarm_pending: bool = False          # an alarm is stored but not yet acknowledged
    last_alarm_delivered_mono: float | None = None
    prewarning: bool = False             # a detector is counting down to an alarm
    storage_failed: bool = False         # an alarm/warning could not be stored (held in memory)
    arc_path_down: bool = False          # an ARC receiver stopped answering (agent/arc/)


class AgentContext(Protocol):
    hub_id: str
    clock: Clock
    loop: asyncio.AbstractEventLoop
    executor: concurrent.futures.Executor   # single worker, for inference

    def emit_reading(self, reading: Reading) -> None:
        """Thread-safe: hand a reading to the loop. Returns at once."""

    def submit_event(self, event: Event) -> None:
        """Loop only: store ``event`` durably (batched commit) and queue it for upload."""

    def subscribe_readings(self, callback: Callable[[Reading], None]) -> None:
        """Loop only: ``callback(reading)`` on the loop for every reading, published or not."""

    def subscribe_events(self, callback: Callable[[Event], None]) -> None:
        """Loop only: ``callback(event)`` on the loop after each event is committed."""

    def subscribe_acks(self, callback: Callable[[int], None]) -> None:
        """Loop only: ``callback(seq)`` when the broker acknowledged the event ``seq``."""

    def subscribe_refused(self, callback: Callable[[Event], None]) -> None:
        """Loop only: ``callback(event)`` once for each alarm or warning the store refused
        (a failing or full card): it is held in memory, spilled and retried, but NOT
        committed, so acknowledge nothing upstream on it. A second alarm path (serial
        escalation) may act on it; if it is stored later, ``subscribe_events`` hears of it
        again with its seq."""

    def subscribe_state(self, callback: Callable[[AgentState], None]) -> None:
        """Loop only: ``callback(state)`` whenever :class:`AgentState` changes."""

    def set_prewarning(self, source: str, active: bool) -> None:
        """A detector says it is (or no longer is) counting down to an alarm."""

    def publish_device_state(self, device_id: str, state: dict[str, Any]) -> None:
        """Loop only: retained device state on ``tec/v1/{hub_id}/device/{device_id}`` (best
        effort; may be sent a moment later than the events emitted with it)."""

    def pending_alarms(self) -> list[Event]:
        """Alarms an earlier run stored that the broker has not acknowledged and no second
        path has taken up yet (serial escalation re-arms them after a restart)."""

    def event_delivered(self, event_id: str) -> bool | None:
        """True if acknowledged by the broker, False if pending, None if unknown."""


@runtime_checkable
class Component(Protocol):
    name: str

    async def start(self, ctx: AgentContext) -> None: ...

    async def stop(self) -> None: ...

    def devices(self) -> list[DeviceInfo]: ...
