"""Deliver stored events to the broker, at least once, alarms first.

This is the outbox policy, apart from any MQTT library: it reads the store through
:class:`agent.ports.EventStore` and sends through :class:`agent.ports.Transport`, which
calls it back (:meth:`Delivery.on_connected`, :meth:`~Delivery.on_disconnected`,
:meth:`~Delivery.on_puback`) on the agent's loop.

Flow control: at most ``max_inflight`` publishes are unacknowledged on the wire; we hand the
transport up to ``_HANDOVER_FACTOR`` times as many, so the next publish goes out the moment a
PUBACK frees a slot, without a turn through this module per message. Each priority has a
cursor (the highest ``seq`` handed over); every refill asks the store for the next events in
priority order, so an alarm stored behind 100,000 telemetry events goes next. The transport
keeps in-flight messages across reconnects and resends them (DUP) itself, so cursors only
move forward while this process lives; a restarted agent starts from the store. An event
leaves the store only on a successful PUBACK (acks are committed in batches).

An alarm is sent once *early*, while its commit's fsync runs (:meth:`Delivery.send_early`);
that send moves no cursor (the commit may still fail), the send loop steps over it when the
store hands it out. An alarm or warning the store could not take at all is sent once
(:meth:`Delivery.send_unstored`) and then left to the transport's QoS 1 retries; storing it
later sends it again under its new seq (same id). While an alarm waits, the transport
reconnects within ``reconnect_alarm_s`` (:meth:`Delivery.set_urgent`).

End-to-end receipts (``mqtt.receipts``): a broker's PUBACK only says the broker took the
message; a broker can still drop it (mosquitto 2.0 restores no ``$share`` subscription from
its persistence, a cluster can lose the node that queued it). With receipts on, every event
(telemetry too: a broker restart dropped 19 of 953 readings while it was final on the
PUBACK) stays in the store after its PUBACK until the service's ingester says it committed
it (``tec/v1/{hub_id}/receipt``, ``{"ids": [...]}``); one that has no receipt
``receipt_timeout_s`` (an alarm: ``receipt_timeout_alarm_s``) after its PUBACK is sent
again (same id and seq: the ingester counts a duplicate and confirms it), the wait doubling
per retry up to an hour. ``auto`` (the default) switches receipts on for good (store meta
``receipts_seen``) when the first receipt arrives, so a hub whose service runs no ingester
of ours behaves as before. Waiting entries are kept in memory (ids and seqs, not payloads:
those are still in the store); a restarted agent sends everything still in the store again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent import __version__
from agent.config import MqttConfig
from agent.model import Priority, iso_utc
from agent.ports import (
    EventStore,
    InboundMessage,
    OutboundEvent,
    PublishState,
    Transport,
    Unsubscribe,
)
from agent.uplink import topics

log = logging.getLogger(__name__)

_FAILED_RETRY_S = 5.0
_ACK_BATCH = 4096
_ACK_DELAY_S = 1.0
# An alarm stored during a drain waits behind at most this queue (a few ms), never behind
# the backlog.
_HANDOVER_FACTOR = 4
_ALARM_RESERVE = 8
_EARLY_IDS_KEPT = 4096
_RECEIPTS_META = "receipts_seen"
_RECEIPT_WAIT_MAX_S = 3600.0
_RECEIPT_IDS_KEPT = 4096
_RECEIPT_MAX_IDS = 10_000          # ids taken from one receipt message
_AWAITING_MAX = 100_000            # beyond this many, a PUBACK is final again (logged)


@dataclasses.dataclass(slots=True)
class _Awaiting:
    """An event the broker acknowledged and the service has not yet confirmed."""

    seq: int
    due: float          # monotonic: send again after this (inf while a copy is in flight)
    wait: float         # the wait after the next PUBACK
    inflight: bool = False


def status_payload(hub_id: str, state: str, reason: str = "") -> bytes:
    """The retained status document (``tec/v1/{hub_id}/status``): a contract."""
    doc: dict[str, Any] = {"state": state, "hub_id": hub_id, "version": __version__,
                           "ts": iso_utc(time.time())}
    if reason:
        doc["reason"] = reason
    return json.dumps(doc, separators=(",", ":")).encode()


class Delivery:
    """The agent's uplink: outbox, status, retained state and subscriptions over one
    transport. Everything is called on the loop."""

    def __init__(
        self,
        cfg: MqttConfig,
        hub_id: str,
        store: EventStore,
        transport: Transport,
        loop: asyncio.AbstractEventLoop,
        on_acked: Callable[[list[int]], None],
        on_connection: Callable[[bool], None],
    ) -> None:
        self.cfg = cfg
        self.hub_id = hub_id
        self.store = store
        self.loop = loop
        self._transport = transport
        self._on_acked = on_acked
        self._on_connection = on_connection
        self.event_topic = topics.event_topic(hub_id, cfg.topic_prefix)
        self.status_topic = topics.status_topic(hub_id, cfg.topic_prefix)
        self.connected = False
        self.connects = 0
        self.published = 0
        self.acked = 0
        self._cursors: dict[Priority, int] = {p: 0 for p in Priority}
        self._inflight: dict[int, OutboundEvent] = {}
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()
        self._ack_scheduled = False
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._retained: dict[str, bytes] = {}
        self._handlers: dict[str, tuple[Callable[[InboundMessage], None], Unsubscribe]] = {}
        self._to_delete: list[int] = []
        self._closing = False
        self._handover = cfg.max_inflight * _HANDOVER_FACTOR
        self._delete_timer: asyncio.TimerHandle | None = None
        self._early_seqs: set[int] = set()   # sent before commit; the send loop skips them
        self._early_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._status_mid: int | None = None
        self._status_acked = asyncio.Event()
        self.receipt_topic = topics.receipt_topic(hub_id, cfg.topic_prefix)
        self._awaiting: dict[str, _Awaiting] = {}
        # Receipts that came before their event's PUBACK, and ids confirmed while a copy
        # sent again was still in flight (its PUBACK then finishes nothing).
        self._receipted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._receipt_timer: asyncio.TimerHandle | None = None
        self._receipt_unsub: Unsubscribe | None = None
        self._awaiting_full_logged = False
        self.receipts_on = cfg.receipts == "on" or (cfg.receipts == "auto"
                                                    and self._receipts_seen())
        self.receipted = 0     # events confirmed by a receipt
        self.resent = 0        # events sent again for want of a receipt
        # Seconds from the broker's PUBACK to the receipt, the latest few hundred (0 for a
        # receipt that came first); what ``receipt_timeout_s`` is measured against.
        self.receipt_lags_s: collections.deque[float] = collections.deque(maxlen=512)
        transport.set_listener(self)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._sender = self.loop.create_task(self._send_loop(), name="uplink-sender")
        if self.cfg.receipts != "off":
            self._receipt_unsub = self._transport.subscribe(self.receipt_topic, self._on_receipt)
        self._transport.connect()

    def alive(self) -> bool:
        """For the watchdog: the connection keeper and the sender task are running."""
        return (self._transport.alive()
                and self._sender is not None and not self._sender.done())

    async def stop(self, deadline: float) -> None:
        """Wait (until ``deadline``, monotonic) for in-flight acks, say offline, disconnect."""
        while self.connected and self._inflight and time.monotonic() < deadline - 0.5:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.01, deadline - 0.5
                                                              - time.monotonic()))
            except TimeoutError:
                break
        if self._sender is not None:
            self._sender.cancel()
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
            self._receipt_timer = None
        self._commit_acks()
        if self.connected:
            sent = self._transport.publish(self.status_topic,
                                           status_payload(self.hub_id, "offline", "shutdown"),
                                           qos=1, retain=True)
            if sent.state is PublishState.SENT:
                self._status_mid = sent.mid
                self._status_acked.clear()
                left = min(deadline, time.monotonic() + 1.0) - time.monotonic()
                if left > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._status_acked.wait(), left)
        self._closing = True
        await self._transport.close(deadline)
        self.connected = False

    # -- transport callbacks ---------------------------------------------------------------------
    def on_connected(self, session_present: bool) -> None:
        if self._closing:
            return
        self.connected = True
        self.connects += 1
        log.info("MQTT connected to %s:%d (session present: %s)",
                 self.cfg.host, self.cfg.port, session_present)
        self._transport.publish(self.status_topic, status_payload(self.hub_id, "online"),
                                qos=1, retain=True)
        for topic, payload in list(self._retained.items()):
            self._transport.publish(topic, payload, qos=1, retain=True)
        self._retained.clear()
        self._on_connection(True)
        self._wake.set()
        self._arm_receipt_check()

    def on_disconnected(self, reason: str) -> None:
        if self.connected and not self._closing:
            log.warning("MQTT disconnected: %s (%d events in flight are kept)", reason,
                        len(self._inflight))
        self.connected = False
        self._on_connection(False)

    def on_puback(self, mid: int, failed: bool) -> None:
        """Runs inside the transport's read: queue it, handle it on the next loop turn."""
        self._acks.append((mid, failed))
        if not self._ack_scheduled:
            self._ack_scheduled = True
            self.loop.call_soon(self._drain_acks)

    # -- acknowledgements ------------------------------------------------------------------------
    def _drain_acks(self) -> None:
        self._ack_scheduled = False
        done: list[int] = []
        while self._acks:
            mid, failed = self._acks.popleft()
            pending = self._inflight.pop(mid, None)
            if pending is None:
                if mid == self._status_mid:
                    self._status_acked.set()
                continue  # status / device-state publish
            if failed:
                log.error("broker rejected event seq %d; retrying in %.0f s", pending.seq,
                          _FAILED_RETRY_S)
                self.loop.call_later(_FAILED_RETRY_S, self._rewind, pending)
                continue
            if self._needs_receipt(pending):
                self._puback_awaits_receipt(pending, done)
                continue
            done.append(pending.seq)
        self._finish(done)
        # Refill once half the window is free: one store query per many PUBACKs, not one
        # each (new events wake the sender at once through notify_new; alarms go early).
        if len(self._inflight) <= self._handover // 2:
            self._wake.set()

    def _finish(self, done: list[int]) -> None:
        """These events are delivered (PUBACK, or with receipts the ingester's receipt)."""
        if not done:
            return
        self.acked += len(done)
        self._on_acked(done)
        self._to_delete.extend(done)
        if len(self._to_delete) >= _ACK_BATCH:
            self._commit_acks()
        elif self._delete_timer is None:
            self._delete_timer = self.loop.call_later(_ACK_DELAY_S, self._commit_acks)

    # -- end-to-end receipts ---------------------------------------------------------------------
    def _receipts_seen(self) -> bool:
        try:
            return self.store.get_meta(_RECEIPTS_META) is not None
        except Exception as exc:  # a store that cannot say: wait for the next receipt
            log.error("cannot read whether receipts were seen: %s", exc)
            return False

    def _needs_receipt(self, pending: OutboundEvent) -> bool:
        if not self.receipts_on or not pending.id:
            return False
        # Past the cap a PUBACK is final again; telemetry gets half of it, so a flood of
        # readings cannot take the protection from alarms; alarms always wait.
        cap = _AWAITING_MAX // 2 if pending.priority >= Priority.TELEMETRY else _AWAITING_MAX
        if (len(self._awaiting) < cap or pending.id in self._awaiting
                or pending.priority == Priority.ALARM):
            return True
        if not self._awaiting_full_logged:
            self._awaiting_full_logged = True
            log.error("%d events wait for the service's receipt (is its ingester down?); until "
                      "receipts come, further events are taken as delivered on the broker's "
                      "PUBACK", len(self._awaiting))
        return False

    def _puback_awaits_receipt(self, pending: OutboundEvent, done: list[int]) -> None:
        event_id = pending.id
        if event_id in self._finished:
            del self._finished[event_id]
            return      # a copy sent again, confirmed meanwhile: already finished
        if event_id in self._receipted:
            del self._receipted[event_id]
            done.append(pending.seq)     # its receipt came first
            self.receipt_lags_s.append(0.0)
            self._awaiting.pop(event_id, None)
            return
        entry = self._awaiting.get(event_id)
        now = time.monotonic()
        if entry is None:
            wait = self._first_wait(pending.priority)
            self._awaiting[event_id] = _Awaiting(pending.seq, now + wait, wait)
        else:
            entry.seq, entry.inflight, entry.due = pending.seq, False, now + entry.wait
        self._arm_receipt_check()

    def _on_receipt(self, msg: InboundMessage) -> None:
        try:
            doc = json.loads(msg.payload)
            ids = doc.get("ids") if isinstance(doc, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError("no 'ids' list of strings")
        except ValueError as exc:   # JSONDecodeError, UnicodeDecodeError too
            log.warning("ignored a malformed receipt on %s (%d bytes): %s", msg.topic,
                        len(msg.payload), exc)
            return
        if not self.receipts_on:
            self.receipts_on = True
            log.info("the service sends receipts: from now on an event leaves the store only "
                     "when the service confirms it (mqtt.receipts = auto)")
            try:
                self.store.set_meta(_RECEIPTS_META, iso_utc(time.time()))
            except Exception as exc:
                log.error("cannot remember that receipts were seen (asked again on the next "
                          "receipt): %s", exc)
        done: list[int] = []
        now = time.monotonic()
        for event_id in ids[:_RECEIPT_MAX_IDS]:
            entry = self._awaiting.pop(event_id, None)
            if entry is None:
                _remember(self._receipted, event_id, _RECEIPT_IDS_KEPT)
                continue
            if entry.inflight:
                _remember(self._finished, event_id, _RECEIPT_IDS_KEPT)
            else:
                self.receipt_lags_s.append(max(0.0, now - (entry.due - entry.wait)))
            done.append(entry.seq)
        self.receipted += len(done)
        if len(self._awaiting) < _AWAITING_MAX // 2:
            self._awaiting_full_logged = False
        self._finish(done)

    def _first_wait(self, priority: Priority) -> float:
        """How long after the PUBACK an event waits for its receipt before it is sent
        again: alarms ``receipt_timeout_alarm_s``, never longer than the others' wait."""
        if priority == Priority.ALARM:
            return min(self.cfg.receipt_timeout_alarm_s, self.cfg.receipt_timeout_s)
        return self.cfg.receipt_timeout_s

    def _arm_receipt_check(self) -> None:
        if self._receipt_timer is None and self._awaiting and not self._closing:
            tick = max(1.0, min(self._first_wait(Priority.ALARM) / 4, 15.0))
            self._receipt_timer = self.loop.call_later(tick, self._check_receipts)

    def _check_receipts(self) -> None:
        self._receipt_timer = None
        self.resend_overdue()
        self._arm_receipt_check()

    def resend_overdue(self, now: float | None = None) -> int:
        """Send again (while connected) what the service has not confirmed in time, as of
        ``now`` (monotonic; default the present). Returns how many were sent."""
        sent_again = 0
        if self.connected and not self._closing:
            now = time.monotonic() if now is None else now
            due = [(i, e) for i, e in self._awaiting.items() if not e.inflight and e.due <= now]
            due = due[: self._handover]
            rows = {r.seq: r for r in self.store.pending_by_seq([e.seq for _, e in due])}
            for event_id, entry in due:
                row = rows.get(entry.seq)
                if row is None:     # no longer pending (or an early send never stored)
                    del self._awaiting[event_id]
                    continue
                if not self._publish_event(row, "send again"):
                    break
                entry.inflight, entry.due = True, float("inf")
                entry.wait = min(entry.wait * 2, _RECEIPT_WAIT_MAX_S)
                sent_again += 1
            if sent_again:
                self.resent += sent_again
                log.warning("%d event(s) sent again: the service has not confirmed them %.0f s "
                            "(alarms %.0f s) or more after the broker's PUBACK (%d awaiting "
                            "receipt)", sent_again, self.cfg.receipt_timeout_s,
                            self._first_wait(Priority.ALARM), len(self._awaiting))
        return sent_again

    @property
    def awaiting_receipt(self) -> int:
        return len(self._awaiting)

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

    def _rewind(self, pending: OutboundEvent) -> None:
        self._cursors[pending.priority] = min(self._cursors[pending.priority], pending.seq - 1)
        self._wake.set()

    # -- sending ---------------------------------------------------------------------------------
    def set_urgent(self, alarm_waiting: bool) -> None:
        """Whether an alarm is waiting for the broker (shortens reconnect waits)."""
        self._transport.set_urgent(alarm_waiting)

    def send_early(self, rows: Sequence[OutboundEvent]) -> None:
        """Called just before ``rows`` are committed: publish the alarms among them now, so
        the fsync and the network round trip overlap. Only when no older alarm is still
        unsent (alarms stay in order); otherwise the send loop takes them in turn. A PUBACK
        is handled on this loop, so never before the commit has finished. Each alarm (by id)
        is sent early at most once, however often its commit is retried, and no cursor
        moves: if the commit fails, the seq is simply never stored."""
        alarms = [r for r in rows if r.priority == Priority.ALARM and r.id not in self._early_ids]
        if (not alarms or not self.connected
                or len(self._inflight) + len(alarms) > self._handover + _ALARM_RESERVE
                or self.store.has_pending(Priority.ALARM, self._cursors[Priority.ALARM],
                                          exclude=self._early_seqs)):
            return
        for ev in alarms:
            sent = self._transport.publish(self.event_topic, ev.payload, qos=1)
            if sent.state is not PublishState.SENT:
                break
            self._inflight[sent.mid] = ev
            self._early_seqs.add(ev.seq)
            _remember(self._early_ids, ev.id, _EARLY_IDS_KEPT)
            self.published += 1
        # On the wire now: the commit's fsync blocks the loop, so waiting for its next
        # turn would put the fsync before the network round trip instead of beside it.
        self._transport.flush()

    def send_unstored(self, rows: Sequence[OutboundEvent]) -> None:
        """Alarms and warnings the store could not take (disk full, I/O error). Each is
        published once (by id) and then left to the transport's QoS 1 delivery (queued while
        offline, resent after a reconnect); it is not in the store, so nothing else sends it
        until a later attempt to store it succeeds."""
        for ev in rows:
            if ev.id in self._early_ids:
                continue
            sent = self._transport.publish(self.event_topic, ev.payload, qos=1)
            if sent.state is PublishState.FAILED:
                log.error("could not hand unstored event seq %d to MQTT: %s", ev.seq,
                          sent.error)
                continue
            self._inflight[sent.mid] = ev
            _remember(self._early_ids, ev.id, _EARLY_IDS_KEPT)
            self.published += 1
        self._transport.flush()

    def notify_new(self) -> None:
        """New events are in the store."""
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
                    if not self._publish_event(ev, "publish"):
                        break
                    self._cursors[ev.priority] = max(self._cursors[ev.priority], ev.seq)
                    self.published += 1
            if self._early_seqs:
                # Early sends whose commit failed never come back from the store.
                cursor = self._cursors[Priority.ALARM]
                self._early_seqs = {s for s in self._early_seqs if s > cursor}

    def _publish_event(self, ev: OutboundEvent, what: str) -> bool:
        """Hand a stored event to the transport and track it until its PUBACK; False (and
        logged) if the transport refused it."""
        sent = self._transport.publish(self.event_topic, ev.payload, qos=1)
        if sent.state is PublishState.FAILED:
            log.error("could not %s seq %d: %s", what, ev.seq, sent.error)
            return False
        self._inflight[sent.mid] = ev
        return True

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- other messages --------------------------------------------------------------------------
    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Best effort retained state: the latest value per topic is sent on (re)connect."""
        if self.connected:
            self._transport.publish(topic, payload, qos=1, retain=True)
        else:
            self._retained[topic] = payload

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """A non-event message (command results). Dropped with a log line while offline."""
        sent = self._transport.publish(topic, payload, qos=qos, retain=retain)
        if sent.state is not PublishState.SENT:
            log.warning("publish to %s not sent now (%s)", topic, sent.error)

    def subscribe(self, topic: str, handler: Callable[[InboundMessage], None]) -> Unsubscribe:
        """``handler(msg)`` runs on the loop for messages on ``topic`` (wildcards ok)."""
        old = self._handlers.pop(topic, None)
        if old is not None:
            old[1]()
        unsub = self._transport.subscribe(topic, handler)

        def unsubscribe() -> None:
            if self._handlers.get(topic, (None, None))[0] is handler:
                del self._handlers[topic]
                unsub()

        self._handlers[topic] = (handler, unsub)
        return unsubscribe


def _remember(kept: collections.OrderedDict[str, None], event_id: str, limit: int) -> None:
    """Add ``event_id`` to a bounded memory of ids (the oldest goes beyond ``limit``)."""
    kept[event_id] = None
    kept.move_to_end(event_id)
    if len(kept) > limit:
        kept.popitem(last=False)
