"""The ingester's broker connection: the only module of :mod:`agent.ingest` that imports paho.

MQTT 5 (or 3.1.1 for a broker without it), a persistent session under a fixed client id
(``clean_start`` false, Session Expiry Interval set): when the ingester dies, the broker
keeps the messages it had sent but not had acknowledged, and those that arrive meanwhile,
and hands them over when the same client id comes back. Events come through the shared
subscription ``$share/<group>/tec/v1/+/event`` (the broker splits them between the
ingesters of a group; an empty group subscribes to ``tec/v1/+/event`` itself, for a broker
without shared subscriptions); hub status and device state through plain subscriptions
(every ingester keeps them, retained copies arrive on subscribe). Acknowledgement is manual
(``manual_ack``): :meth:`MqttSource.ack` is called only after the database commit. The
acknowledgement of a message received on an earlier connection is never sent on a later one
(its packet id may by then name another message); the broker redelivers such a message and
the database counts it as a duplicate. (A lock orders the check against paho's disconnect
callback, which runs before paho reconnects and empties its outgoing queue.)

The connection is the project's one transport (:mod:`agent.uplink.transport`, built from
a :class:`~agent.uplink.settings.ClientSettings` with ``manual_ack``) on its own loop thread
(:class:`~agent.uplink.transport.BlockingClient`); messages cross to the caller's thread
through a queue. The acknowledgement check runs on that loop, between paho's callbacks, so
no connection change can come between the check and the queued PUBACK.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass

from agent.errors import UplinkError
from agent.ports import InboundMessage, PublishState
from agent.remote.client import BrokerUrl
from agent.uplink import topics
from agent.uplink.settings import ClientSettings
from agent.uplink.transport import BlockingClient, Delivered

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    delivered: Delivered   # the transport's receipt (packet id, QoS, connection)
    received_at: float     # wall clock, for the database's received_at


@dataclass(frozen=True, slots=True)
class SourceSettings:
    broker: BrokerUrl
    password: str | None
    client_id: str
    group: str = "tec-ingest"
    prefix: str = ""
    ca_file: str | None = None
    session_expiry_s: int = 7 * 86400
    receive_maximum: int = 1000  # messages the broker may have in flight to us, unacknowledged
    keepalive_s: int = 30
    protocol: str = "5"          # "3.1.1" for brokers without MQTT 5 (RabbitMQ before 3.13)


class MqttSource:
    def __init__(self, settings: SourceSettings) -> None:
        self.s = settings
        self.messages: queue.Queue[Inbound] = queue.Queue()
        self._granted = threading.Event()
        self._stopping = False
        root = topics.root(settings.prefix)
        share = f"$share/{settings.group}/" if settings.group else ""
        self.subscriptions = [
            (f"{share}{root}/+/event", 1),
            (f"{root}/+/status", 1),
            (f"{root}/+/device/+", 1),
            # Desired config: every ingester keeps the newest full push (the database
            # upsert is idempotent); one of the group answers each hub's request.
            (f"{root}/+/config/set", 1),
            (f"{share}{root}/+/config/request", 1),
        ]
        self.v5 = settings.protocol == "5"
        b = settings.broker
        self._settings = ClientSettings(
            host=b.host, port=b.port, client_id=settings.client_id, protocol=settings.protocol,
            persistent=True, session_expiry_s=settings.session_expiry_s,
            keepalive_s=settings.keepalive_s, username=b.username or None,
            password=settings.password, tls=b.tls, tls_ca_file=settings.ca_file,
            manual_ack=True, receive_maximum=settings.receive_maximum if self.v5 else 0,
            reconnect_min_s=1.0, reconnect_max_s=10.0)
        self._client: BlockingClient | None = None
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    # -- the transport's loop thread -----------------------------------------------------------
    def on_connected(self, session_present: bool) -> None:
        log.info("connected to %s:%d (session present: %s); subscribing",
                 self.s.broker.host, self.s.broker.port, session_present)

    def on_disconnected(self, reason: str) -> None:
        if not self._stopping:
            log.warning("disconnected from the broker: %s (reconnecting)", reason)

    def on_puback(self, mid: int, failed: bool) -> None:
        pass

    def _on_message(self, msg: InboundMessage) -> None:
        if isinstance(msg, Delivered):
            self.messages.put(Inbound(msg.topic, msg.payload, msg, time.time()))

    def _on_granted(self, topic: str, ok: bool) -> None:
        if not ok:
            log.error("broker refused subscription %s (MQTT 5 shared subscriptions need a "
                      "broker that supports them, and an ACL that allows reading)", topic)
        with self._lock:
            self._pending.discard(topic)
            if not self._pending:
                self._granted.set()

    # -- the caller's thread -----------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Connect and subscribe; raises :class:`UplinkError` if the broker refuses us or
        cannot be reached within ``timeout`` (later losses are retried for ever)."""
        client = BlockingClient(self._settings)
        self._client = client
        client.set_listener(self)
        self._pending = {t for t, _ in self.subscriptions}
        for topic, _qos in self.subscriptions:
            client.subscribe(topic, self._on_message, functools.partial(self._on_granted, topic))
        client.keep_connected()
        deadline = time.monotonic() + timeout
        while not self._granted.wait(0.05):
            if time.monotonic() > deadline:
                why = client.refusal or f"no connection within {timeout:g} s"
                self.stop()
                raise UplinkError(f"broker {self.s.broker.host}:{self.s.broker.port}: {why}")
            if client.refusal:
                why = client.refusal
                self.stop()
                raise UplinkError(f"broker {self.s.broker.host}:{self.s.broker.port}: {why}")

    def ack(self, items: list[Inbound]) -> int:
        """Acknowledge what came on the current connection; returns how many were not
        (they will be redelivered)."""
        if self._client is None:
            return len(items)
        return self._client.ack([m.delivered for m in items])

    def publish(self, topic: str, payload: bytes) -> bool:
        """QoS 1, not retained; False if it could not even be queued."""
        if self._client is None:
            return False
        return self._client.publish(topic, payload, 1, False).state is not PublishState.FAILED

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def stop(self) -> None:
        self._stopping = True
        if self._client is not None:
            self._client.close()
