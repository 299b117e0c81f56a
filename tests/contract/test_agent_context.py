"""The component port, :class:`agent.ports.AgentContext`: the same assertions against every
implementation — the agent (real store, real mosquitto), the offline context (replays,
evaluations) and the one test fake (tests/fake_context.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.app import Agent
from agent.clock import SystemClock
from agent.model import Event, Priority, Reading
from agent.offline import OfflineContext
from agent.ports import AgentContext, AgentState, HubMessage
from tests.fake_context import FakeContext
from tests.harness import TestBroker, make_config

KINDS = ["agent", "offline", "fake"]
HUB = "hub-test"


@contextlib.asynccontextmanager
async def context(kind: str, tmp_path: Path, broker: TestBroker | None) -> AsyncIterator[
        AgentContext]:
    loop = asyncio.get_running_loop()
    if kind == "agent":
        agent = Agent(make_config(tmp_path, broker, hub_id=HUB), components=[])
        await agent.start()
        try:
            yield agent
        finally:
            await agent.stop()
    elif kind == "offline":
        ctx = OfflineContext(SystemClock(True), HUB, loop=loop)
        try:
            yield ctx
        finally:
            ctx.close()
    else:
        fake = FakeContext(loop, hub_id=HUB)
        try:
            yield fake
        finally:
            fake.close()


@pytest.fixture(params=KINDS)
def run_with(request: pytest.FixtureRequest, tmp_path: Path
             ) -> Callable[[Callable[[AgentContext], Awaitable[None]]], None]:
    kind = str(request.param)
    broker = request.getfixturevalue("mqtt_broker") if kind == "agent" else None

    def run(body: Callable[[AgentContext], Awaitable[None]]) -> None:
        async def main() -> None:
            async with context(kind, tmp_path, broker) as ctx:
                await body(ctx)
        asyncio.run(main())
    return run


async def until(pred: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def test_readings_from_any_thread_and_events_reach_subscribers(run_with) -> None:
    async def body(ctx: AgentContext) -> None:
        readings: list[Reading] = []
        events: list[Event] = []
        ctx.subscribe_readings(readings.append)
        ctx.subscribe_events(events.append)
        reading = Reading(device_id="door", type="door_open", publish=False)
        thread = threading.Thread(target=ctx.emit_reading, args=(reading,))
        thread.start()
        thread.join()
        await until(lambda: readings, "the reading")
        assert [r.id for r in readings] == [reading.id]
        event = Event(type="test_alarm", priority=Priority.ALARM, device_id="cord",
                      clock_synced=True)
        ctx.submit_event(event)
        await until(lambda: events, "the event")
        assert [(e.id, e.type) for e in events] == [(event.id, "test_alarm")]
        assert ctx.event_delivered("no-such-event") is None
    run_with(body)


def test_state_is_told_at_once_and_prewarning_is_taken(run_with) -> None:
    async def body(ctx: AgentContext) -> None:
        states: list[AgentState] = []
        ctx.subscribe_state(states.append)
        assert len(states) == 1 and isinstance(states[0], AgentState)
        ctx.set_prewarning("inactivity", True)
        ctx.set_prewarning("inactivity", False)
        assert ctx.pending_alarms() == []
    run_with(body)


def test_each_component_has_its_own_state(run_with) -> None:
    async def body(ctx: AgentContext) -> None:
        mine = ctx.component_state("widget")
        mine.write({"snapshot": {"n": 1}, "hour/01": [1.0, 2.0]})
        assert ctx.component_state("widget").get("snapshot") == {"n": 1}
        assert ctx.component_state("widget").items("hour/") == {"hour/01": [1.0, 2.0]}
        assert ctx.component_state("gadget").get("snapshot") is None
        with pytest.raises(ValueError):
            ctx.component_state("Robert'); DROP TABLE events;--")
    run_with(body)


def test_topics_are_the_hubs_only_and_unsubscribe_works(run_with) -> None:
    async def body(ctx: AgentContext) -> None:
        with pytest.raises(ValueError):
            ctx.publish("tec/v1/other-hub/config/current", b"{}", retain=True)
        with pytest.raises(ValueError):
            ctx.subscribe("#", lambda msg: None)
        assert ctx.publish(f"tec/v1/{HUB}/config/current", b"{}", retain=True) is True
        heard: list[HubMessage] = []
        unsubscribe = ctx.subscribe(f"tec/v1/{HUB}/cmd/+", heard.append)
        unsubscribe()
        unsubscribe()                      # twice is harmless
    run_with(body)


def test_offline_and_fake_hand_messages_to_matching_handlers_until_unsubscribed() -> None:
    ctx = OfflineContext(SystemClock(True), HUB)
    heard: list[HubMessage] = []
    unsubscribe = ctx.subscribe(f"tec/v1/{HUB}/cmd/+", heard.append)
    assert ctx.deliver(f"tec/v1/{HUB}/cmd/status", b"x") == 1
    assert ctx.deliver(f"tec/v1/{HUB}/cmd/status/result", b"x") == 0
    unsubscribe()
    assert ctx.deliver(f"tec/v1/{HUB}/cmd/status", b"y") == 0
    assert [m.payload for m in heard] == [b"x"]
    assert ctx.publish(f"tec/v1/{HUB}/cmd/x/result", b"r") is False   # no broker: kept by caller
    ctx.close()


def test_the_agents_topics_go_through_the_broker(tmp_path: Path,
                                                 mqtt_broker: TestBroker) -> None:
    """Subscribed handlers hear the broker's messages until unsubscribed; retained state is
    on the broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.harness import wait_until

    retained = mqtt_broker.subscribe(f"tec/v1/{HUB}/config/current")
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="contract-sender")
    sender.username_pw_set(mqtt_broker.username, mqtt_broker.password)
    sender.connect(mqtt_broker.host, mqtt_broker.port, 30)
    sender.loop_start()

    async def main() -> None:
        async with context("agent", tmp_path, mqtt_broker) as ctx:
            assert isinstance(ctx, Agent)
            await until(lambda: ctx.state.online, "the agent online", 10.0)
            heard: list[HubMessage] = []
            unsubscribe = ctx.subscribe(f"tec/v1/{HUB}/cmd/+", heard.append)
            ctx.publish(f"tec/v1/{HUB}/config/current", b'{"v":1}', retain=True)
            deadline = time.monotonic() + 10
            while not heard and time.monotonic() < deadline:   # until the SUBSCRIBE is in
                sender.publish(f"tec/v1/{HUB}/cmd/ping", b"1", qos=1).wait_for_publish(5)
                await asyncio.sleep(0.05)
            assert heard and heard[0].topic == f"tec/v1/{HUB}/cmd/ping"
            unsubscribe()
            count = len(heard)
            sender.publish(f"tec/v1/{HUB}/cmd/ping", b"2", qos=1).wait_for_publish(5)
            await asyncio.sleep(0.3)       # a message that must NOT arrive: nothing to wait on
            assert len(heard) == count
    try:
        asyncio.run(main())
        wait_until(lambda: any(m.payload == b'{"v":1}' for m in retained.snapshot()),
                   what="config/current on the broker")
    finally:
        sender.loop_stop()
        sender.disconnect()
