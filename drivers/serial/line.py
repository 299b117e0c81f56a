"""The line to one telecare unit: a thread that owns the port and speaks the protocol.

Why a thread: pyserial reads block. The thread owns the port, the framing and the
ACK/NAK exchange (both directions share one line and must be answered within seconds
even while the loop is busy). It hands work to the loop only through thread-safe calls:
``ctx.emit_reading`` for what the unit said, ``loop.call_soon_threadsafe`` for results.

Reading: ``port.read(in_waiting or 1)`` with a short timeout, split on DC4 by the pure
:class:`~drivers.serial.contact_id.LineSplitter`. (Not ``read_until(DC4)``: while we wait
for the unit to acknowledge a frame we sent, its reply is a lone ACK byte with no DC4.)

Acknowledging: a Contact ID frame is ACKed only once its event is committed to the store
(the loop reports commits through :meth:`UnitLine.committed`), within ``ack_within_s``.
If the store is slower than that, the frame is NAKed and the unit resends it; the resend
is recognised and not stored twice. A good frame is never ACKed before it is durable, so
nothing the unit handed over is lost to a crash or power cut.

Supervision: any valid message (heartbeat or event) proves the unit alive. Silence for
``supervision_s`` or a vanished port gives one ``device_offline`` warning; the next valid
message gives ``device_online``. A vanished port is reopened with jittered backoff.
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.errors import DecodeError
from agent.model import Priority, Reading
from drivers.serial import codes
from drivers.serial.config import SerialUnit
from drivers.serial.contact_id import (
    ACK,
    NAK,
    ContactIdFrame,
    Heartbeat,
    LineSplitter,
    ReceiverStatus,
    decode,
)
from drivers.serial.escalation import EscalationJob

log = logging.getLogger(__name__)

SOURCE = "serial"
READ_TIMEOUT_S = 0.1
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
RESEND_MEMORY_S = 60.0
LOG_EVERY_S = 10.0
COUNTERS = ("frames", "heartbeats", "rejected", "resends", "nak_not_stored", "stray_replies",
            "receiver_status")


class UnitLine:
    """One unit: ``start()`` the thread, ``stop()`` it; everything else is internal."""

    def __init__(
        self,
        unit: SerialUnit,
        opener: Callable[[], Any],
        emit: Callable[[Reading], None],
        call_on_loop: Callable[..., object],
        on_job_done: Callable[[EscalationJob], None],
        ack_within_s: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unit = unit
        self._open = opener
        self._emit = emit
        self._call_on_loop = call_on_loop
        self._on_job_done = on_job_done
        self.ack_within_s = ack_within_s
        self._now = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: queue.Queue[EscalationJob] = queue.Queue()
        self._job: EscalationJob | None = None
        self._job_deadline = 0.0
        self._lock = threading.Lock()                     # guards the two maps below
        self._waiters: dict[str, threading.Event] = {}
        self._committed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._resends: collections.OrderedDict[bytes, tuple[str, float]] = \
            collections.OrderedDict()
        self.online: bool | None = None
        self.port_open = False
        self.last_heard = 0.0
        self.last_heard_wall: float | None = None
        self._offline_since = 0.0
        self._last_warn = 0.0
        # Every key exists from the start: the loop reads these while the thread counts.
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # -- called from the loop (thread-safe) -----------------------------------------------------
    def start(self) -> None:
        self.last_heard = self._now()
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.unit.id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("serial %s: line thread did not stop within %.1f s", self.unit.id,
                          timeout)

    def send(self, job: EscalationJob) -> None:
        self._jobs.put(job)

    def committed(self, event_id: str) -> None:
        with self._lock:
            waiter = self._waiters.pop(event_id, None)
            self._committed[event_id] = None
            while len(self._committed) > 1024:
                self._committed.popitem(last=False)
        if waiter is not None:
            waiter.set()

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                port = self._open()
            except Exception as exc:  # missing device, permission, busy: all mean "not now"
                self._went_offline(f"port {self.unit.port} unavailable: {exc}")
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            self.port_open = True
            log.info("serial %s: port %s open", self.unit.id, self.unit.port)
            try:
                self._serve(port)
            except Exception as exc:  # SerialException/OSError: unplugged, read error
                self._went_offline(f"port {self.unit.port} lost: {exc}")
            finally:
                self.port_open = False
                try:
                    port.close()
                except Exception:
                    log.debug("serial %s: close failed", self.unit.id, exc_info=True)
        self._abandon_jobs("agent stopping")

    def _serve(self, port: Any) -> None:
        splitter = LineSplitter()
        while not self._stop.is_set():
            self._pump_jobs(port)
            waiting = getattr(port, "in_waiting", 0) or 1
            data = port.read(waiting)
            now = self._now()
            for token in splitter.feed(data, now):
                if token.kind == "frame":
                    self._on_message(port, token.body, now)
                elif token.kind == "garbage":
                    self._reject(port, token.reason, token.body)
                else:
                    self._on_reply(token.kind == "ack")
            self._supervise(self._now())

    # -- inbound -----------------------------------------------------------------------------
    def _on_message(self, port: Any, body: bytes, now: float) -> None:
        try:
            frame = decode(body)
        except DecodeError as exc:
            self._reject(port, str(exc), body)
            return
        self._heard(now)
        if isinstance(frame, Heartbeat):
            self.counters["heartbeats"] += 1
            port.write(bytes([ACK]))
            return
        if isinstance(frame, ReceiverStatus):
            # The receiver talking about itself (its mains, a line card): like a heartbeat it
            # proves the line alive and is ACKed at once; it is no event from the home.
            self.counters["receiver_status"] += 1
            log.info("serial %s: receiver %s line %s status: %s", self.unit.id, frame.receiver,
                     frame.line, frame.description)
            port.write(bytes([ACK]))
            return
        self.counters["frames"] += 1
        with self._lock:
            earlier = self._resends.get(body)
            if earlier is not None and now - earlier[1] > RESEND_MEMORY_S:
                earlier = None
        if earlier is not None:
            reading_id = earlier[0]
            self.counters["resends"] += 1
        else:
            reading = self._reading(frame)
            reading_id = reading.id
        waiter = threading.Event()
        with self._lock:
            stored = reading_id in self._committed
            if not stored:
                self._waiters[reading_id] = waiter
        if earlier is None:
            self._emit(reading)
        if stored or waiter.wait(self.ack_within_s):
            port.write(bytes([ACK]))
            with self._lock:
                self._resends.pop(body, None)
            return
        with self._lock:
            self._waiters.pop(reading_id, None)
            self._resends[body] = (reading_id, now)
            while len(self._resends) > 64:
                self._resends.popitem(last=False)
        self.counters["nak_not_stored"] += 1
        log.warning("serial %s: event not stored within %.1f s; NAK so the unit resends",
                    self.unit.id, self.ack_within_s)
        port.write(bytes([NAK]))

    def _reading(self, frame: ContactIdFrame) -> Reading:
        spec = codes.inbound(frame.event_code, frame.qualifier_digit)
        number = frame.event_number
        zone = frame.zone_number
        data: dict[str, Any] = {
            "contact_id": number if number is not None else frame.event_code,
            "qualifier": frame.qualifier_name,
            "zone": zone if zone is not None else frame.zone,
            "group": frame.group,
            "account": frame.account,
            "label": spec.label,
            "receiver": frame.receiver,
            "line": frame.line,
            "room": self.unit.room,
            "role": self.unit.role,
            "source": SOURCE,
        }
        if frame.timestamp:
            data["unit_time"] = frame.timestamp
        log.info("serial %s: Contact ID %s %s zone %s -> %s (%s)", self.unit.id,
                 frame.event_code, frame.qualifier_name, frame.zone, spec.type,
                 spec.priority.label)
        return Reading(device_id=self.unit.id, type=spec.type, priority=spec.priority,
                       data=data)

    def _reject(self, port: Any, reason: str, body: bytes) -> None:
        self.counters["rejected"] += 1
        now = self._now()
        level = logging.WARNING if now - self._last_warn >= LOG_EVERY_S else logging.DEBUG
        if level == logging.WARNING:
            self._last_warn = now
        log.log(level, "serial %s: NAK: %s (%d rejected so far): %r", self.unit.id, reason,
                self.counters["rejected"], body[:48])
        port.write(bytes([NAK]))

    # -- supervision -------------------------------------------------------------------------
    def _heard(self, now: float) -> None:
        self.last_heard = now
        self.last_heard_wall = time.time()
        if self.online is False:
            away = now - self._offline_since
            log.warning("serial %s: unit back after %.0f s", self.unit.id, away)
            self._emit(Reading(self.unit.id, "device_online", Priority.INFO,
                               self._base({"offline_s": round(away, 1)})))
        self.online = True

    def _supervise(self, now: float) -> None:
        limit = self.unit.supervision_s
        if limit > 0 and self.online is not False and now - self.last_heard > limit:
            self._went_offline(f"no heartbeat for {limit:g} s")

    def _went_offline(self, reason: str) -> None:
        if self.online is False:
            return
        self.online = False
        self._offline_since = self._now()
        log.warning("serial %s: offline: %s", self.unit.id, reason)
        self._emit(Reading(self.unit.id, "device_offline", Priority.WARNING,
                           self._base({"reason": reason, "port": self.unit.port})))

    def _base(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {**extra, "room": self.unit.room, "role": self.unit.role, "source": SOURCE}

    # -- outbound (escalation) ---------------------------------------------------------------
    def _pump_jobs(self, port: Any) -> None:
        now = self._now()
        if self._job is not None and now >= self._job_deadline:
            self._retry_or_fail(port, "no ACK within "
                                f"{self.unit.ack_timeout_s:.1f} s")
        while self._job is None:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job.cancelled.is_set():
                self._call_on_loop(self._on_job_done, job)
                continue
            self._job = job
            self._transmit(port)

    def _transmit(self, port: Any) -> None:
        assert self._job is not None
        self._job.attempts += 1
        port.write(self._job.frame)
        self._job_deadline = self._now() + self.unit.ack_timeout_s
        log.info("serial %s: sent %r (attempt %d)", self.unit.id, self._job.frame[:-1],
                 self._job.attempts)

    def _on_reply(self, ack: bool) -> None:
        job = self._job
        if job is None:
            self.counters["stray_replies"] += 1
            return
        if ack:
            job.ok = True
            self._job = None
            self._call_on_loop(self._on_job_done, job)
        else:
            self._job_deadline = 0.0      # NAK: resend at the next turn (counts as a try)
            job.error = "NAK from unit"

    def _retry_or_fail(self, port: Any, reason: str) -> None:
        job = self._job
        assert job is not None
        if job.attempts <= self.unit.retries:
            log.warning("serial %s: %s; resending", self.unit.id, job.error or reason)
            job.error = ""
            self._transmit(port)
            return
        job.error = job.error or reason
        self._job = None
        self._call_on_loop(self._on_job_done, job)

    def _abandon_jobs(self, reason: str) -> None:
        """At stop: escalations not yet acknowledged by the unit are dropped (and logged);
        the alarms themselves stay in the store and go to the broker after restart."""
        pending = [self._job] if self._job is not None else []
        self._job = None
        while True:
            try:
                pending.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        for job in pending:
            if not job.cancelled.is_set():
                log.error("serial %s: %s %s not sent to the unit: %s", self.unit.id,
                          job.event_type, job.event_id, reason)
