"""Second alarm path: alarms the broker has not acknowledged in time go to the telecare unit.

Runs on the agent's loop. For every committed alarm an :class:`Escalator` starts a timer of
``escalate_after_s``; an acknowledgement from the broker (``subscribe_acks``) stops it. When
the timer fires and :meth:`AgentContext.event_delivered` still says no, a Contact ID frame
is handed to the unit's line thread, which sends it and waits for the unit's ACK (retrying).
The outcome is recorded as an event of its own, so the monitoring centre and the audit
trail see which path carried the alarm:

- ``alarm_escalated`` (info): ``data.path = "serial"``, ``data.event_id`` the original.
- ``alarm_escalation_failed`` (warning): the unit never acknowledged.

If the alarm is cancelled (``alarm_cancelled`` names it) before it went out, it is not
sent; if it already went out, a Contact ID 406 (cancel) frame follows it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.model import Event, Priority
from drivers.serial import codes
from drivers.serial.config import SerialUnit
from drivers.serial.contact_id import ContactIdFrame, encode

log = logging.getLogger(__name__)

OWN_TYPES = ("alarm_escalated", "alarm_escalation_failed")
CANCEL_CODE = "406"


@dataclass
class EscalationJob:
    """One frame for the line thread. ``cancelled`` may be set from the loop at any time."""

    event_id: str
    event_type: str
    frame: bytes
    contact_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0
    ok: bool = False
    error: str = ""


class Escalator:
    def __init__(
        self,
        unit: SerialUnit,
        loop: asyncio.AbstractEventLoop,
        delivered: Callable[[str], bool | None],
        send: Callable[[EscalationJob], None] | None,
        submit: Callable[[Event], None],
        zone_of: Callable[[str], int] | None = None,
    ) -> None:
        self.unit = unit
        self.loop = loop
        self._delivered = delivered
        # The line thread's queue; set after construction when the line needs us first.
        self.send: Callable[[EscalationJob], None] = send or (lambda _job: None)
        self._submit = submit
        self._zone_of = zone_of or (lambda _device_id: 0)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._by_seq: dict[int, str] = {}
        self._events: dict[str, Event] = {}
        self._in_flight: dict[str, EscalationJob] = {}
        self._sent: dict[str, EscalationJob] = {}   # escalated alarms, for a later cancel
        self.stats = {"escalated": 0, "failed": 0, "skipped_delivered": 0}

    @property
    def enabled(self) -> bool:
        return self.unit.escalate_after_s > 0

    def on_event(self, event: Event) -> None:
        if event.type == "alarm_cancelled":
            self._on_cancel(event)
            return
        if (event.priority != Priority.ALARM or event.device_id == self.unit.id
                or event.type in OWN_TYPES or event.id in self._in_flight
                or event.id in self._sent):
            return
        if event.id in self._timers:
            # Heard before it was committed (refused by the store, then stored on a retry):
            # the timer runs on; the stored seq lets the broker's ack stop it.
            if event.seq is not None:
                self._by_seq[event.seq] = event.id
                self._events[event.id] = event
            return
        self._events[event.id] = event
        if event.seq is not None:
            self._by_seq[event.seq] = event.id
        self._timers[event.id] = self.loop.call_later(
            self.unit.escalate_after_s, self._due, event.id)

    def on_ack(self, seq: int) -> None:
        event_id = self._by_seq.pop(seq, None)
        if event_id is None:
            return
        timer = self._timers.pop(event_id, None)
        if timer is not None:
            timer.cancel()
        self._events.pop(event_id, None)
        job = self._in_flight.get(event_id)
        if job is not None and job.attempts == 0:
            job.cancelled.set()     # still queued behind others: the broker was faster

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for job in self._in_flight.values():
            job.cancelled.set()

    def _due(self, event_id: str) -> None:
        self._timers.pop(event_id, None)
        event = self._events.pop(event_id, None)
        if event is None:
            return
        if event.seq is not None:
            self._by_seq.pop(event.seq, None)
        if self._delivered(event_id) is True:
            self.stats["skipped_delivered"] += 1
            return
        code = codes.outbound(event.type, event.data.get("contact_id"))
        zone = event.data.get("zone")
        if not isinstance(zone, int):
            zone = self._zone_of(event.device_id)
        self._queue(event_id, event.type, code, zone)

    def _queue(self, event_id: str, event_type: str, code: str, zone: int) -> None:
        frame = ContactIdFrame(
            account=self.unit.account, qualifier="1", event_code=code, group="00",
            zone=f"{max(0, min(zone, 999)):03d}", receiver=self.unit.receiver,
            line=self.unit.line, checksum=self.unit.checksum,
        )
        job = EscalationJob(event_id, event_type, encode(frame), code)
        self._in_flight[event_id] = job
        log.warning("serial %s: %s %s not acknowledged by the broker after %g s; sending "
                    "Contact ID %s to the unit", self.unit.id, event_type, event_id,
                    self.unit.escalate_after_s, code)
        self.send(job)

    def _on_cancel(self, event: Event) -> None:
        ids = event.data.get("cancelled_ids") or ()
        for event_id in ids:
            timer = self._timers.pop(event_id, None)
            if timer is not None:
                timer.cancel()
                self._events.pop(event_id, None)
                continue
            job = self._in_flight.get(event_id)
            if job is not None and job.attempts == 0:
                job.cancelled.set()
                continue
            if event_id in self._sent or job is not None:
                self._queue(event.id, "alarm_cancelled", CANCEL_CODE, 0)
                break          # one cancel frame covers them all

    def job_done(self, job: EscalationJob) -> None:
        """Loop: the line thread finished ``job`` (sent and acknowledged, failed, or dropped)."""
        self._in_flight.pop(job.event_id, None)
        if job.cancelled.is_set() and job.attempts == 0:
            log.info("serial %s: %s %s delivered by the broker first; not sent", self.unit.id,
                     job.event_type, job.event_id)
            return
        data = {"path": "serial", "event_id": job.event_id, "event_type": job.event_type,
                "contact_id": job.contact_id, "attempts": job.attempts, "unit": self.unit.id,
                "source": "serial", "room": self.unit.room, "role": self.unit.role}
        if job.ok:
            self.stats["escalated"] += 1
            self._sent[job.event_id] = job
            while len(self._sent) > 256:
                self._sent.pop(next(iter(self._sent)))
            self._submit(Event("alarm_escalated", Priority.INFO, self.unit.id, data))
        else:
            self.stats["failed"] += 1
            log.error("serial %s: unit did not acknowledge %s %s after %d attempts: %s",
                      self.unit.id, job.event_type, job.event_id, job.attempts, job.error)
            self._submit(Event("alarm_escalation_failed", Priority.WARNING, self.unit.id,
                               {**data, "error": job.error}))
