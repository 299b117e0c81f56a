"""Second alarm path: alarms the broker has not acknowledged in time go to a telecare unit.

A detector with memory, apart from the serial driver: the driver only offers, per unit, an
alarm output (:class:`agent.ports.AlarmOutput`, registered with
``ctx.register_alarm_output``) that puts one alarm on the line and tells how it went. This
component decides *when*. For every committed alarm (and every alarm the store refused,
``subscribe_refused``) it starts a timer of the unit's ``escalate_after_s``; its delivery
upstream (``subscribe_acks``: the broker's PUBACK, or with ``mqtt.receipts`` the ingester's
receipt, so an alarm a broker acknowledged and dropped still escalates) stops it. When
the timer fires and :meth:`AgentContext.event_delivered` still says no, the alarm is
raised on the unit's output. The outcome is recorded as an event of its own, so the
monitoring centre and the audit trail see which path carried the alarm:

- ``alarm_escalated`` (info): ``data.path = "serial"``, ``data.event_id`` the original.
- ``alarm_escalation_failed`` (warning): the unit never acknowledged.

If the alarm is cancelled (``alarm_cancelled`` names it) before it went out, it is not
sent; if it already went out, a cancel (Contact ID 406) follows it. At start, alarms an
earlier run left undelivered are armed again. Counters (``escalated``, ``failed``,
``skipped_delivered``) join the unit's entry in the device inventory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.model import Event, Priority
from agent.ports import AgentContext, AlarmHandle, AlarmOutcome, AlarmRequest, DeviceInfo

if TYPE_CHECKING:
    from drivers.serial.config import SerialConfig, SerialUnit

log = logging.getLogger(__name__)

OWN_TYPES = ("alarm_escalated", "alarm_escalation_failed")
SENT_MEMORY = 256          # escalated alarms remembered, for a later cancel


class Escalator:
    """The rule for one unit. Every method runs on the loop."""

    def __init__(
        self,
        unit: SerialUnit,
        ctx: AgentContext,
        zone_of: Callable[[str], int] | None = None,
    ) -> None:
        self.unit = unit
        self._ctx = ctx
        self._zone_of = zone_of or (lambda _device_id: 0)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._by_seq: dict[int, str] = {}
        self._events: dict[str, Event] = {}
        self._in_flight: dict[str, AlarmHandle] = {}
        self._sent: dict[str, None] = {}        # escalated alarms, for a later cancel
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
        self._timers[event.id] = self._ctx.loop.call_later(
            self.unit.escalate_after_s, self._due, event.id)

    def on_ack(self, seq: int) -> None:
        event_id = self._by_seq.pop(seq, None)
        if event_id is None:
            return
        timer = self._timers.pop(event_id, None)
        if timer is not None:
            timer.cancel()
        self._events.pop(event_id, None)
        handle = self._in_flight.get(event_id)
        if handle is not None:
            handle.withdraw()       # still queued behind others: the broker was faster

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for handle in self._in_flight.values():
            handle.withdraw()

    def _due(self, event_id: str) -> None:
        self._timers.pop(event_id, None)
        event = self._events.pop(event_id, None)
        if event is None:
            return
        if event.seq is not None:
            self._by_seq.pop(event.seq, None)
        if self._ctx.event_delivered(event_id) is True:
            self.stats["skipped_delivered"] += 1
            return
        zone = event.data.get("zone")
        if not isinstance(zone, int):
            zone = self._zone_of(event.device_id)
        log.warning("serial %s: %s %s not acknowledged by the broker after %g s; raising it "
                    "on the unit", self.unit.id, event.type, event_id,
                    self.unit.escalate_after_s)
        self._raise(AlarmRequest(event_id, event.type, zone, event.data.get("contact_id")))

    def _raise(self, request: AlarmRequest) -> None:
        output = self._ctx.alarm_output(self.unit.id)
        if output is None:
            # The driver is not running (a failed start, a live change in progress).
            self._done(AlarmOutcome(request, sent=True, ok=False, attempts=0, code="",
                                    error="no line to the unit"))
            return
        self._in_flight[request.event_id] = output.raise_alarm(request, self._done)

    def _on_cancel(self, event: Event) -> None:
        ids = event.data.get("cancelled_ids") or ()
        for event_id in ids:
            timer = self._timers.pop(event_id, None)
            if timer is not None:
                timer.cancel()
                self._events.pop(event_id, None)
                continue
            handle = self._in_flight.get(event_id)
            if handle is not None and handle.withdraw():
                continue
            if event_id in self._sent or handle is not None:
                self._raise(AlarmRequest(event.id, "alarm_cancelled", 0, cancel=True))
                break          # one cancel frame covers them all

    def _done(self, outcome: AlarmOutcome) -> None:
        """Loop: the output finished a request (acknowledged, failed, or withdrawn)."""
        req = outcome.request
        self._in_flight.pop(req.event_id, None)
        if not outcome.sent:
            log.info("serial %s: %s %s delivered by the broker first; not sent", self.unit.id,
                     req.event_type, req.event_id)
            return
        data: dict[str, Any] = {
            "path": "serial", "event_id": req.event_id, "event_type": req.event_type,
            "contact_id": outcome.code, "attempts": outcome.attempts, "unit": self.unit.id,
            "source": "serial", "room": self.unit.room, "role": self.unit.role}
        if outcome.ok:
            self.stats["escalated"] += 1
            self._sent[req.event_id] = None
            while len(self._sent) > SENT_MEMORY:
                self._sent.pop(next(iter(self._sent)))
            self._ctx.submit_event(Event("alarm_escalated", Priority.INFO, self.unit.id, data))
        else:
            self.stats["failed"] += 1
            log.error("serial %s: unit did not acknowledge %s %s after %d attempts: %s",
                      self.unit.id, req.event_type, req.event_id, outcome.attempts,
                      outcome.error)
            self._ctx.submit_event(Event("alarm_escalation_failed", Priority.WARNING,
                                         self.unit.id, {**data, "error": outcome.error}))


class EscalationDetector:
    """The ``escalation`` component: one :class:`Escalator` per unit that escalates."""

    name = "escalation"

    def __init__(self, config: SerialConfig,
                 zone_of: Callable[[str], int] | None = None) -> None:
        self.config = config
        self._zone_of = zone_of
        self._escalators: dict[str, Escalator] = {}

    async def start(self, ctx: AgentContext) -> None:
        # Every unit gets its counters (zero where it does not escalate), as before the move.
        self._escalators = {u.id: Escalator(u, ctx, self._zone_of) for u in self.config.units}
        if not any(esc.enabled for esc in self._escalators.values()):
            return
        ctx.subscribe_events(self._on_event)
        ctx.subscribe_acks(self._on_ack)
        # An alarm the store refused (a failing card) still gets the second path; the unit's
        # frame for it is not ACKed on the line (nothing was committed).
        ctx.subscribe_refused(self._on_event)
        # Alarms an earlier run left undelivered (a restart during a broadband outage) get
        # the second path too, counted from now.
        rearmed = ctx.pending_alarms()
        for event in rearmed:
            self._on_event(event)
        if rearmed:
            log.warning("serial: %d undelivered alarm(s) from before the restart armed for "
                        "escalation", len(rearmed))

    async def stop(self) -> None:
        for esc in self._escalators.values():
            esc.stop()
        self._escalators = {}

    def devices(self) -> list[DeviceInfo]:
        # Joined to the serial driver's entry for the unit (agent.ports.merge_devices).
        return [DeviceInfo(unit_id, "telecare_unit", self.name, details=dict(esc.stats))
                for unit_id, esc in self._escalators.items()]

    def _on_event(self, event: Event) -> None:
        for esc in list(self._escalators.values()):
            if esc.enabled:
                esc.on_event(event)

    def _on_ack(self, seq: int) -> None:
        for esc in list(self._escalators.values()):
            if esc.enabled:
                esc.on_ack(seq)
