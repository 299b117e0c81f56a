"""The one test double of :class:`agent.ports.AgentContext` for component tests.

An :class:`~agent.offline.OfflineContext` (so it keeps every promise the contract tests in
``tests/contract`` check) with what a test needs to play the agent's part: readings hop to
the loop from any thread as the agent's do, readings to publish are committed as events
(after ``commit_delay_s``) with a seq, and the test acknowledges events, refuses them or
sets the agent's state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import replace

from agent.clock import Clock, SystemClock
from agent.model import Event, Reading
from agent.offline import OfflineContext
from agent.ports import AgentState


class FakeContext(OfflineContext):
    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock | None = None, *,
                 hub_id: str = "hub-test", commit_delay_s: float = 0.0) -> None:
        super().__init__(clock or SystemClock(assume_synced=True), hub_id, loop=loop,
                         keep_readings=True)
        self.commit_delay_s = commit_delay_s
        self.delivered: dict[str, bool] = {}
        self.pending: list[Event] = []          # what pending_alarms() returns
        self.state = AgentState()
        self._seq = itertools.count(1)
        self._ack_subs: list[Callable[[int], None]] = []
        self._refused_subs: list[Callable[[Event], None]] = []
        self._state_subs: list[Callable[[AgentState], None]] = []

    # -- the agent's side ------------------------------------------------------------------------
    def emit_reading(self, reading: Reading) -> None:
        self.loop.call_soon_threadsafe(self._take, reading)

    def _take(self, reading: Reading) -> None:
        super().emit_reading(reading)
        if reading.publish:
            self.loop.call_later(self.commit_delay_s, self.submit_event,
                                 Event.from_reading(reading, self.clock.synced()))

    def submit_event(self, event: Event) -> None:
        event = replace(event, seq=next(self._seq))
        self.delivered[event.id] = False
        super().submit_event(event)

    def subscribe_acks(self, callback: Callable[[int], None]) -> None:
        self._ack_subs.append(callback)

    def subscribe_refused(self, callback: Callable[[Event], None]) -> None:
        self._refused_subs.append(callback)

    def subscribe_state(self, callback: Callable[[AgentState], None]) -> None:
        self._state_subs.append(callback)
        callback(self.state)

    def pending_alarms(self) -> list[Event]:
        return list(self.pending)

    def event_delivered(self, event_id: str) -> bool | None:
        return self.delivered.get(event_id)

    # -- what a test does ------------------------------------------------------------------------
    def ack(self, event: Event) -> None:
        """The broker acknowledged ``event``."""
        assert event.seq is not None
        self.delivered[event.id] = True
        for cb in self._ack_subs:
            cb(event.seq)

    def refuse(self, event: Event) -> None:
        """The store refused ``event`` (a failing card)."""
        for cb in self._refused_subs:
            cb(event)

    def set_state(self, state: AgentState) -> None:
        self.state = state
        self.online = state.online
        for cb in self._state_subs:
            cb(state)

    def set_online(self, online: bool) -> None:
        self.set_state(AgentState(online=online))

    def types(self) -> list[str]:
        return [r.type for r in self.readings]
