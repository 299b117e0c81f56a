"""The ``serial`` component: telecare units on serial / USB-serial ports (Contact ID).

One :class:`~drivers.serial.line.UnitLine` per configured unit speaks the line protocol on
the agent's loop (no thread per port); this component wires them to the agent: commits (so
frames are ACKed only once durable), and per unit an alarm output
(:mod:`.alarm_output`) through which the escalation rule (``agent/escalation.py``, a
detector) raises alarms the broker has not taken on the unit.

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
from agent.ports import AgentContext, DeviceInfo, Unsubscribe
from drivers.serial.alarm_output import UnitAlarmOutput
from drivers.serial.config import SerialConfig, SerialUnit
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
        return seam
    return lambda: seam


class SerialDriver:
    name = "serial"

    def __init__(self, config: SerialConfig, ports: dict[str, Any] | None = None) -> None:
        self.config = config
        self._ports = dict(ports or {})
        self._lines: dict[str, UnitLine] = {}
        self._unregister: list[Unsubscribe] = []

    async def start(self, ctx: AgentContext) -> None:
        loop = ctx.loop
        for unit in self.config.units:
            line = UnitLine(unit, make_opener(unit, self._ports.get(unit.id)), ctx.emit_reading,
                            loop, clock=ctx.clock.monotonic)
            if unit.port.startswith("/dev/tty") and "by-id" not in unit.port:
                log.warning("serial %s: %s may be renumbered after a replug or reboot; prefer "
                            "/dev/serial/by-id/... (see packaging/udev)", unit.id, unit.port)
            self._lines[unit.id] = line
            # The second alarm path's rule (agent/escalation.py) raises alarms through this.
            self._unregister.append(
                ctx.register_alarm_output(unit.id, UnitAlarmOutput(unit, line.send)))
        if self._lines:
            # A frame is ACKed to the unit once its event is committed.
            ctx.subscribe_events(self._on_event)
        for line in self._lines.values():
            line.start()
        log.info("serial: %d unit(s)", len(self._lines))

    async def stop(self) -> None:
        for unregister in self._unregister:
            unregister()
        self._unregister.clear()
        for line in self._lines.values():
            await line.stop()
        self._lines.clear()

    def devices(self) -> list[DeviceInfo]:
        infos = []
        for unit_id, line in self._lines.items():
            details: dict[str, Any] = {"port": line.unit.port, "port_open": line.port_open,
                                       **line.counters}
            infos.append(DeviceInfo(unit_id, "telecare_unit", self.name, online=line.online,
                                    last_seen_wall=line.last_heard_wall, details=details))
        return infos

    def _on_event(self, event: Event) -> None:
        for line in self._lines.values():
            line.committed(event.id)
