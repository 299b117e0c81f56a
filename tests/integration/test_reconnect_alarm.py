"""A broker restart against the transport on a real mosquitto: the first reconnect waits out
its window (``mqtt.reconnect_min_s``, spread so a fleet does not come back at once), except
while an alarm waits: then within ``mqtt.reconnect_alarm_s`` (issue 20)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from agent.uplink.settings import ClientSettings
from agent.uplink.transport import MqttTransport
from tests.harness import TestBroker

WINDOW_S = 30.0     # every wait drawn at its longest (below): the first reconnect 30 s away
ALARM_S = 1.0
SLACK_S = 2.0       # a connect on a loaded 2-core machine


class _Longest(random.Random):
    """Every reconnect wait at the top of its interval: without the alarm's cap the hub
    would wait the whole window, deterministically."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _Connects:
    def __init__(self) -> None:
        self.at: list[float] = []

    def on_connected(self, session_present: bool) -> None:
        self.at.append(time.monotonic())

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_puback(self, mid: int, failed: bool) -> None:
        pass


def _transport(broker: TestBroker, loop: asyncio.AbstractEventLoop) -> MqttTransport:
    s = ClientSettings(host=broker.host, port=broker.port, client_id="tec-agent-hub-r",
                       persistent=True, session_expiry_s=600, username=broker.username,
                       password=broker.password, reconnect_min_s=WINDOW_S,
                       reconnect_max_s=2 * WINDOW_S, reconnect_alarm_s=ALARM_S)
    return MqttTransport(s, loop, rng=_Longest(0))


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic()


def _restart(broker: TestBroker) -> float:
    """Stop and start the broker; the monotonic time it listens again."""
    broker.restart()
    return time.monotonic()


def test_an_alarm_waiting_at_a_broker_restart_cuts_the_first_window(mqtt_broker) -> None:
    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t = _transport(mqtt_broker, loop)
        connects = _Connects()
        t.set_listener(connects)
        t.connect()
        try:
            await _until(lambda: len(connects.at) == 1, 10, "the first connection")
            t.set_urgent(True)                     # an alarm waits for its PUBACK
            lost = time.monotonic()
            back = await loop.run_in_executor(None, _restart, mqtt_broker)
            again = await _until(lambda: len(connects.at) == 2, WINDOW_S,
                                 "the reconnect while an alarm waits")
            return again - lost, again - back
        finally:
            await t.close(time.monotonic() + 2)

    since_loss, since_back = asyncio.run(scenario())
    # Without the cap: 30 s (the whole window).
    assert since_back < ALARM_S + SLACK_S, (since_loss, since_back)


def test_without_an_alarm_the_window_is_waited_out_and_an_alarm_cuts_it_short(
        mqtt_broker) -> None:
    """The control for the test above (the window really is 30 s here), and an alarm stored
    during the wait: the hub reconnects within reconnect_alarm_s of it."""
    async def scenario() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        t = _transport(mqtt_broker, loop)
        connects = _Connects()
        t.set_listener(connects)
        t.connect()
        try:
            await _until(lambda: len(connects.at) == 1, 10, "the first connection")
            back = await loop.run_in_executor(None, _restart, mqtt_broker)
            # Watch 3 s of the window: a reconnect in it would be the old 0.25-0.5 s herd.
            watch_until = back + ALARM_S + SLACK_S
            while time.monotonic() < watch_until and len(connects.at) == 1:
                await asyncio.sleep(0.05)
            quiet = len(connects.at) == 1
            alarm = time.monotonic()
            t.set_urgent(True)
            again = await _until(lambda: len(connects.at) == 2, WINDOW_S,
                                 "the reconnect once an alarm waits")
            return quiet, again - alarm
        finally:
            await t.close(time.monotonic() + 2)

    quiet, since_alarm = asyncio.run(scenario())
    assert quiet, "reconnected within 3 s of the broker's return without an alarm"
    assert since_alarm < ALARM_S + SLACK_S, since_alarm
