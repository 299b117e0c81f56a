"""The MQTT transport: the only module that imports paho-mqtt.

Paho is driven from the asyncio loop through its public socket callbacks, as aiomqtt does:
``on_socket_open``/``on_socket_close`` add and remove a ``loop.add_reader`` on paho's
socket, ``on_socket_register_write``/``on_socket_unregister_write`` an ``add_writer``; a
timer calls ``loop_misc()`` once a second (keepalive pings, a dead link noticed). There is
no network thread and no ``select()``: a process can hold as many connections as it has
descriptors. Only the blocking part of a connect (DNS, TCP connect, TLS handshake) runs in
the loop's default executor, one attempt at a time.

Reconnection is ours: the first wait uniform in [0, ``reconnect_min_s``] (a fleet dropped at
once by a broker restart comes back spread over that window, not in one burst), then jittered
exponential backoff, capped at ``reconnect_max_s``
(:func:`~agent.uplink.settings.reconnect_delays`), and no
wait longer than ``reconnect_alarm_s`` while :meth:`MqttTransport.set_urgent` says an alarm
is waiting. The backoff starts again from its first window only after a connection stayed
up for :func:`stable_after` (a broker that accepts and drops at once must not be hammered:
issue 20 counted 1,565 reconnects in 10 minutes against RabbitMQ). Refusals and disconnects
are logged with the broker's reason code and Reason String; a protocol-5 connection closed
before any CONNACK says that the broker may not speak MQTT 5.

Subscriptions never hold up delivery: they are sent after the owner heard of the connection,
and one that is refused (SUBACK failure) or whose connection dies before its SUBACK (some
brokers close the connection on a refused SUBSCRIBE) is left out of the following connects
and retried on its own backoff, while publishing goes on. One that cost the connection is
retried far less often (``costly_sub_retry_s``, 30 s doubling to 5 min: RabbitMQ refuses a
session whose queue's node is down for as long as that node is down, and each refusal is a
reconnect). On a session the broker already holds (CONNACK session present: the
failover's case) and for such a retry, a SUBSCRIBE waits until no QoS 1 publish is in
flight (at most ``_SUB_QUIET_MAX_S``): a connection closed with a PUBLISH unacknowledged
makes paho send it again on the next one, a duplicate for the consumer (issue 20: 14,780
duplicates for 2,000 events in a reconnect loop; 29 of 2,602 events on a 3-node RabbitMQ
cluster when only the retries waited, from the first SUBSCRIBE behind the backlog after
the failover). On a new session the subscriptions go out at once: an answer to what the
hub asks for on connect (``config/desired``) needs them in place.

Paho keeps QoS 1 messages of a persistent session across reconnects and resends
them itself. :meth:`MqttTransport.close` sends DISCONNECT and waits for it to be written
before closing, so the broker does not publish the will over a retained status.

Every client (the agent's uplink, the support CLI, the simulator's watcher) is built by
:func:`build_client` from one :class:`~agent.uplink.settings.ClientSettings`; synchronous
callers get the same transport on a private loop thread through :class:`BlockingClient`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.ports import (
    HubMessage,
    InboundMessage,
    Published,
    PublishState,
    TransportListener,
    Unsubscribe,
)
from agent.uplink.settings import ClientSettings, reconnect_delays

log = logging.getLogger(__name__)

_MISC_EVERY_S = 1.0
_SUB_RETRY_FIRST_S = 1.0
_SUB_QUIET_MAX_S = 5.0     # a costly retry waits this long at most for no publish in flight


def stable_after(settings: ClientSettings) -> float:
    """How long a connection must have stayed up before the reconnect backoff starts
    again from its minimum: two keepalives, at least 30 s."""
    return max(2.0 * settings.keepalive_s, 30.0)


def _reason(reason_code: Any, properties: Any) -> str:
    """The broker's reason code, with its Reason String (MQTT 5) when it sent one."""
    text = str(reason_code)
    extra = getattr(properties, "ReasonString", None) if properties is not None else None
    return f"{text} ({extra})" if extra else text
_T = TypeVar("_T")


