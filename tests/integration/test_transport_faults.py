"""Issue 20's hub-side fixes in the transport, against a broker that misbehaves on purpose
(tests/misbehaving_broker.py: real MQTT 5 bytes on a real socket; mosquitto cannot be made
to accept-and-drop, drop before CONNACK or close on a refused SUBSCRIBE)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time

import pytest

from agent.uplink.settings import ClientSettings
from agent.uplink.transport import BlockingClient, MqttTransport
from tests.harness import wait_until
from tests.misbehaving_broker import MisbehavingBroker, connack, disconnect

LOG = "agent.uplink.transport"


class Acks:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.connects = 0

    def on_connected(self, session_present: bool) -> None:
        self.connects += 1

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_puback(self, mid: int, failed: bool) -> None:
        if not failed:
            self.acked.append(mid)


class _Longest(random.Random):
    """Every reconnect wait at the top of its interval."""

    def uniform(self, a: float, b: float) -> float:
        return b


def settings(port: int, **kw: object) -> ClientSettings:
    base = dict(host="127.0.0.1", port=port, client_id="tec-agent-hub-f", persistent=True,
                session_expiry_s=600, reconnect_min_s=0.05, reconnect_max_s=60.0)
    base.update(kw)
    return ClientSettings(**base)  # type: ignore[arg-type]


def run(port: int, **kw: object) -> tuple[BlockingClient, Acks]:
    client = BlockingClient(settings(port, **kw))
    acks = Acks()
    client.set_listener(acks)
    return client, acks


def test_a_broker_that_accepts_then_drops_is_not_hammered() -> None:
    """CONNACK then close, every time: the backoff must keep growing (the old rule reset it
    on every CONNACK: with reconnect_min_s 0.05 that was a connect every ~50 ms)."""
    with MisbehavingBroker(after_connack=lambda n: b"") as broker:
        client, _ = run(broker.port)
        try:
            client.keep_connected()
            wait_until(lambda: len(broker.conns) >= 3, 10, what="three connections")
            start = broker.conns[0].opened
            # A rate is measured over a window: watch three seconds of it.
            threading.Event().wait(max(0.0, start + 3.0 - time.monotonic()))
            n = sum(1 for c in broker.conns if c.opened <= start + 3.0)
        finally:
            client.close()
    # 0-0.05 s, then 0.1, 0.2, 0.4, 0.8, 1.6 s (each jittered to half or more): at most 7 in
    # 3 s.
    assert n <= 8, f"{n} connections in 3 s"


def test_refusal_and_disconnect_reasons_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOG)

    def answer(n: int) -> bytes:
        return connack(0x87, "hub-f is not in group hubs") if n == 1 else connack()

    after = {2: disconnect(0x97, "tenant over its connection quota")}
    with MisbehavingBroker(on_connect=answer, after_connack=after.get) as broker:
        client, _ = run(broker.port)
        try:
            client.keep_connected()
            wait_until(lambda: len(broker.conns) >= 3, 10, what="three connections")
            wait_until(lambda: "connection quota" in caplog.text, 5, what="the second reason")
        finally:
            client.close()
    assert "Not authorized (hub-f is not in group hubs)" in caplog.text
    assert "Quota exceeded (tenant over its connection quota)" in caplog.text
    assert "may not support MQTT 5" not in caplog.text


def test_a_v5_connection_dropped_before_connack_suggests_3_1_1(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOG)
    with MisbehavingBroker(on_connect=lambda n: None) as broker:
        client, _ = run(broker.port)
        try:
            client.keep_connected()
            wait_until(lambda: 'mqtt.protocol = "3.1.1"' in caplog.text, 10,
                       what="the MQTT 5 hint")
        finally:
            client.close()
    assert "may not support MQTT 5" in caplog.text
    # A plaintext client: the broker may be a TLS listener too (what one does to a plaintext
    # CONNECT), so the hint names TLS as well.
    assert "TLS listener and TLS is off" in caplog.text


def test_a_subscription_that_costs_the_connection_does_not_stop_publishing(
        caplog: pytest.LogCaptureFixture) -> None:
    """A broker that closes the connection on a refused SUBSCRIBE (the old transport sent
    the subscriptions before anything else on every connect: nothing was ever delivered)."""
    caplog.set_level(logging.ERROR, LOG)
    denied = "tec/v1/hub-f/cmd/+"
    with MisbehavingBroker(refuse_subscribe=lambda t: t == denied) as broker:
        client, acks = run(broker.port, costly_sub_retry_s=0.5)
        try:
            client.subscribe(denied, lambda m: None)
            first = client.publish("tec/v1/hub-f/event", b"{}", qos=1)   # queued: offline
            client.keep_connected()
            wait_until(lambda: first.mid in acks.acked, 10, what="the first event's PUBACK")
            wait_until(lambda: client.connected, 10, what="a connection")
            second = client.publish("tec/v1/hub-f/event", b"{}", qos=1)
            wait_until(lambda: second.mid in acks.acked, 10, what="the second event's PUBACK")
            wait_until(lambda: sum(denied in c.subscribed for c in broker.conns) >= 2, 10,
                       what="the subscription retried")
        finally:
            client.close()
    assert "retrying it in" in caplog.text


def test_a_subscription_that_cost_the_connection_is_retried_rarely(
        caplog: pytest.LogCaptureFixture) -> None:
    """RabbitMQ closes the connection on every SUBSCRIBE to a session whose queue's node is
    down, for as long as it is down: at 1 s doubling to reconnect_max_s each hub of 50
    reconnected 9 times a minute on a 3-node cluster (bench/rabbit_cluster.py). Such a
    subscription waits 30 s, then doubles to 5 min."""
    caplog.set_level(logging.ERROR, LOG)
    denied = "tec/v1/hub-f/cmd/+"
    with MisbehavingBroker(refuse_subscribe=lambda t: t == denied) as broker:
        client, _ = run(broker.port)
        try:
            client.subscribe(denied, lambda m: None)
            client.keep_connected()
            wait_until(lambda: "retrying it in" in caplog.text, 10, what="the retry logged")
        finally:
            client.close()
    m = re.search(r"no SUBACK before the connection closed; retrying it in (\d+) s",
                  caplog.text)
    assert m and int(m.group(1)) >= 30, caplog.text


def test_a_retried_subscription_waits_for_the_publishes_in_flight() -> None:
    """A broker that acknowledges a PUBLISH later than it reads the next packet (RabbitMQ:
    after its queues confirmed) and closes the connection on a refused SUBSCRIBE: a retry
    sent right behind an event made paho send the event again on the next connection (a
    duplicate for the ingester). On a session the broker holds, a SUBSCRIBE now waits until
    nothing is in flight."""
    denied = "tec/v1/hub-f/cmd/+"
    # Session present in every CONNACK: a RabbitMQ node that took over from the lost one
    # knows the session, whose queue it cannot reach.
    with MisbehavingBroker(on_connect=lambda n: connack(session_present=True),
                           refuse_subscribe=lambda t: t == denied,
                           puback_delay_s=0.3) as broker:

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            # Reconnects after 2.5 s (every wait drawn at its longest; the first one is
            # uniform from 0): the subscription's retry (1 s) is due on connect.
            t = MqttTransport(settings(broker.port, reconnect_min_s=2.5, reconnect_max_s=2.5,
                                       costly_sub_retry_s=1.0), loop, rng=_Longest())

            class Publisher(Acks):
                """Publishes an event as each connection starts (the agent's delivery
                does: its backlog first)."""

                def on_connected(self, session_present: bool) -> None:
                    super().on_connected(session_present)
                    t.publish(f"tec/v1/hub-f/event/{self.connects}", b"{}", qos=1)

            t.set_listener(Publisher())
            t.subscribe(denied, lambda m: None)
            t.connect()
            deadline = time.monotonic() + 20
            while not any("tec/v1/hub-f/event/3" in c.published for c in broker.conns):
                assert time.monotonic() < deadline, "no third connection within 20 s"
                await asyncio.sleep(0.02)
            await t.close(time.monotonic() + 2)

        asyncio.run(scenario())
    published = [topic for c in broker.conns for topic in c.published]
    # The first connection's SUBSCRIBE (never refused before: a failover's first) and the
    # retries alike.
    assert published.count("tec/v1/hub-f/event/1") == 1, published
    assert published.count("tec/v1/hub-f/event/2") == 1, published
    assert sum(denied in c.subscribed for c in broker.conns) >= 2
