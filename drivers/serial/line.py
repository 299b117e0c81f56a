"""The line to one telecare unit, driven from the agent's asyncio loop.

Why on the loop: one process may run many agents, and a thread per port blocked in
pyserial's ``select()`` breaks past 1,024 descriptors. pyserial opens and configures the
port (termios: baud rate, parity); the loop then watches its descriptor with
``loop.add_reader`` and reads and writes it with ``os.read``/``os.write`` (pyserial's own
``read``/``write`` call ``select()``). A port without a descriptor (``loop://``,
``rfc2217://``) is polled with non-blocking reads every ``READ_TIMEOUT_S`` instead. The
ACK/NAK exchange is answered within ``ack_within_s`` from timers on the loop.

Framing: bytes are split on DC4 by the pure :class:`~drivers.serial.contact_id.LineSplitter`.
(Not ``read_until(DC4)``: while we wait for the unit to acknowledge a frame we sent, its
reply is a lone ACK byte with no DC4.)

Acknowledging: a Contact ID frame is ACKed only once its event is committed to the store
(the loop reports commits through :meth:`UnitLine.committed`), within ``ack_within_s``.
If the store is slower than that, the frame is NAKed and the unit resends it; the resend
is recognised and not stored twice. A good frame is never ACKed before it is durable, so
nothing the unit handed over is lost to a crash or power cut. While a frame waits for its
commit the line reads nothing more (the unit waits for our answer, as before).

Supervision: any valid message (heartbeat or event) proves the unit alive. Silence for
``supervision_s`` or a vanished port gives one ``device_offline`` warning; the next valid
message gives ``device_online``. A vanished port is reopened with jittered backoff.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
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


class PortLost(OSError):
    """The port went away (unplugged, hung up)."""


class UnitLine:
    """One unit: ``start()`` the line, ``stop()`` it; everything else is internal. Every
    method runs on ``loop``."""

    def __init__(
        self,
        unit: SerialUnit,
        opener: Callable[[], Any],
        emit: Callable[[Reading], None],
        loop: asyncio.AbstractEventLoop,
        on_job_done: Callable[[EscalationJob], None],
        ack_within_s: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unit = unit
        self._open = opener
        self._emit = emit
        self._loop = loop
        self._on_job_done = on_job_done
        self.ack_within_s = ack_within_s
        self._now = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: collections.deque[EscalationJob] = collections.deque()
        self._job: EscalationJob | None = None
        self._job_deadline = 0.0
        self._waiting: tuple[str, bytes, float, asyncio.TimerHandle] | None = None
        self._committed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._resends: collections.OrderedDict[bytes, tuple[str, float]] = \
            collections.OrderedDict()
        self._port: Any = None
        self._fd = -1
        self._splitter = LineSplitter()
        self._tokens: collections.deque[Any] = collections.deque()
        self._lost: asyncio.Future[str] | None = None
        self._tick_handle: asyncio.Handle | None = None
        self._out = bytearray()
        self.online: bool | None = None
        self.port_open = False
        self.last_heard = 0.0
        self.last_heard_wall: float | None = None
        self._offline_since = 0.0
        self._last_warn = 0.0
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # -- the driver's side -----------------------------------------------------------------------
    def start(self) -> None:
        self.last_heard = self._now()
        self._task = self._loop.create_task(self._run(), name=f"serial-{self.unit.id}")

    async def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result("agent stopping")
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.error("serial %s: line did not stop within %.1f s", self.unit.id, timeout)

    def send(self, job: EscalationJob) -> None:
        self._jobs.append(job)
        if self._port is not None and self._waiting is None:
            self._loop.call_soon(self._pump_jobs)

    def committed(self, event_id: str) -> None:
        self._committed[event_id] = None
        while len(self._committed) > 1024:
            self._committed.popitem(last=False)
        waiting = self._waiting
        if waiting is not None and waiting[0] == event_id:
            waiting[3].cancel()
            self._waiting = None
            self._write(bytes([ACK]))
            self._resends.pop(waiting[1], None)
            self._resume()

    # -- the port ----------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopping.is_set():
            try:
                port = self._open()
            except Exception as exc:  # missing device, permission, busy: all mean "not now"
                self._went_offline(f"port {self.unit.port} unavailable: {exc}")
                try:
                    await asyncio.wait_for(self._stopping.wait(),
                                           backoff * random.uniform(0.8, 1.2))
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            self.port_open = True
            log.info("serial %s: port %s open", self.unit.id, self.unit.port)
            try:
                reason = await self._serve(port)
                if reason:
                    self._went_offline(f"port {self.unit.port} lost: {reason}")
            finally:
                self._unwatch()
                self.port_open = False
                try:
                    port.close()
                except Exception:
                    log.debug("serial %s: close failed", self.unit.id, exc_info=True)
        self._abandon_jobs("agent stopping")

    async def _serve(self, port: Any) -> str:
        """Watch ``port`` until it is lost (returns why) or the line stops (returns "")."""
        self._port = port
        self._splitter = LineSplitter()
        self._tokens.clear()
        self._out.clear()
        self._lost = self._loop.create_future()
        if self._stopping.is_set():
            return ""
        try:
            fd = port.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        self._fd = fd
        if fd >= 0:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._readable)
        self._tick_handle = self._loop.call_soon(self._tick)
        reason = await self._lost
        return "" if self._stopping.is_set() else reason

    def _unwatch(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._waiting is not None:
            self._waiting[3].cancel()
            self._waiting = None
        self._port, self._fd = None, -1

    def _fail(self, exc: BaseException) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(str(exc) or type(exc).__name__)

    def _pause(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)

    def _resume(self) -> None:
        if self._port is None:
            return
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._readable)
        self._loop.call_soon(self._process)    # tokens read behind the answered frame
        self._pump_jobs()

    def _readable(self) -> None:
        if self._port is None or self._waiting is not None:
            return
        try:
            if self._fd >= 0:
                data = os.read(self._fd, 4096)
                if not data:
                    raise PortLost("device reports readiness to read but returned no data")
            else:
                # No descriptor: poll. A port-like object without ``in_waiting`` is read one
                # byte at a time (blocking up to its own timeout).
                waiting = getattr(self._port, "in_waiting", None)
                data = self._port.read(waiting if waiting is not None else 1) \
                    if waiting != 0 else b""
        except BlockingIOError:
            return
        except Exception as exc:  # SerialException/OSError: unplugged, read error
            self._fail(exc)
            return
        if data:
            self._feed(data)

    def _write(self, data: bytes) -> None:
        if self._port is None:
            return
        if self._fd < 0:
            try:
                self._port.write(data)
            except Exception as exc:
                self._fail(exc)
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        if self._fd < 0:
            return
        try:
            n = os.write(self._fd, self._out)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self._fail(exc)
            return
        del self._out[:n]
        if self._out:
            self._loop.add_writer(self._fd, self._flush)
        else:
            self._loop.remove_writer(self._fd)

    def _tick(self) -> None:
        """Every ``READ_TIMEOUT_S``: escalation timeouts, supervision, fd-less ports polled."""
        self._tick_handle = None
        if self._port is None:
            return
        if self._fd < 0:
            self._readable()
        if self._waiting is None:
            self._feed(b"")        # the splitter notices a quiet line (a burst's end) by time
            self._pump_jobs()
        self._supervise(self._now())
        if self._port is not None:
            self._tick_handle = self._loop.call_later(READ_TIMEOUT_S, self._tick)

    def _feed(self, data: bytes) -> None:
        self._tokens.extend(self._splitter.feed(data, self._now()))
        self._process()

    def _process(self) -> None:
        """Handle what was read, up to a frame that must wait for its commit (the rest is
        handled once that frame is answered)."""
        while self._tokens and self._waiting is None and self._port is not None:
            token = self._tokens.popleft()
            if token.kind == "frame":
                self._on_message(token.body, self._now())
            elif token.kind == "garbage":
                self._reject(token.reason, token.body)
            else:
                self._on_reply(token.kind == "ack")
        self._supervise(self._now())

    # -- inbound -----------------------------------------------------------------------------
    def _on_message(self, body: bytes, now: float) -> None:
        try:
            frame = decode(body)
        except DecodeError as exc:
            self._reject(str(exc), body)
            return
        self._heard(now)
        if isinstance(frame, Heartbeat):
            self.counters["heartbeats"] += 1
            self._write(bytes([ACK]))
            return
        if isinstance(frame, ReceiverStatus):
            # The receiver talking about itself (its mains, a line card): like a heartbeat it
            # proves the line alive and is ACKed at once; it is no event from the home.
            self.counters["receiver_status"] += 1
            log.info("serial %s: receiver %s line %s status: %s", self.unit.id, frame.receiver,
                     frame.line, frame.description)
            self._write(bytes([ACK]))
            return
        self.counters["frames"] += 1
        earlier = self._resends.get(body)
        if earlier is not None and now - earlier[1] > RESEND_MEMORY_S:
            earlier = None
        if earlier is not None:
            reading_id = earlier[0]
            self.counters["resends"] += 1
        else:
            reading = self._reading(frame)
            reading_id = reading.id
        if reading_id in self._committed:
            self._write(bytes([ACK]))
            self._resends.pop(body, None)
            return
        timer = self._loop.call_later(self.ack_within_s, self._not_stored)
        self._waiting = (reading_id, body, now, timer)
        self._pause()
        if earlier is None:
            self._emit(reading)

    def _not_stored(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        reading_id, body, now, _timer = waiting
        self._resends[body] = (reading_id, now)
        while len(self._resends) > 64:
            self._resends.popitem(last=False)
        self.counters["nak_not_stored"] += 1
        log.warning("serial %s: event not stored within %.1f s; NAK so the unit resends",
                    self.unit.id, self.ack_within_s)
        self._write(bytes([NAK]))
        self._resume()

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

    def _reject(self, reason: str, body: bytes) -> None:
        self.counters["rejected"] += 1
        now = self._now()
        level = logging.WARNING if now - self._last_warn >= LOG_EVERY_S else logging.DEBUG
        if level == logging.WARNING:
            self._last_warn = now
        log.log(level, "serial %s: NAK: %s (%d rejected so far): %r", self.unit.id, reason,
                self.counters["rejected"], body[:48])
        self._write(bytes([NAK]))

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
    def _pump_jobs(self) -> None:
        if self._port is None:
            return
        now = self._now()
        if self._job is not None and now >= self._job_deadline:
            self._retry_or_fail("no ACK within "
                                f"{self.unit.ack_timeout_s:.1f} s")
        while self._job is None and self._jobs:
            job = self._jobs.popleft()
            if job.cancelled.is_set():
                self._loop.call_soon(self._on_job_done, job)
                continue
            self._job = job
            self._transmit()

    def _transmit(self) -> None:
        assert self._job is not None
        self._job.attempts += 1
        self._write(self._job.frame)
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
            self._loop.call_soon(self._on_job_done, job)
        else:
            self._job_deadline = 0.0      # NAK: resend at the next turn (counts as a try)
            job.error = "NAK from unit"

    def _retry_or_fail(self, reason: str) -> None:
        job = self._job
        assert job is not None
        if job.attempts <= self.unit.retries:
            log.warning("serial %s: %s; resending", self.unit.id, job.error or reason)
            job.error = ""
            self._transmit()
            return
        job.error = job.error or reason
        self._job = None
        self._loop.call_soon(self._on_job_done, job)

    def _abandon_jobs(self, reason: str) -> None:
        """At stop: escalations not yet acknowledged by the unit are dropped (and logged);
        the alarms themselves stay in the store and go to the broker after restart."""
        pending = [self._job] if self._job is not None else []
        self._job = None
        pending.extend(self._jobs)
        self._jobs.clear()
        for job in pending:
            if not job.cancelled.is_set():
                log.error("serial %s: %s %s not sent to the unit: %s", self.unit.id,
                          job.event_type, job.event_id, reason)
