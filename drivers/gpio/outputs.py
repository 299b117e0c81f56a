"""Status LED and buzzer: what they show for a given :class:`AgentState`, and a player.

The choice of pattern is a pure function of the state and the time (tested without pins).
A :class:`PatternPlayer` plays one repeating pattern on one output as an asyncio task on
the agent's loop: a few pin writes a second, so no extra thread is needed.

LED patterns (most urgent wins):

============== ============================ ==================================
name            looks like                   means
============== ============================ ==================================
alarm_pending   fast flash (5 Hz)            an alarm is stored, not yet acknowledged
alarm_delivered long on, short off           an alarm reached the broker in the last
                                             ``delivered_show_s``
offline         slow blink (0.5 Hz)          no broker: events are buffered on the hub
online          steady on                    connected, nothing pending
============== ============================ ==================================

Buzzer: a pre-warning is an intermittent beep while a detector counts down to an alarm (so
the person can cancel); delivery of an alarm gives a double confirmation beep once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.ports import AgentState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pattern:
    """``steps`` alternate on, off, on, off ... durations in seconds.

    ``repeat`` False plays once and leaves the output off. An empty ``steps`` with
    ``steady`` True means on continuously; empty and not steady means off.
    """

    name: str
    steps: tuple[float, ...] = ()
    repeat: bool = True
    steady: bool = False


LED_ONLINE = Pattern("online", steady=True)
LED_OFFLINE = Pattern("offline", (1.0, 1.0))
LED_ALARM_PENDING = Pattern("alarm_pending", (0.1, 0.1))
LED_ALARM_DELIVERED = Pattern("alarm_delivered", (1.8, 0.2))
LED_STORAGE_FAILED = Pattern("storage_failed", (0.1, 0.1, 0.1, 0.1, 0.1, 0.9))
LED_ARC_PATH_DOWN = Pattern("arc_path_down", (1.0, 0.2, 0.2, 0.2))
# Hub conditions components raise (ctx.set_condition) that the LED shows while MQTT is up,
# first one raised in this order wins; a pattern is named after its condition.
LED_CONDITIONS = (LED_ARC_PATH_DOWN,)
BUZZER_SILENT = Pattern("silent")
BUZZER_PREWARNING = Pattern("prewarning", (0.2, 0.8))
BUZZER_CONFIRM = Pattern("confirm", (0.1, 0.1, 0.1), repeat=False)
BUZZER_FAULT = Pattern("fault", (0.5, 0.2, 0.5), repeat=False)


def led_pattern(state: AgentState, now: float, delivered_show_s: float) -> Pattern:
    if state.storage_failed:
        # The hub cannot keep alarms durably: the installer must see it (it outranks an
        # alarm in flight, which the broker may still take).
        return LED_STORAGE_FAILED
    if state.alarm_pending:
        return LED_ALARM_PENDING
    delivered = state.last_alarm_delivered_mono
    if delivered is not None and now - delivered < delivered_show_s:
        return LED_ALARM_DELIVERED
    if not state.online:
        return LED_OFFLINE
    for pattern in LED_CONDITIONS:
        # e.g. arc_path_down: MQTT is up but a receiving centre's receiver stopped
        # answering, the ARC path (the one the 24/7 responders watch) is degraded.
        if pattern.name in state.conditions:
            return pattern
    return LED_ONLINE


def led_next_change(state: AgentState, now: float, delivered_show_s: float) -> float | None:
    """When the LED pattern changes without a state change (the delivered display ends)."""
    delivered = state.last_alarm_delivered_mono
    if not state.alarm_pending and delivered is not None and now - delivered < delivered_show_s:
        return delivered + delivered_show_s
    return None


def buzzer_pattern(state: AgentState, previous: AgentState | None) -> Pattern | None:
    """The buzzer pattern to start now, or None to leave the buzzer as it is."""
    if state.storage_failed and (previous is None or not previous.storage_failed):
        return BUZZER_FAULT  # once, as the fault begins: not a night of beeping
    if state.prewarning:
        if previous is None or not previous.prewarning:
            return BUZZER_PREWARNING
        return None
    delivered = state.last_alarm_delivered_mono
    if delivered is not None and (previous is None
                                  or previous.last_alarm_delivered_mono != delivered):
        return BUZZER_CONFIRM
    if previous is not None and previous.prewarning:
        return BUZZER_SILENT
    return None


class PatternPlayer:
    """Plays a :class:`Pattern` on ``write(on: bool)`` as a task on the running loop."""

    def __init__(self, name: str, write: Callable[[bool], None]) -> None:
        self.name = name
        self._write = write
        self._task: asyncio.Task[None] | None = None
        self.pattern: Pattern | None = None

    def play(self, pattern: Pattern) -> None:
        if pattern == self.pattern and (self._task is None or not self._task.done()):
            return
        self._cancel()
        self.pattern = pattern
        if pattern.steps:
            self._task = asyncio.get_running_loop().create_task(
                self._run(pattern), name=f"pattern-{self.name}")
        else:
            self._safe_write(pattern.steady)

    async def _run(self, pattern: Pattern) -> None:
        while True:
            on = True
            for duration in pattern.steps:
                self._safe_write(on)
                await asyncio.sleep(duration)
                on = not on
            if not pattern.repeat:
                self._safe_write(False)
                return

    def _safe_write(self, on: bool) -> None:
        try:
            self._write(on)
        except Exception:  # a broken LED must never stop the agent
            log.exception("output %s: cannot set %s", self.name, "on" if on else "off")

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    def stop(self) -> None:
        self._cancel()
        self.pattern = None
        self._safe_write(False)
