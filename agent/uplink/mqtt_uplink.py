"""Upload stored events over MQTT, at least once, alarms first.

Threads: paho's network I/O runs in one thread of ours (``_network_loop``) so that we own
reconnection (jittered exponential backoff, capped); everything else runs on the agent's
asyncio loop. Paho callbacks never block: they queue what happened and hand it to the loop.

Flow control: at most ``max_inflight`` publishes are unacknowledged at once. Each priority
has a cursor (the highest ``seq`` handed to paho); every refill asks the store for the next
events in priority order, so an alarm stored behind 100,000 telemetry events goes next.
Paho keeps in-flight messages across reconnects and resends them (DUP) itself, so cursors
only move forward while this process lives; a restarted agent starts from the store.
An event leaves the store only on a successful PUBACK.

An alarm is sent once *early*, while its commit's fsync runs (:meth:`MqttUplink.send_early`);
that send moves no cursor (the commit may still fail), the send loop steps over it when the
store hands it out. An alarm or warning the store could not take at all is sent once
(:meth:`MqttUplink.send_unstored`) and then left to paho's QoS 1 retries; storing it later
sends it again under its new seq (same id). While an alarm waits, a reconnect is never put
off by more than ``reconnect_alarm_s``, whatever the backoff has grown to.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import __version__
from agent.config import MqttConfig
from agent.errors import ConfigError
from agent.model import Priority, iso_utc
from agent.store.sqlite_store import PendingEvent, SqliteStore
from agent.uplink import topics

log = logging.getLogger(__name__)

_FAILED_RETRY_S = 5.0
_ACK_BATCH = 4096
_ACK_DELAY_S = 1.0
# Paho enforces ``max_inflight`` on the wire; we hand it up to this many times as many, so
# the next publish goes out from paho's own thread the moment a PUBACK frees a slot (a
# round trip through our loop per message would halve the drain rate). An alarm stored
# during a drain waits behind at most this queue (a few ms), never behind the backlog.
_HANDOVER_FACTOR = 4
_ALARM_RESERVE = 8
_EARLY_IDS_KEPT = 4096


def read_password(path: str, what: str = "mqtt.password_file") -> str:
    """First line of the password file, without its newline (``what`` names it in errors)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    retain: bool


def release_client(client: mqtt.Client) -> None:
    """Close a stopped paho client's wake-up socket pair now.

    Paho closes it only when the client object is collected, which for a client caught in a
    reference cycle (callbacks that refer back to their owner) happens at some later garbage
    collection and shows up as an unclosed-socket ResourceWarning.
    """
    client.on_connect = client.on_disconnect = client.on_publish = client.on_message = None
    client.on_subscribe = None
    client._reset_sockets()  # noqa: SLF001 - paho 2.x: closes the socket and the socket pair


def _close_sockets_of(exc: BaseException) -> None:
    """Close the sockets a failed connect left behind. Paho does not close its socket when
    the TLS handshake fails (wrong CA, expired certificate), so each retry would leave one to
    the garbage collector."""
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                try:
                    value.close()
                except OSError:
                    pass
        tb = tb.tb_next


def backoff_delays(first: float, cap: float, rng: random.Random | None = None):
    """Exponential backoff with jitter: each delay uniform in [d/2, d], d doubling to ``cap``."""
    rng = rng or random.Random()
    d = first
    while True:
        yield rng.uniform(d / 2, d)
        d = min(d * 2, cap)