class _TrackingContext(ssl.SSLContext):
    """An SSL context that remembers the sockets it wrapped during one connect attempt.
    Paho does not close its socket when the TLS handshake fails (wrong CA, expired
    certificate); through this context (given with the public ``tls_set_context``) the
    transport closes it instead of leaving it to the garbage collector."""

    wrapped: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.wrapped.append(sock)
        return sock


def _tls_context(settings: ClientSettings) -> _TrackingContext:
    ctx = _TrackingContext(ssl.PROTOCOL_TLS_CLIENT)   # verifies the certificate and host name
    ctx.wrapped = []
    if settings.tls_ca_file:
        ctx.load_verify_locations(cafile=settings.tls_ca_file)
    else:
        ctx.load_default_certs()
    if settings.tls_cert_file:
        ctx.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return ctx


def build_client(settings: ClientSettings) -> mqtt.Client:
    """The one place a paho client is made: protocol, session, credentials, TLS, will."""
    return _build(settings)[0]


def _build(settings: ClientSettings) -> tuple[mqtt.Client, _TrackingContext | None]:
    v5 = settings.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not settings.persistent,
        manual_ack=settings.manual_ack,
    )
    client.max_inflight_messages_set(settings.max_inflight)
    client.max_queued_messages_set(0)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    tls = None
    if settings.tls or settings.tls_ca_file:
        tls = _tls_context(settings)
        client.tls_set_context(tls)
    if settings.will is not None:
        w = settings.will
        props = None
        if v5 and w.delay_s > 0:
            props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            props.WillDelayInterval = w.delay_s
        client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain, properties=props)
    return client, tls


def _connect_args(settings: ClientSettings) -> dict[str, Any]:
    if settings.protocol != "5":
        return {}
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if settings.persistent:
        props.SessionExpiryInterval = settings.session_expiry_s
    if settings.receive_maximum:
        props.ReceiveMaximum = settings.receive_maximum
    return {"clean_start": not settings.persistent, "properties": props}


