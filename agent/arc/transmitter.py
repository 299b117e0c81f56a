"""The DC-09 transmitter: alarms to the receiving centre until one receiver ACKs them.

Policy, for each message (one at a time, most urgent first):

1. the primary receiver, up to ``retries`` attempts, each waiting ``timeout_s`` for an answer;
2. ``ACK`` (same sequence number and account; encrypted if we encrypted): delivered;
3. ``NAK``: the receiver refused the frame (bad CRC or a timestamp too far from its clock).
   It carries its own time: our timestamps are corrected by the difference and the message
   is sent again at once (one attempt used);
4. ``DUH``: the receiver does not understand the message. Sending it again will not help:
   the message is sent once with the generic code of its Contact ID class (see
   :mod:`agent.arc.codes`); if that is not understood either, the next receiver is tried;
5. no answer (refused, lost, timeout): after ``retries`` attempts, the next receiver;
6. after the last receiver, a pause (doubling up to ``retry_max_s``) and the primary again,
   for ever: an alarm is never given up on while any receiver may still take it. Only when
   every receiver answered ``DUH`` to every form of it is it *refused* (reported). After a
   failed round, an event that is at least as urgent and waiting goes first (one message no
   receiver takes cannot hold back the next alarm).

Supervision: every ``supervision_s`` each receiver gets a ``NULL`` message. A receiver that
gave no answer to a message or to a supervision round is *down*; the first answer after
that makes it *up* again. Both changes are reported through ``on_path``.

The transmitter knows nothing of the store: it reports outcomes through callbacks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.aio import cancel_all
from agent.arc import dc09
from agent.arc.codes import ArcCode, generic_of
from agent.arc.config import ArcConfig, read_key
from agent.arc.link import Link, LinkError
from agent.errors import DecodeError

log = logging.getLogger(__name__)
CONNECT_ERROR_WAIT_S = 0.2   # between attempts when the receiver refused the connection
MAX_NAK_FIXES = 2            # clock corrections per attempt round (a receiver NAKing for ever)
SEQ_BLOCK = 100              # sequence numbers reserved (stored) at a time


@dataclass(order=True)
class Outgoing:
    """One event waiting for the ARC. Ordered by priority, then arrival."""

    priority: int
    order: int
    event_id: str = field(compare=False)
    code: ArcCode = field(compare=False)
    zone: int = field(compare=False)
    queued_mono: float = field(compare=False, default_factory=time.monotonic)
    pause: float = field(compare=False, default=0.0)   # before the next round (0: first)


@dataclass(frozen=True, slots=True)
class Outcome:
    event_id: str
    acked: bool
    receiver: str
    dc09_seq: int
    answer: str           # the receiver's answer as text (ACK/DUH ...), for the record
    latency_ms: float     # queued to answer
    code: int             # the Contact ID code the ARC accepted (a DUH fallback shows here)


class Transmitter:
    def __init__(self, config: ArcConfig,
                 on_outcome: Callable[[Outcome], None],
                 on_path: Callable[[str, bool, str], None],
                 on_attempt: Callable[[str], None] | None = None,
                 wall: Callable[[], float] = time.time,
                 seq_start: int = 0,
                 on_seq_block: Callable[[int], None] | None = None) -> None:
        """``seq_start``: the last sequence number an earlier run may have used;
        ``on_seq_block(n)`` is told before numbers up to ``n`` are used, to store it (a
        receiver may take a number it saw recently for a repeat, so numbers continue across
        restarts)."""
        self.config = config
        self.links = [Link(r) for r in config.receivers]
        self.keys = [read_key(r.key_file) if r.key_file else None for r in config.receivers]
        self._on_outcome = on_outcome
        self._on_path = on_path
        self._on_attempt = on_attempt
        self._wall = wall
        self._queue: list[Outgoing] = []
        self._queued: set[str] = set()
        self._order = itertools.count()
        self._seq = seq_start % dc09.SEQ_MAX
        self._on_seq_block = on_seq_block
        self._seq_reserved = self._seq
        self._offset_s = 0.0                    # receiver clock minus ours (from NAKs)
        self._up: dict[str, bool | None] = {link.label: None for link in self.links}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.current: str | None = None         # event id being sent now
        # event id -> (seq, frame, connection generation, mono) sent early to the primary
        self._early: dict[str, tuple[int, bytes, int, float]] = {}
        self.sent_early = 0

    # -- queue ----------------------------------------------------------------------------
    def enqueue(self, event_id: str, priority: int, code: ArcCode, zone: int,
                queued_mono: float | None = None) -> None:
        if event_id in self._queued:
            return
        self._queued.add(event_id)
        heapq.heappush(self._queue, Outgoing(priority, next(self._order), event_id, code, zone,
                                             time.monotonic() if queued_mono is None
                                             else queued_mono))
        self._wake.set()

    def send_early(self, event_id: str, priority: int, code: ArcCode, zone: int) -> bool:
        """Loop only, synchronous: send an alarm's first frame to the primary now, while the
        store's commit (and its fsync) is still to run, as the MQTT uplink does. Only when
        nothing else is queued or in flight (alarms stay in order) and the primary's
        connection is open and idle. The ACK is read by the sender once :meth:`enqueue`
        hands it the committed alarm; nothing is recorded before that."""
        link = self.links[0] if self.links else None
        now = time.monotonic()
        for stale in [k for k, v in self._early.items() if now - v[3] > self.config.timeout_s]:
            del self._early[stale]           # its commit failed: it is sent when stored
        # One at a time: a second early frame's answer would be read, and skipped, while
        # the sender waits for the first one's.
        if (link is None or self._queue or self.current is not None or self._early
                or not link.ready()):
            return False
        seq = self.next_seq()
        item = Outgoing(priority, 0, event_id, code, zone)
        msg = self._message(0, seq, item, code)
        frame = dc09.encode(msg, self._now(), self.keys[0])
        self._early[event_id] = (seq, frame, link.write_now(frame), time.monotonic())
        self.sent_early += 1
        return True

    @property
    def backlog(self) -> int:
        return len(self._queued)

    def path_up(self) -> dict[str, bool | None]:
        return dict(self._up)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sender(), name="arc-sender"))
        if self.config.supervision_s > 0:
            for i in range(len(self.links)):
                self._tasks.append(loop.create_task(self._supervise(i), name=f"arc-null-{i}"))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        for link in self.links:
            await link.close()

    # -- sending --------------------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq = self._seq % dc09.SEQ_MAX + 1
        if self._on_seq_block is not None and (self._seq == 1 or self._seq > self._seq_reserved):
            self._seq_reserved = min(dc09.SEQ_MAX, self._seq + SEQ_BLOCK - 1)
            self._on_seq_block(self._seq_reserved)
        return self._seq

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC) + timedelta(
            seconds=self._offset_s)

    def _message(self, i: int, seq: int, item: Outgoing | None,
                 code: ArcCode | None) -> dc09.Message:
        r = self.config.receivers[i]
        if item is None or code is None:
            return dc09.null(seq, self.config.account, receiver=r.receiver_prefix or None,
                             line=r.line_prefix)
        if self.config.format == dc09.SIA_DCS:
            return dc09.sia_dcs(seq, self.config.account, code.sia, zone=item.zone, group=1,
                                receiver=r.receiver_prefix or None, line=r.line_prefix)
        return dc09.adm_cid(seq, self.config.account, code.contact_id, zone=item.zone,
                            receiver=r.receiver_prefix or None, line=r.line_prefix)

    async def _try(self, i: int, msg: dc09.Message,
                   early: tuple[bytes, int] | None = None) -> dc09.Frame:
        """One attempt on receiver ``i``: the answer (ACK, NAK or DUH), NAKs handled by
        correcting the clock and sending again. ``early``: (frame, connection generation)
        already sent by :meth:`send_early`. Raises :class:`LinkError`."""
        key = self.keys[i]
        link = self.links[i]
        for _ in range(MAX_NAK_FIXES + 1):
            frame, sent_on = early if early is not None else (
                dc09.encode(msg, self._now(), key), None)
            early = None

            def accept(raw: bytes) -> bool:
                try:
                    answer = dc09.parse_response(raw, key)
                except DecodeError as exc:
                    log.warning("%s: unreadable answer ignored (%s)", link.label, exc)
                    return False
                # A NAK names no sequence (0000); anything else must be for this message.
                return answer.kind == "NAK" or answer.seq == msg.seq

            raw = await link.exchange(frame, self.config.timeout_s, accept, sent_on)
            answer = dc09.parse_response(raw, key)
            self._mark(i, True, "answered")
            if answer.kind != "NAK":
                return answer
            if answer.timestamp is not None:
                self._offset_s = (answer.timestamp - datetime.fromtimestamp(
                    self._wall(), UTC)).total_seconds()
                log.warning("%s: NAK; correcting our DC-09 timestamps by %+.1f s to the"
                            " receiver's clock", link.label, self._offset_s)
            else:
                log.warning("%s: NAK without a time; sending again", link.label)
        return answer

    async def _deliver(self, item: Outgoing) -> bool:
        """Rounds over all receivers until one ACKs (True), every one answered DUH (True:
        refused, reported) or another event as urgent is waiting (False: this one goes
        behind it, so one message no receiver takes cannot hold back the next alarm)."""
        while True:
            all_duh = True
            for i in range(len(self.links)):
                outcome, duh = await self._deliver_to(i, item)
                if outcome is not None:
                    self._on_outcome(outcome)
                    return True
                all_duh = all_duh and duh
            if all_duh:
                log.critical("no ARC receiver understands event %s (code %03d): refused",
                             item.event_id, item.code.contact_id)
                self._on_outcome(Outcome(item.event_id, False, "", 0, "DUH",
                                         (time.monotonic() - item.queued_mono) * 1000.0,
                                         item.code.contact_id))
                return True
            item.pause = (min(1.0, self.config.retry_max_s) if item.pause <= 0
                          else min(item.pause * 2, self.config.retry_max_s))
            log.error("no ARC receiver acknowledged event %s; trying all again in %.1f s",
                      item.event_id, item.pause)
            await asyncio.sleep(item.pause)
            if self._queue and self._queue[0].priority <= item.priority:
                item.order = next(self._order)
                heapq.heappush(self._queue, item)
                return False

    async def _deliver_to(self, i: int, item: Outgoing) -> tuple[Outcome | None, bool]:
        """(outcome if acked, whether the receiver answered DUH to every form)."""
        link = self.links[i]
        code: ArcCode | None = item.code
        early_sent = self._early.pop(item.event_id, None) if i == 0 else None
        early: tuple[bytes, int] | None = None
        if early_sent is not None and time.monotonic() - early_sent[3] < self.config.timeout_s:
            seq, early = early_sent[0], (early_sent[1], early_sent[2])
        else:
            seq = self.next_seq()
        attempts = 0
        silent = False
        while code is not None and attempts < self.config.retries:
            attempts += 1
            msg = self._message(i, seq, item, code)
            if self._on_attempt is not None:
                self._on_attempt(item.event_id)
            try:
                answer = await self._try(i, msg, early)
            except LinkError as exc:
                early = None
                silent = True
                log.warning("ARC %s (attempt %d/%d for event %s)", exc, attempts,
                            self.config.retries, item.event_id)
                if attempts < self.config.retries and "no answer" not in str(exc):
                    await asyncio.sleep(CONNECT_ERROR_WAIT_S)
                continue
            silent = False
            early = None
            if dc09.is_ack_for(answer, msg, self.keys[i] is not None):
                return Outcome(item.event_id, True, link.label, seq, answer.kind,
                               (time.monotonic() - item.queued_mono) * 1000.0,
                               code.contact_id), False
            if answer.kind == "DUH":
                fallback = generic_of(code)
                log.error("%s answered DUH to code %03d for event %s; %s", link.label,
                          code.contact_id, item.event_id,
                          f"sending the generic code {fallback.contact_id:03d}" if fallback
                          else "trying the next receiver")
                code = fallback
                seq = self.next_seq()
                attempts = 0
                continue
            log.warning("%s: answer %s is not an ACK for seq %04d; sending again", link.label,
                        answer.kind, seq)
        if silent:
            self._mark(i, False, "no answer to an alarm")
        return None, code is None

    async def _sender(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = heapq.heappop(self._queue)
            self.current = item.event_id
            try:
                done = await self._deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the ARC path: the event stays pending
                log.exception("sending event %s to the ARC failed; it stays pending",
                              item.event_id)
                heapq.heappush(self._queue, item)
                await asyncio.sleep(1.0)
                continue
            finally:
                self.current = None
            if done:
                self._queued.discard(item.event_id)

    # -- supervision ----------------------------------------------------------------------
    async def _supervise(self, i: int) -> None:
        while True:
            await self.null_round(i)
            await asyncio.sleep(self.config.supervision_s)

    async def null_round(self, i: int) -> bool:
        """A link test: a NULL message, up to ``retries`` attempts. True if ACKed."""
        seq = self.next_seq()
        msg = self._message(i, seq, None, None)
        for _ in range(self.config.retries):
            try:
                answer = await self._try(i, msg)
            except LinkError as exc:
                log.info("ARC supervision: %s", exc)
                continue
            if dc09.is_ack_for(answer, msg, self.keys[i] is not None):
                return True
            log.warning("ARC supervision: %s answered %s to NULL", self.links[i].label,
                        answer.kind)
            return True  # it answered: the path is there
        self._mark(i, False, "no answer to the NULL link test")
        return False

    def _mark(self, i: int, up: bool, reason: str) -> None:
        label = self.links[i].label
        before = self._up.get(label)
        self._up[label] = up
        if before is not up and not (before is None and up):
            self._on_path(label, up, reason)
