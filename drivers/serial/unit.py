"""The ``serial`` component: telecare units on serial / USB-serial ports (Contact ID).

One :class:`~drivers.serial.line.UnitLine` per configured unit speaks the line protocol on
the agent's loop (no thread per port); this component wires them to the agent: commits (so
frames are ACKed only once durable) and escalation of unacknowledged alarms
(:mod:`.escalation`).

The hardware seam is ``ports``: per unit id, a pyserial URL or path that replaces the
configured one, a port-like object (``read``, ``write``, ``close``, optional ``in_waiting``)
or a callable returning one. Without it the configured ``port`` is opened with
``serial.serial_for_url``, so ``/dev/serial/by-id/...``, a pty path, ``rfc2217://`` and
``socket://`` all work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.model import Event
from agent.ports import AgentContext, DeviceInfo
from drivers.serial.config import SerialConfig, SerialUnit
from drivers.serial.escalation import Escalator
from drivers.serial.line import READ_TIMEOUT_S, UnitLine

log = logging.getLogger(__name__)

_PARITY = {"N": "N", "E": "E", "O": "O"}


def open_serial(unit: SerialUnit, url: str | None = None) -> Any:
    """Open ``url`` (default: the unit's port) with the unit's framing."""
    import serial

    port = serial.serial_for_url(
        url or unit.port, do_not_open=True, baudrate=unit.baudrate,
        parity=_PARITY[unit.parity], bytesize=unit.bytesize, stopbits=unit.stopbits,
        timeout=READ_TIMEOUT_S, write_timeout=2.0,
    )
    if isinstance(port, serial.Serial) and hasattr(port, "exclusive"):
        port.exclusive = True      # a second agent (or a getty) must not share the line
    port.open()
    return port


def make_opener(unit: SerialUnit, seam: Any = None) -> Callable[[], Any]:
    if seam is None:
        return lambda: open_serial(unit)
    if isinstance(seam, str):
        return lambda: open_serial(unit, seam)
    if callable(seam) and not hasattr(seam, "read"):
        return seam  # type: ignore[no-any-return]
    return lambda: seam


class SerialDriver:
    name = "serial"

    def __init__(
        self,
        config: SerialConfig,
        ports: dict[str, Any] | None = None,
        zone_of: Callable[[str], int] | None = None,
    ) -> None:
        self.config = config
        self._ports = dict(ports or {})
        self._zone_of = zone_of
        self._lines: dict[str, UnitLine] = {}
        self._escalators: dict[str, Escalator] = {}
        self._ctx: AgentContext | None = None

    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        loop = ctx.loop
        for unit in self.config.units:
            escalator = Escalator(unit, loop, ctx.event_delivered, None,
                                  ctx.submit_event, self._zone_of)
            line = UnitLine(unit, make_opener(unit, self._ports.get(unit.id)), ctx.emit_reading,
                            loop, escalator.job_done,
                            clock=ctx.clock.monotonic)
            escalator.send = line.send
            if unit.port.startswith("/dev/tty") and "by-id" not in unit.port:
                log.warning("serial %s: %s may be renumbered after a replug or reboot; prefer "
                            "/dev/serial/by-id/... (see packaging/udev)", unit.id, unit.port)
            self._lines[unit.id] = line
            self._escalators[unit.id] = escalator
        if self._lines:
            ctx.subscribe_events(self._on_event)
            ctx.subscribe_acks(self._on_ack)
            # An alarm the store refused (a failing card) still gets the second path; its
            # frame is not ACKed on it (nothing was committed).
            ctx.subscribe_refused(self._on_refused)
        for line in self._lines.values():
            line.start()
        if any(esc.enabled for esc in self._escalators.values()):
            # Alarms an earlier run left undelivered (a restart during a broadband outage)
            # get the second path too, counted from now.
            rearmed = ctx.pending_alarms()
            for event in rearmed:
                self._on_event(event)
            if rearmed:
                log.warning("serial: %d undelivered alarm(s) from before the restart armed for "
                            "escalation", len(rearmed))
        log.info("serial: %d unit(s)", len(self._lines))

    async def stop(self) -> None:
        for esc in self._escalators.values():
            esc.stop()
        for line in self._lines.values():
            await line.stop()
        self._lines.clear()
        self._escalators.clear()
        self._ctx = None

    def devices(self) -> list[DeviceInfo]:
        infos = []
        for unit_id, line in self._lines.items():
            esc = self._escalators[unit_id]
            details: dict[str, Any] = {"port": line.unit.port, "port_open": line.port_open,
                                       **line.counters, **esc.stats}
            infos.append(DeviceInfo(unit_id, "telecare_unit", self.name, online=line.online,
                                    last_seen_wall=line.last_heard_wall, details=details))
        return infos

    def _on_event(self, event: Event) -> None:
        for line in self._lines.values():
            line.committed(event.id)
        for esc in self._escalators.values():
            if esc.enabled:
                esc.on_event(event)

    def _on_refused(self, event: Event) -> None:
        for esc in self._escalators.values():
            if esc.enabled:
                esc.on_event(event)

    def _on_ack(self, seq: int) -> None:
        for esc in self._escalators.values():
            if esc.enabled:
                esc.on_ack(seq)
