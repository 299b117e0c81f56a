"""A telecare unit as an alarm output: the serial driver's side of the second alarm path.

The rule that decides when an alarm goes to the unit lives with the detectors
(``agent/escalation.py``); it reaches the unit through the port
(``ctx.alarm_output(unit_id)``, :class:`agent.ports.AlarmOutput`). Here the request becomes
bytes: a Contact ID frame (the alarm's own code, or the one :func:`codes.outbound` maps its
type to; 406 for a cancel) that the unit's :class:`~drivers.serial.line.UnitLine` sends,
resends until the unit ACKs or ``retries`` run out, and reports back as an
:class:`agent.ports.AlarmOutcome`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.ports import AlarmOutcome, AlarmRequest
from drivers.serial import codes
from drivers.serial.config import SerialUnit
from drivers.serial.contact_id import ContactIdFrame, encode

log = logging.getLogger(__name__)

CANCEL_CODE = "406"


@dataclass(eq=False)
class AlarmJob:
    """One frame for the line. Also the :class:`agent.ports.AlarmHandle` of its request."""

    request: AlarmRequest
    frame: bytes
    contact_id: str
    done: Callable[[AlarmOutcome], None]
    withdrawn: bool = False
    attempts: int = 0
    ok: bool = False
    error: str = ""

    @property
    def event_id(self) -> str:
        return self.request.event_id

    @property
    def event_type(self) -> str:
        return self.request.event_type

    def withdraw(self) -> bool:
        if self.attempts == 0:
            self.withdrawn = True
        return self.withdrawn

    def finish(self) -> None:
        """Loop: the line is done with this job (acknowledged, failed, or withdrawn)."""
        sent = not (self.withdrawn and self.attempts == 0)
        self.done(AlarmOutcome(self.request, sent=sent, ok=self.ok, attempts=self.attempts,
                               code=self.contact_id, error=self.error))


class UnitAlarmOutput:
    """:class:`agent.ports.AlarmOutput` for one unit: frames handed to its line."""

    def __init__(self, unit: SerialUnit, send: Callable[[AlarmJob], None]) -> None:
        self.unit = unit
        self._send = send

    def raise_alarm(self, request: AlarmRequest,
                    done: Callable[[AlarmOutcome], None]) -> AlarmJob:
        code = (CANCEL_CODE if request.cancel
                else codes.outbound(request.event_type, request.code))
        frame = ContactIdFrame(
            account=self.unit.account, qualifier="1", event_code=code, group="00",
            zone=f"{max(0, min(request.zone, 999)):03d}", receiver=self.unit.receiver,
            line=self.unit.line, checksum=self.unit.checksum,
        )
        job = AlarmJob(request, encode(frame), code, done)
        log.info("serial %s: Contact ID %s for %s %s queued for the unit", self.unit.id, code,
                 request.event_type, request.event_id)
        self._send(job)
        return job