class MqttUplink:
    def __init__(
        self,
        cfg: MqttConfig,
        hub_id: str,
        store: SqliteStore,
        loop: asyncio.AbstractEventLoop,
        on_acked: Callable[[list[int]], None],
        on_connection: Callable[[bool], None],
    ) -> None:
        self.cfg = cfg
        self.hub_id = hub_id
        self.store = store
        self.loop = loop
        self._on_acked = on_acked
        self._on_connection = on_connection
        self.event_topic = topics.event_topic(hub_id)
        self.status_topic = topics.status_topic(hub_id)
        self.connected = False
        self.connects = 0
        self.published = 0
        self.acked = 0
        self._client = self._make_client()
        self._cursors: dict[Priority, int] = {p: 0 for p in Priority}
        self._inflight: dict[int, PendingEvent] = {}
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()
        self._ack_scheduled = False
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender: asyncio.Task[None] | None = None
        self._retained: dict[str, bytes] = {}
        self._subscriptions: dict[str, Callable[[InboundMessage], None]] = {}
        self._ever_connected_since_reset = False  # written by the paho thread only
        self._to_delete: list[int] = []
        self._closing = False
        self._handover = cfg.max_inflight * _HANDOVER_FACTOR
        self._delete_timer: asyncio.TimerHandle | None = None
        self._early_seqs: set[int] = set()   # sent before commit; the send loop skips them
        self._early_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._urgent = False                 # an alarm is waiting: reconnect soon (read by
        self._kick = threading.Event()       # the network thread, woken through _kick)
        self._gone = threading.Event()       # paho has sent DISCONNECT (or lost the link)

    # -- setup -------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"tec-agent-{self.hub_id}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        if cfg.username:
            password = read_password(cfg.password_file) if cfg.password_file else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls_ca_file:
            client.tls_set(
                ca_certs=cfg.tls_ca_file,
                certfile=cfg.tls_cert_file,
                keyfile=cfg.tls_key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(self.status_topic, self._status_payload("offline", "connection lost"),
                        qos=1, retain=True)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        return client

    def _status_payload(self, state: str, reason: str = "") -> bytes:
        doc: dict[str, Any] = {"state": state, "hub_id": self.hub_id, "version": __version__,
                               "ts": iso_utc(time.time())}
        if reason:
            doc["reason"] = reason
        return json.dumps(doc, separators=(",", ":")).encode()

    # -- paho thread -------------------------------------------------------------------------
    def start(self) -> None:
        self._sender = self.loop.create_task(self._send_loop(), name="uplink-sender")
        self._thread = threading.Thread(target=self._network_loop, name="mqtt-net", daemon=True)
        self._thread.start()

    def _connect_once(self, first: bool) -> None:
        if not first:
            self._client.reconnect()
            return
        props = None
        kwargs: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self._client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, **kwargs)

    def _network_loop(self) -> None:
        # Paho writes to the socket from whichever thread calls publish() unless it believes
        # a network thread is running (as with loop_start()). Tell it this is that thread, so
        # publishes from the agent loop only queue and the writes are batched here.
        self._client._thread = threading.current_thread()
        delays = backoff_delays(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        first = True
        while not self._stop.is_set():
            try:
                self._connect_once(first)
                first = False
            except (OSError, ssl.SSLError, ValueError) as exc:
                _close_sockets_of(exc)
                wait = next(delays)
                log.warning("MQTT broker %s:%d unreachable (%s); retrying in %.1f s%s",
                            self.cfg.host, self.cfg.port, exc, wait, self._urgent_note(wait))
                self._backoff_wait(wait)
                continue
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.2)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            if self._stop.is_set() or self._closing:
                break
            if self._client.is_connected():
                continue
            if self._ever_connected_since_reset:
                delays = backoff_delays(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
                self._ever_connected_since_reset = False
            wait = next(delays)
            log.warning("MQTT connection lost; reconnecting in %.1f s%s", wait,
                        self._urgent_note(wait))
            self._backoff_wait(wait)

    def _urgent_note(self, wait: float) -> str:
        if wait > self.cfg.reconnect_alarm_s:
            return f" (within {self.cfg.reconnect_alarm_s:g} s while an alarm waits)"
        return ""

    def _backoff_wait(self, wait: float) -> None:
        """Network thread: sleep ``wait`` seconds before the next attempt, but no longer than
        ``reconnect_alarm_s`` from the start of the wait while an alarm is waiting (one
        stored during a long wait shortens it too)."""
        start = time.monotonic()
        deadline = start + wait
        while not self._stop.is_set():
            if self._urgent:
                deadline = min(deadline, start + self.cfg.reconnect_alarm_s)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._kick.wait(left)
            self._kick.clear()

    def set_urgent(self, alarm_waiting: bool) -> None:
        """Loop: whether an alarm is waiting for the broker (shortens reconnect waits)."""
        if alarm_waiting != self._urgent:
            self._urgent = alarm_waiting
            if alarm_waiting:
                self._kick.set()

    def _cb_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused connection: %s", reason_code)
            return
        self._ever_connected_since_reset = True
        self.loop.call_soon_threadsafe(
            self._connected, bool(getattr(flags, "session_present", False))
        )

    def _cb_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._gone.set()
        self.loop.call_soon_threadsafe(self._disconnected, str(reason_code))

    def _cb_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, bool(reason_code.is_failure)))
        if not self._ack_scheduled:
            self._ack_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain_acks)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _cb_message(self, client, userdata, msg) -> None:
        handler = None
        for pattern, h in self._subscriptions.items():
            if mqtt.topic_matches_sub(pattern, msg.topic):
                handler = h
                break
        if handler is not None:
            inbound = InboundMessage(msg.topic, bytes(msg.payload), bool(msg.retain))
            self.loop.call_soon_threadsafe(handler, inbound)

    # -- loop side ---------------------------------------------------------------------------
    def _connected(self, session_present: bool) -> None:
        self.connected = True
        self.connects += 1
        log.info("MQTT connected to %s:%d (session present: %s)",
                 self.cfg.host, self.cfg.port, session_present)
        self._client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
        for topic in self._subscriptions:
            self._client.subscribe(topic, qos=1)
        for topic, payload in list(self._retained.items()):
            self._client.publish(topic, payload, qos=1, retain=True)
        self._retained.clear()
        self._on_connection(True)
        self._wake.set()

    def _disconnected(self, reason: str) -> None:
        if self.connected and not self._closing:
            log.warning("MQTT disconnected: %s (%d events in flight are kept)", reason,
                        len(self._inflight))
        self.connected = False
        self._on_connection(False)

    def _drain_acks(self) -> None:
        self._ack_scheduled = False
        done: list[int] = []
        while self._acks:
            mid, failed = self._acks.popleft()
            pending = self._inflight.pop(mid, None)
            if pending is None:
                continue  # status / device-state publish
            if failed:
                log.error("broker rejected event seq %d; retrying in %.0f s", pending.seq,
                          _FAILED_RETRY_S)
                self.loop.call_later(_FAILED_RETRY_S, self._rewind, pending)
                continue
            done.append(pending.seq)
        if done:
            self.acked += len(done)
            self._on_acked(done)
            self._to_delete.extend(done)
            if len(self._to_delete) >= _ACK_BATCH:
                self._commit_acks()
            elif self._delete_timer is None:
                self._delete_timer = self.loop.call_later(_ACK_DELAY_S, self._commit_acks)
        self._wake.set()

    def _commit_acks(self) -> None:
        """Delete acknowledged events in one transaction, at most every ``_ACK_DELAY_S``, so a
        fast drain does not pay a transaction per PUBACK and a quiet hub does not wear its SD
        card. Losing this to a crash only means sending those events again (same ids)."""
        if self._delete_timer is not None:
            self._delete_timer.cancel()
            self._delete_timer = None
        done, self._to_delete = self._to_delete, []
        if done:
            self.store.ack(done)

    def _rewind(self, pending: PendingEvent) -> None:
        self._cursors[pending.priority] = min(self._cursors[pending.priority], pending.seq - 1)
        self._wake.set()

    def send_early(self, rows: list[PendingEvent]) -> None:
        """Loop only, called just before ``rows`` are committed: publish the alarms among them
        now, so the fsync and the network round trip overlap. Only when no older alarm is
        still unsent (alarms stay in order); otherwise the send loop takes them in turn.
        A PUBACK is handled on this loop, so never before the commit has finished. Each
        alarm (by id) is sent early at most once, however often its commit is retried, and
        no cursor moves: if the commit fails, the seq is simply never stored."""
        alarms = [r for r in rows if r.priority == Priority.ALARM and r.id not in self._early_ids]
        if (not alarms or not self.connected
                or len(self._inflight) + len(alarms) > self._handover + _ALARM_RESERVE
                or self.store.has_pending(Priority.ALARM, self._cursors[Priority.ALARM],
                                          exclude=self._early_seqs)):
            return
        for ev in alarms:
            info = self._client.publish(self.event_topic, ev.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._inflight[info.mid] = ev
            self._early_seqs.add(ev.seq)
            self._remember_early(ev.id)
            self.published += 1

    def send_unstored(self, rows: list[PendingEvent]) -> None:
        """Loop only: alarms and warnings the store could not take (disk full, I/O error).
        Each is published once (by id) and then left to paho's QoS 1 delivery (queued while
        offline, resent after a reconnect); it is not in the store, so nothing else sends it
        until a later attempt to store it succeeds."""
        for ev in rows:
            if ev.id in self._early_ids:
                continue
            info = self._client.publish(self.event_topic, ev.payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.error("could not hand unstored event seq %d to MQTT: %s", ev.seq, info.rc)
                continue
            self._inflight[info.mid] = ev
            self._remember_early(ev.id)
            self.published += 1

    def _remember_early(self, event_id: str) -> None:
        self._early_ids[event_id] = None
        if len(self._early_ids) > _EARLY_IDS_KEPT:
            self._early_ids.popitem(last=False)

    def notify_new(self) -> None:
        """Loop only: new events are in the store."""
        self._wake.set()

    async def _send_loop(self) -> None:
        window = self._handover
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.connected and len(self._inflight) < window:
                batch = self.store.next_batch(self._cursors, window - len(self._inflight))
                if not batch:
                    break
                for ev in batch:
                    if ev.seq in self._early_seqs:   # already on the wire (send_early)
                        self._early_seqs.discard(ev.seq)
                        self._cursors[ev.priority] = max(self._cursors[ev.priority], ev.seq)
                        continue
                    info = self._client.publish(self.event_topic, ev.payload, qos=1)
                    if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,
                                       MQTTErrorCode.MQTT_ERR_NO_CONN):
                        log.error("publish of seq %d failed: %s", ev.seq, info.rc)
                        break
                    self._inflight[info.mid] = ev
                    self._cursors[ev.priority] = max(self._cursors[ev.priority], ev.seq)
                    self.published += 1
            if self._early_seqs:
                # Early sends whose commit failed never come back from the store.
                cursor = self._cursors[Priority.ALARM]
                self._early_seqs = {s for s in self._early_seqs if s > cursor}

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def alive(self) -> bool:
        """For the watchdog: the network thread and the sender task are running."""
        return (
            self._thread is not None and self._thread.is_alive()
            and self._sender is not None and not self._sender.done()
        )

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Best effort retained state: the latest value per topic is sent on (re)connect."""
        if self.connected:
            self._client.publish(topic, payload, qos=1, retain=True)
        else:
            self._retained[topic] = payload

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """A non-event message (command results). Dropped with a log line while offline."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("publish to %s not sent now (%s)", topic, info.rc)

    def subscribe(self, topic: str, handler: Callable[[InboundMessage], None]) -> None:
        """Loop only: ``handler(msg)`` runs on the loop for messages on ``topic`` (wildcards ok)."""
        self._subscriptions[topic] = handler
        if self.connected:
            self._client.subscribe(topic, qos=1)

    async def stop(self, deadline: float) -> None:
        """Wait (until ``deadline``, monotonic) for in-flight acks, say offline, disconnect."""
        while self.connected and self._inflight and time.monotonic() < deadline - 0.5:
            await asyncio.sleep(0.02)
        if self._sender is not None:
            self._sender.cancel()
        self._commit_acks()
        if self.connected:
            info = self._client.publish(self.status_topic,
                                        self._status_payload("offline", "shutdown"),
                                        qos=1, retain=True)
            end = min(deadline, time.monotonic() + 1.0)
            while not info.is_published() and time.monotonic() < end and self.connected:
                await asyncio.sleep(0.01)
            self._closing = True
            self._gone.clear()
            self._client.disconnect()
            # The network thread writes the DISCONNECT; stopping it first would close the
            # socket without one, and the broker would publish the will ("connection lost")
            # over the retained "shutdown" status (seen under load).
            end = min(deadline, time.monotonic() + 1.0)
            while not self._gone.is_set() and time.monotonic() < end:
                await asyncio.sleep(0.01)
        self._closing = True
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 2.0)
        self.connected = False
        if self._thread is None or not self._thread.is_alive():
            release_client(self._client)
