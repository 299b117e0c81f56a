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

paho runs its own network thread here (``loop_start``); messages cross to the caller's
thread through a queue. When the project's one client builder exists, this is the module
to switch over to it.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.errors import UplinkError
from agent.remote.client import BrokerUrl
from agent.uplink import topics
from agent.uplink.mqtt_uplink import release_client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    epoch: int           # which connection it came on (see module docstring)
    received_at: float   # wall clock, for the database's received_at


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
        self._epoch = 0
        self._connected = threading.Event()
        self._refused: str | None = None
        self._stopping = False
        self._lock = threading.Lock()  # guards _epoch between paho's thread and the caller's
        root = topics.root(settings.prefix)
        share = f"$share/{settings.group}/" if settings.group else ""
        self.subscriptions = [
            (f"{share}{root}/+/event", 1),
            (f"{root}/+/status", 1),
            (f"{root}/+/device/+", 1),
        ]
        self.v5 = settings.protocol == "5"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                        protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
                        clean_session=None if self.v5 else False, manual_ack=True)
        if settings.broker.username:
            c.username_pw_set(settings.broker.username, settings.password)
        if settings.broker.tls:
            c.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(1, 10)  # whole seconds (paho types them int)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._client = c

    # -- paho's thread -----------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, props) -> None:  # noqa: ANN001
        if rc.is_failure:
            self._refused = str(rc)
            log.error("broker %s:%d refused the ingester: %s", self.s.broker.host,
                      self.s.broker.port, rc)
            return
        with self._lock:
            self._epoch += 1
        log.info("connected to %s:%d (session present: %s); subscribing",
                 self.s.broker.host, self.s.broker.port, flags.session_present)
        client.subscribe(self.subscriptions)

    def _on_subscribe(self, client, userdata, mid, reason_codes, props) -> None:  # noqa: ANN001
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("broker refused subscriptions %s: %s (MQTT 5 shared subscriptions "
                      "need a broker that supports them, and an ACL that allows reading)",
                      [t for t, _ in self.subscriptions], bad)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, props) -> None:  # noqa: ANN001
        # paho calls this before it reconnects (and clears its outgoing queue): from here on
        # nothing received on the lost connection is acknowledged.
        with self._lock:
            self._epoch += 1
        self._connected.clear()
        if not self._stopping:
            log.warning("disconnected from the broker: %s (reconnecting)", rc)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._lock:
            epoch = self._epoch
        self.messages.put(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, epoch,
                                  time.time()))

    # -- the caller's thread -----------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Connect and subscribe; raises :class:`UplinkError` if the broker refuses us or
        cannot be reached within ``timeout`` (later losses are retried for ever)."""
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.s.session_expiry_s
            props.ReceiveMaximum = self.s.receive_maximum
            self._client.connect_async(self.s.broker.host, self.s.broker.port,
                                       self.s.keepalive_s, clean_start=False, properties=props)
        else:  # MQTT 3.1.1: clean_session=False (set on the client) is the persistent session
            self._client.connect_async(self.s.broker.host, self.s.broker.port,
                                       self.s.keepalive_s)
        self._client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._connected.wait(0.05):
            if self._refused is not None or time.monotonic() > deadline:
                self.stop()
                raise UplinkError(f"broker {self.s.broker.host}:{self.s.broker.port}: "
                                  f"{self._refused or 'no connection within %g s' % timeout}")

    def ack(self, items: list[Inbound]) -> int:
        """Acknowledge what came on the current connection; returns how many were not
        (they will be redelivered)."""
        skipped = 0
        with self._lock:  # no connection change between the check and the queued PUBACK
            for m in items:
                if m.qos == 0:
                    continue
                if m.epoch != self._epoch:
                    skipped += 1
                    continue
                self._client.ack(m.mid, m.qos)
        return skipped

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        release_client(self._client)