def _cork(sock: Any, on: bool) -> bool:
    """TCP_CORK on a TCP socket (Linux); False where there is none (other systems, unix)."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
    except OSError:
        return False
    return True


def _filter_of(subscription: str) -> str:
    """The topic filter of a subscription: ``$share/<group>/<filter>`` is a shared one."""
    if subscription.startswith("$share/"):
        return subscription.split("/", 2)[2]
    return subscription


def _state(rc: MQTTErrorCode) -> PublishState:
    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
        return PublishState.SENT
    if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        return PublishState.QUEUED
    return PublishState.FAILED


@dataclass(frozen=True, slots=True)
class Delivered(HubMessage):
    """A message as a manual-ack owner (the ingester) gets it: ``mid``/``qos`` name its
    PUBACK, ``connection`` the connection it came on (see :meth:`MqttTransport.ack`)."""

    mid: int = 0
    qos: int = 0
    connection: int = 0


class MqttTransport:
    """:class:`agent.ports.Transport` over paho, on ``loop``. Construct and call on the loop."""

    def __init__(self, settings: ClientSettings, loop: asyncio.AbstractEventLoop,
                 rng: random.Random | None = None) -> None:
        """``rng`` draws the reconnect waits (a seeded or fixed one in tests)."""
        self.settings = settings
        self._loop = loop
        self._rng = rng or random.Random()
        self._client, self._tls = _build(settings)
        c = self._client
        c.on_connect = self._cb_connect
        c.on_disconnect = self._cb_disconnect
        c.on_publish = self._cb_publish
        c.on_message = self._cb_message
        c.on_subscribe = self._cb_subscribe
        c.on_socket_open = self._cb_socket_open
        c.on_socket_close = self._cb_socket_close
        c.on_socket_register_write = self._cb_register_write
        c.on_socket_unregister_write = self._cb_unregister_write
        c.connect_async(settings.host, settings.port, settings.keepalive_s,
                        **_connect_args(settings))
        self._loop_thread = threading.get_ident()
        self._listener: TransportListener | None = None
        self._subs: dict[str, Callable[[InboundMessage], None]] = {}
        self._granted: dict[int, Callable[[bool], None]] = {}
        self._grant_on_connect: dict[str, Callable[[bool], None]] = {}
        self._sock: Any = None
        self._fd = -1
        self._connected = False
        self._connection = 0     # counts connections and losses: names the current one
        self._up_since: float | None = None   # monotonic time of the current CONNACK
        self._connack_seen = False             # on this connect attempt (refused or not)
        self._loss = ""                        # the last disconnect's reason
        self._sub_waiting: dict[int, str] = {}  # SUBSCRIBE mid -> topic, until its SUBACK
        # topic -> (not before, delay, the failure cost the connection)
        self._sub_retry: dict[str, tuple[float, float, bool]] = {}
        # SUBSCRIBEs waiting for no publish in flight (this connection), and until when
        self._quiet_topics: set[str] = set()
        self._quiet_until: float | None = None
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._inflight: set[int] = set()   # QoS 1/2 publish mids until their PUBACK
        self._session_present = False       # this connection's CONNACK said so
        self._sub_timers: dict[str, asyncio.TimerHandle] = {}
        self._refusal = ""
        self._last_refusal = ""   # the broker's last CONNACK refusal, until a connect works
        self._closing = False
        self._urgent = False
        self._lost = asyncio.Event()
        self._kick = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._misc: asyncio.TimerHandle | None = None
        self._writer_added = False
        self._write_soon_pending = False

    # -- the port ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def refusal(self) -> str:
        """The broker's reason for refusing the last connect ("" once one is accepted)."""
        return self._last_refusal

    def set_listener(self, listener: TransportListener) -> None:
        self._listener = listener

    def connect(self) -> None:
        """Keep connected from now on (reconnecting with backoff) until :meth:`close`."""
        if self._keeper is None:
            self._keeper = self._loop.create_task(self._keep(), name="mqtt-keeper")

    def alive(self) -> bool:
        return self._keeper is not None and not self._keeper.done()

    def set_urgent(self, alarm_waiting: bool) -> None:
        if alarm_waiting != self._urgent:
            self._urgent = alarm_waiting
            if alarm_waiting:
                self._kick.set()

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> Published:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        state = _state(info.rc)
        if qos and state is not PublishState.FAILED:
            self._inflight.add(info.mid)
        return Published(info.mid, state, "" if state is PublishState.SENT
                         else mqtt.error_string(info.rc))

    def flush(self) -> None:
        if self._sock is not None and self._client.want_write():
            self._client.loop_write()

    def subscribe(self, topic: str, handler: Callable[[InboundMessage], None],
                  on_granted: Callable[[bool], None] | None = None) -> Unsubscribe:
        """As :meth:`agent.ports.Transport.subscribe`; ``on_granted(ok)`` hears the broker's
        SUBACK for this subscription (``False``: refused, e.g. by an ACL)."""
        self._subs[topic] = handler
        if self._connected:
            self._send_subscribe(topic, on_granted)
        elif on_granted is not None:
            self._grant_on_connect[topic] = on_granted

        def unsubscribe() -> None:
            if self._subs.get(topic) is handler:
                del self._subs[topic]
                self._sub_retry.pop(topic, None)
                self._quiet_topics.discard(topic)
                timer = self._sub_timers.pop(topic, None)
                if timer is not None:
                    timer.cancel()
                if self._connected:
                    self._client.unsubscribe(topic)

        return unsubscribe

    def subscriptions(self) -> dict[str, Callable[[InboundMessage], None]]:
        return dict(self._subs)

    def ack(self, messages: list[Delivered]) -> int:
        """PUBACK (``manual_ack``) what came on the current connection; returns how many
        were not acknowledged. A message received on an earlier connection is never
        acknowledged on a later one (its packet id may by then name another message): the
        broker redelivers it. Runs on the loop, so no connection change can come between
        the check and the queued PUBACK."""
        skipped = 0
        for m in messages:
            if m.qos == 0:
                continue
            if m.connection != self._connection or not self._connected:
                skipped += 1
                continue
            self._client.ack(m.mid, m.qos)
        return skipped

    async def connect_once(self) -> None:
        """One blocking connect attempt in the executor (raises ``OSError``,
        ``ssl.SSLError`` or ``ValueError`` when the broker cannot be reached); the CONNACK
        arrives later (:meth:`TransportListener.on_connected`)."""
        self._loop_thread = threading.get_ident()
        self._drop_socket()
        self._lost.clear()
        self._connack_seen = False
        fut = self._loop.run_in_executor(None, self._connect_blocking)
        self._connecting = fut
        try:
            await asyncio.shield(fut)
        finally:
            if fut.done():
                self._connecting = None

    async def close(self, deadline: float) -> None:
        if self._connected and self._sock is not None:
            self._closing = True
            self._lost.clear()
            self._client.disconnect()
            # Paho writes the DISCONNECT from our writer callback and then closes the
            # socket; closing it ourselves first would make the broker publish the will.
            left = min(deadline, time.monotonic() + 1.0) - time.monotonic()
            if self._sock is not None and left > 0:
                try:
                    await asyncio.wait_for(self._lost.wait(), left)
                except TimeoutError:
                    log.warning("MQTT DISCONNECT not written within %.1f s", left)
        self._closing = True
        self._kick.set()
        self._lost.set()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keeper
        fut = self._connecting
        if fut is not None and not fut.done():
            # A connect still running in the executor (at most paho's connect timeout): its
            # socket is closed when it ends.
            left = min(deadline, time.monotonic() + 2.0) - time.monotonic()
            if left > 0:
                await asyncio.wait([fut], timeout=left)
            fut.add_done_callback(lambda _f: self._release())
        await asyncio.sleep(0)   # socket callbacks handed over from the executor thread
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self._connected = False
        if fut is None or fut.done():
            self._release()

    # -- connection keeping ---------------------------------------------------------------------
    def _connect_blocking(self) -> None:
        """Executor thread: DNS, TCP connect, TLS handshake, CONNECT queued."""
        ctx = self._tls
        if ctx is not None:
            ctx.wrapped.clear()
        try:
            self._client.reconnect()
        except BaseException:
            if ctx is not None:
                for sock in ctx.wrapped:
                    if sock is not self._client.socket():
                        sock.close()
            raise

    async def _keep(self) -> None:
        s = self.settings
        delays = reconnect_delays(s.reconnect_min_s, s.reconnect_max_s, self._rng)
        while not self._closing:
            try:
                await self.connect_once()
            except (OSError, ssl.SSLError, ValueError) as exc:
                if self._closing:
                    break
                wait = next(delays)
                log.warning("MQTT broker %s:%d unreachable (%s); retrying in %.1f s%s",
                            s.host, s.port, exc, wait, self._urgent_note(wait))
                await self._backoff_wait(wait)
                continue
            await self._lost.wait()
            if self._closing:
                break
            up, self._up_since = self._up_since, None
            if up is not None and time.monotonic() - up >= stable_after(s):
                delays = reconnect_delays(s.reconnect_min_s, s.reconnect_max_s, self._rng)
            wait = next(delays)
            if not self._connack_seen and s.protocol == "5":
                log.warning("MQTT broker %s:%d closed the connection before any CONNACK: it "
                            "may not support MQTT 5; if so set mqtt.protocol = \"3.1.1\"%s",
                            s.host, s.port,
                            "" if s.tls else " (or the port is a TLS listener and TLS is off: "
                            "set mqtt.tls_ca_file, or use mqtts://)")
            log.warning("MQTT connection lost (%s); reconnecting in %.1f s%s",
                        self._loss or "closed", wait, self._urgent_note(wait))
            self._loss = ""
            await self._backoff_wait(wait)

    def _urgent_note(self, wait: float) -> str:
        if wait > self.settings.reconnect_alarm_s:
            return f" (within {self.settings.reconnect_alarm_s:g} s while an alarm waits)"
        return ""

    async def _backoff_wait(self, wait: float) -> None:
        """Wait ``wait`` seconds, but no longer than ``reconnect_alarm_s`` from the start of
        the wait while an alarm is waiting (one stored during a long wait shortens it)."""
        start = time.monotonic()
        deadline = start + wait
        while not self._closing:
            if self._urgent:
                deadline = min(deadline, start + self.settings.reconnect_alarm_s)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), left)

    # -- sockets on the loop ---------------------------------------------------------------------
    def _on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):   # loop closed: nothing left to watch
                self._loop.call_soon_threadsafe(fn, *args)

    def _cb_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch, sock)

    def _cb_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch, sock)

    def _cb_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._want_write, sock, True)

    def _cb_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._want_write, sock, False)

    def _watch(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0 or self._closing:
            return   # a connect that ended after close(): _release closes its socket
        if self._sock is not None and self._sock is not sock:
            self._unwatch(self._sock)
        self._sock, self._fd = sock, fd
        self._writer_added = self._write_soon_pending = False
        self._loop.add_reader(fd, self._readable, sock)
        if self._client.want_write():
            self._want_write(sock, True)
        if self._misc is None:
            self._misc = self._loop.call_later(_MISC_EVERY_S, self._tick)

    def _unwatch(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._writer_added = False
        self._sock, self._fd = None, -1
        self._lost.set()

    def _want_write(self, sock: Any, on: bool) -> None:
        """Paho has bytes to write (or no more). Written at the end of this loop turn, all
        publishes of the turn together; the descriptor is watched for writability only when
        the socket's buffer is full (no epoll change per message in a drain)."""
        if sock is not self._sock or self._fd < 0:
            return
        if on:
            if not self._write_soon_pending and not self._writer_added:
                self._write_soon_pending = True
                self._loop.call_soon(self._write_soon, sock)
        elif self._writer_added:
            self._writer_added = False
            self._loop.remove_writer(self._fd)

    def _write_soon(self, sock: Any) -> None:
        self._write_soon_pending = False
        if sock is not self._sock:
            return
        # Paho sends each packet with its own send(); corked, the kernel sends the turn's
        # packets as few segments when uncorked (a drain spent most of its time in send()).
        corked = _cork(sock, True)
        try:
            self._client.loop_write()
        finally:
            if corked:
                _cork(sock, False)
        if sock is self._sock and self._client.want_write() and not self._writer_added:
            self._writer_added = True      # the socket's buffer is full: wait until writable
            self._loop.add_writer(self._fd, self._writable, sock)

    def _readable(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        self._client.loop_read()
        # TLS may hold decrypted bytes the descriptor no longer signals.
        if sock is self._sock and isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._loop.call_soon(self._readable, sock)

    def _writable(self, sock: Any) -> None:
        if sock is self._sock:
            self._client.loop_write()
            if sock is self._sock and not self._client.want_write() and self._writer_added:
                self._writer_added = False
                self._loop.remove_writer(self._fd)

    def _tick(self) -> None:
        self._misc = None
        if self._closing and self._sock is None:
            return
        self._client.loop_misc()
        self._misc = self._loop.call_later(_MISC_EVERY_S, self._tick)

    def _drop_socket(self) -> None:
        """Close a socket paho still holds (a connect that ended after we stopped, or a
        connection being replaced) on the loop, unwatching it first."""
        sock = self._client.socket()
        if sock is None:
            return
        if sock is self._sock:
            self._unwatch(sock)
        if isinstance(sock, socket.socket):
            sock.close()

    def _release(self) -> None:
        """Closed for good: drop the socket and the callbacks (they refer back to us)."""
        self._drop_socket()
        if self._sock is not None:
            self._unwatch(self._sock)
        c = self._client
        c.on_connect = c.on_disconnect = c.on_publish = c.on_message = None
        c.on_subscribe = None
        c.on_socket_open = c.on_socket_close = None
        c.on_socket_register_write = c.on_socket_unregister_write = None

    # -- paho callbacks (on the loop, inside loop_read/loop_write/loop_misc) ---------------------
    def _send_subscribe(self, topic: str, on_granted: Callable[[bool], None] | None) -> None:
        retry = self._sub_retry.get(topic)
        if retry is not None and retry[0] > time.monotonic():
            # Refused or suspected of costing a connection: not before its own backoff.
            if on_granted is not None:
                self._grant_on_connect[topic] = on_granted
            if topic not in self._sub_timers:
                self._sub_timers[topic] = self._loop.call_later(
                    retry[0] - time.monotonic(), self._retry_subscribe, topic)
            return
        if self._inflight and (self._session_present or (retry is not None and retry[2])):
            now = time.monotonic()
            if self._quiet_until is None:
                self._quiet_until = now + _SUB_QUIET_MAX_S
            if now < self._quiet_until:
                # It may cost this connection: not while a publish waits for its PUBACK.
                # Sent from _cb_publish when the last PUBACK comes, or at the deadline (no
                # polling: 1,000 hubs polling 3 topics each held a loop after a restart).
                if on_granted is not None:
                    self._grant_on_connect[topic] = on_granted
                self._quiet_topics.add(topic)
                if self._quiet_timer is None:
                    self._quiet_timer = self._loop.call_later(
                        self._quiet_until - now, self._quiet_over)
                return
        self._quiet_topics.discard(topic)
        rc, mid = self._client.subscribe(topic, qos=1)
        if mid is not None and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._sub_waiting[mid] = topic
        if on_granted is not None:
            if mid is None or rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._loop.call_soon(on_granted, False)
            else:
                self._granted[mid] = on_granted

    def _quiet_over(self) -> None:
        """No publish in flight any more, or the wait's deadline: send what waited."""
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None
        topics, self._quiet_topics = self._quiet_topics, set()
        if time.monotonic() >= (self._quiet_until or 0.0):
            self._inflight.clear()      # PUBACKs that never came must not hold the next wait
        for topic in topics:
            if self._connected and topic in self._subs \
                    and topic not in self._sub_waiting.values():
                self._send_subscribe(topic, self._grant_on_connect.pop(topic, None))
        if not self._quiet_topics:
            self._quiet_until = None    # the next wait (a retry later on) has its own 5 s

    def _subscribe_all(self, connection: int) -> None:
        """After the owner heard of the connection (it publishes first)."""
        if connection != self._connection or not self._connected:
            return
        for topic in list(self._subs):
            self._send_subscribe(topic, self._grant_on_connect.pop(topic, None))

    def _retry_subscribe(self, topic: str) -> None:
        self._sub_timers.pop(topic, None)
        if self._connected and topic in self._subs and topic not in self._sub_waiting.values():
            self._send_subscribe(topic, self._grant_on_connect.pop(topic, None))

    def _sub_failed(self, topic: str, why: str, costly: bool = False) -> None:
        s = self.settings
        prev = self._sub_retry.get(topic)
        if costly:
            first, cap = s.costly_sub_retry_s, max(s.costly_sub_retry_max_s, s.costly_sub_retry_s)
        else:
            first, cap = _SUB_RETRY_FIRST_S, max(s.reconnect_max_s, _SUB_RETRY_FIRST_S)
        if prev is None or (costly and not prev[2]):
            delay = first
        else:
            delay = min(max(prev[1] * 2, first), cap)
        self._sub_retry[topic] = (time.monotonic() + delay, delay, costly)
        log.error("MQTT subscription %s %s; retrying it in %.0f s (publishing goes on)",
                  topic, why, delay)
        if self._connected and topic not in self._sub_timers:
            self._sub_timers[topic] = self._loop.call_later(delay, self._retry_subscribe, topic)

    def _cb_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        self._connack_seen = True
        if reason_code.is_failure:
            self._refusal = self._last_refusal = _reason(reason_code, properties)
            log.error("MQTT broker %s:%d refused the connection: %s", self.settings.host,
                      self.settings.port, self._refusal)
            return
        self._refusal = self._last_refusal = ""
        self._session_present = bool(getattr(flags, "session_present", False))
        self._connected = True
        self._connection += 1
        self._up_since = time.monotonic()
        if self._listener is not None:
            self._loop.call_soon(self._listener.on_connected,
                                 bool(getattr(flags, "session_present", False)))
        self._loop.call_soon(self._subscribe_all, self._connection)

    def _cb_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected = False
        self._connection += 1
        for mid, topic in self._sub_waiting.items():
            self._sub_failed(topic, "got no SUBACK before the connection closed",
                             costly=True)
            cb = self._granted.pop(mid, None)
            if cb is not None:
                self._grant_on_connect[topic] = cb   # heard when it is granted later
        self._sub_waiting.clear()
        for timer in self._sub_timers.values():
            timer.cancel()
        self._sub_timers.clear()
        self._quiet_topics.clear()
        self._quiet_until = None
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None
        self._loss = _reason(reason_code, properties)
        reason, self._refusal = self._refusal or self._loss, ""
        if self._listener is not None:
            self._loop.call_soon(self._listener.on_disconnected, reason)

    def _cb_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._inflight.discard(mid)
        if not self._inflight and self._quiet_topics:
            self._loop.call_soon(self._quiet_over)
        if self._listener is not None:
            self._listener.on_puback(mid, bool(reason_code.is_failure))

    def _cb_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        cb = self._granted.pop(mid, None)
        topic = self._sub_waiting.pop(mid, None)
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if topic is not None:
            if bad:
                self._sub_failed(topic, "refused by the broker: "
                                 + _reason(", ".join(bad), properties))
            else:
                self._sub_retry.pop(topic, None)
        if cb is not None:
            self._loop.call_soon(cb, not bad)

    def _cb_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        for pattern, handler in self._subs.items():
            if mqtt.topic_matches_sub(_filter_of(pattern), msg.topic):
                inbound: InboundMessage
                if self.settings.manual_ack:
                    inbound = Delivered(msg.topic, bytes(msg.payload), bool(msg.retain),
                                        msg.mid, msg.qos, self._connection)
                else:
                    inbound = InboundMessage(msg.topic, bytes(msg.payload), bool(msg.retain))
                self._loop.call_soon(handler, inbound)
                return


class BlockingClient:
    """An :class:`MqttTransport` on a private event loop in one thread, for synchronous
    callers (the support CLI, the simulator's watcher). Handlers and the listener run on
    that thread; every method here waits for the loop to have done it."""

    def __init__(self, settings: ClientSettings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run,
                                        name=f"mqtt-{settings.client_id}", daemon=True)
        self._thread.start()
        try:
            self._transport: MqttTransport = self._call(MqttTransport, settings, self._loop)
        except BaseException:
            self._shutdown()
            raise

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result()

    def set_listener(self, listener: TransportListener) -> None:
        self._call(self._transport.set_listener, listener)

    def connect(self, timeout: float) -> None:
        """One attempt; raises ``OSError``/``ssl.SSLError``/``ValueError`` if unreachable."""
        asyncio.run_coroutine_threadsafe(self._transport.connect_once(),
                                         self._loop).result(timeout)

    def subscribe(self, topic: str, handler: Callable[[InboundMessage], None],
                  on_granted: Callable[[bool], None] | None = None) -> Unsubscribe:
        return self._call(self._transport.subscribe, topic, handler, on_granted)

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> Published:
        return self._call(self._transport.publish, topic, payload, qos, retain)

    def ack(self, messages: list[Delivered]) -> int:
        return self._call(self._transport.ack, messages)

    @property
    def connected(self) -> bool:
        return self._transport.connected

    @property
    def refusal(self) -> str:
        return self._transport.refusal

    def keep_connected(self) -> None:
        """Reconnect with backoff after every loss from now on (until :meth:`close`)."""
        self._call(self._transport.connect)

    def close(self, timeout: float = 2.0) -> None:
        try:
            asyncio.run_coroutine_threadsafe(
                self._transport.close(time.monotonic() + timeout), self._loop
            ).result(timeout + 1.0)
        except (TimeoutError, concurrent.futures.TimeoutError):
            log.warning("MQTT client did not close within %.1f s", timeout)
        finally:
            self._shutdown()

    def _run(self) -> None:
        """The loop's thread; the loop is also wound down here, never on the caller's
        thread (a caller may be running a loop of its own: the simulator's watcher)."""
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()

    def _shutdown(self) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):   # closed meanwhile
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
