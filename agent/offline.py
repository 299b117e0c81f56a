"""An :class:`~agent.ports.AgentContext` with no store and no uplink.

Replays (``ble replay``), evaluations (``eval-fall``, ``eval-inactivity``) and driver tests
run the real components against this: readings and events are fanned out to subscribers as
the agent would (events as if committed at once), and recorded instead of stored. Time is
whatever clock is passed in, usually a :class:`~agent.clock.ManualClock` driven by the replay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from agent.alarm_outputs import AlarmOutputs
from agent.clock import Clock
from agent.model import Event, Priority, Reading
from agent.ports import AgentState, AlarmOutput, HubMessage, Unsubscribe, condition_name
from agent.store.arc_delivery import MemoryArcDeliveryStore
from agent.store.component_state import MemoryComponentState
from agent.uplink import topics


class OfflineContext:
    def __init__(
        self,
        clock: Clock,
        hub_id: str = "offline",
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        executor: concurrent.futures.Executor | None = None,
        keep_readings: bool = False,
        on_reading: Callable[[Reading], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        topic_prefix: str = "",
    ) -> None:
        self.hub_id = hub_id
        self.topic_prefix = topic_prefix
        self.clock = clock
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        # Replays that never schedule anything may run without a loop.
        self.loop: asyncio.AbstractEventLoop = cast(asyncio.AbstractEventLoop, loop)
        self._own_executor = executor is None
        self.executor: concurrent.futures.Executor = (
            executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="offline"))
        self.keep_readings = keep_readings
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.device_states: list[tuple[str, dict[str, Any]]] = []
        self.prewarning_log: list[tuple[float, str, bool]] = []   # (wall, source, active)
        self._on_reading = on_reading
        self._on_event = on_event
        self._reading_subs: list[Callable[[Reading], None]] = []
        self._event_subs: list[Callable[[Event], None]] = []
        self._precommit_subs: list[Callable[[list[Event]], None]] = []
        self.state = AgentState()         # conditions only, unless a test sets it
        self._state_subs: list[Callable[[AgentState], None]] = []
        self.arc_rows = MemoryArcDeliveryStore()
        self.states: dict[str, MemoryComponentState] = {}
        self.published: list[tuple[str, bytes, bool]] = []     # (topic, payload, retain)
        self.online = False                                     # no broker: nothing is sent
        self._topic_prefix = f"{topics.root(topic_prefix)}/{hub_id}/"
        self._topic_subs: list[tuple[str, Callable[[HubMessage], None]]] = []
        self._alarm_outputs = AlarmOutputs()

    def emit_reading(self, reading: Reading) -> None:
        if self.keep_readings:
            self.readings.append(reading)
        if self._on_reading:
            self._on_reading(reading)
        for cb in self._reading_subs:
            cb(reading)

    def submit_event(self, event: Event) -> None:
        """Taken as if committed at once: the before-commit subscribers hear an alarm first,
        then the event subscribers."""
        if event.priority == Priority.ALARM:
            for pre in self._precommit_subs:
                pre([event])
        self.events.append(event)
        if self._on_event:
            self._on_event(event)
        for cb in self._event_subs:
            cb(event)

    def subscribe_readings(self, callback: Callable[[Reading], None]) -> None:
        self._reading_subs.append(callback)

    def subscribe_events(self, callback: Callable[[Event], None]) -> None:
        self._event_subs.append(callback)

    def subscribe_before_commit(self, callback: Callable[[list[Event]], None]) -> None:
        self._precommit_subs.append(callback)

    def subscribe_acks(self, callback: Callable[[int], None]) -> None:
        """Nothing is ever acknowledged offline."""

    def subscribe_refused(self, callback: Callable[[Event], None]) -> None:
        """Offline, every event is taken: nothing is ever refused."""

    def subscribe_state(self, callback: Callable[[AgentState], None]) -> None:
        self._state_subs.append(callback)
        callback(self.state)

    def _tell_state(self, state: AgentState) -> None:
        self.state = state
        for cb in list(self._state_subs):
            cb(state)

    def set_prewarning(self, source: str, active: bool) -> None:
        self.prewarning_log.append((self.clock.wall(), source, active))

    def set_condition(self, name: str, active: bool) -> None:
        """In the state the state subscribers hear, as on the agent."""
        condition_name(name)
        now = self.state.conditions
        conditions = now | {name} if active else now - {name}
        if conditions != now:
            self._tell_state(replace(self.state, conditions=conditions))

    def arc_delivery(self) -> MemoryArcDeliveryStore:
        """In memory, one per context: a replay starts from nothing and keeps nothing."""
        return self.arc_rows

    def publish_device_state(self, device_id: str, state: dict[str, Any]) -> None:
        self.device_states.append((device_id, state))

    def pending_alarms(self) -> list[Event]:
        return []

    def event_delivered(self, event_id: str) -> bool | None:
        return None

    def component_state(self, component: str) -> MemoryComponentState:
        """In memory: a replay starts from nothing and keeps nothing."""
        return self.states.setdefault(component, MemoryComponentState(component))

    def _check_topic(self, topic: str) -> None:
        if not topic.startswith(self._topic_prefix):
            raise ValueError(f"topic {topic!r} is not one of this hub's "
                             f"({self._topic_prefix}...)")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                qos: int = 1) -> bool:
        """Recorded (not the QoS). Retained state is kept (True); other messages are sent
        only while ``online`` (a test may set it)."""
        self._check_topic(topic)
        sent = retain or self.online
        if sent:
            self.published.append((topic, payload, retain))
        return sent

    def subscribe(self, topic: str, handler: Callable[[HubMessage], None]) -> Unsubscribe:
        self._check_topic(topic)
        entry = (topic, handler)
        self._topic_subs.append(entry)

        def unsubscribe() -> None:
            if entry in self._topic_subs:
                self._topic_subs.remove(entry)
        return unsubscribe

    def register_alarm_output(self, output_id: str, output: AlarmOutput) -> Unsubscribe:
        return self._alarm_outputs.register(output_id, output)

    def alarm_output(self, output_id: str) -> AlarmOutput | None:
        return self._alarm_outputs.get(output_id)

    def deliver(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """A message arrives on ``topic`` (a test, a replayed session): handed to the
        handlers whose pattern matches. Returns how many heard it."""
        msg = HubMessage(topic, payload, retain)
        heard = [h for pattern, h in list(self._topic_subs) if topic_matches(pattern, topic)]
        for handler in heard:
            handler(msg)
        return len(heard)

    def close(self) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=False)


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    parts, levels = pattern.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)
