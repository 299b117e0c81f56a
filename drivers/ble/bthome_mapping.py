"""From one decoded BTHome advert to the agent's readings and events (the contract table).

Pure logic over per-device state: no I/O, no clock of its own (the caller passes a
:class:`Stamp`), so every edge (change detection, rate limits, duplicates) is testable with
bytes in and values out. Rules with memory over the values (battery low, cold home) are not
the driver's: they live with the detectors (``agent/conditions.py``).

| BTHome                                   | reading / event                               |
|------------------------------------------|-----------------------------------------------|
| button press, double/triple/long, hold   | ``pendant`` alarm, contact_id 101 (or         |
|                                          | ``cancel`` when the device's                  |
|                                          | ``button = "cancel"``)                        |
| motion = 1                               | ``motion`` (telemetry); motion = 0 ->         |
|                                          | ``motion_clear`` (unpublished)                |
| occupancy 0 -> 1 / 1 -> 0                | ``motion`` / ``motion_clear``                 |
| opening, door, window, garage door       | ``door_open`` / ``door_close`` on change      |
| moisture (binary) dry -> wet             | ``flood`` alarm, contact_id 154               |
| smoke clear -> detected                  | ``smoke`` alarm, contact_id 111               |
| battery %, battery-low flag, temperature | ``measurement`` (unpublished): the input of   |
|                                          | ``battery_low`` / ``cold_home`` in            |
|                                          | ``agent/conditions.py``                       |
| every measurement (temperature, ...)     | ``telemetry`` with names, values and units    |
|                                          | (rate-limited)                                |
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from agent.model import MEASUREMENT, Priority, Reading
from drivers.ble.advert import Advert
from drivers.ble.bthome_decoder import BTHomeUpdate
from drivers.ble.config import BleConfig, BleDevice

log = logging.getLogger(__name__)

CONTACT_ID_PENDANT = 101
CONTACT_ID_SMOKE = 111
CONTACT_ID_FLOOD = 154
PRESS_EVENTS = frozenset(
    {"press", "double_press", "triple_press", "long_press", "long_double_press",
     "long_triple_press", "hold_press"}
)
DOOR_KINDS = frozenset({"opening", "door", "window", "garage_door"})
# A motion sensor that keeps reporting "detected" is re-announced at most this often:
# enough for inactivity rules (minutes), without one reading per advert.
MOTION_REPEAT_S = 30.0
_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True, slots=True)
class Stamp:
    mono: float
    wall: float
    synced: bool


def kind_of(key: str) -> str:
    """``"opening_2"`` -> ``"opening"`` (the library numbers repeated objects)."""
    return _SUFFIX.sub("", key)


@dataclass
class _PacketMemo:
    packet_id: int
    raw: bytes
    mono: float


@dataclass
class BTHomeDeviceState:
    binaries: dict[str, bool] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    battery_pct: float | None = None
    last_telemetry_mono: float | None = None
    last_motion_mono: float | None = None
    last_packet: _PacketMemo | None = None
    duplicates: int = 0


class BTHomeMapper:
    """Per-device mapping with the state change detection and rate limits need."""

    def __init__(self, device: BleDevice, config: BleConfig) -> None:
        self.device = device
        self.config = config
        self.state = BTHomeDeviceState()

    # -- duplicates ---------------------------------------------------------------------
    def is_duplicate(self, advert: Advert, update: BTHomeUpdate) -> bool:
        """Same packet id and bytes as the last accepted advert, within the window.

        ``bthome-ble`` already drops these within 4 s (its rule for proxies reordering
        adverts); devices keep re-broadcasting one packet for longer, and a repeated
        button packet must never become a second alarm.
        """
        if update.packet_id is None:
            return False
        raw = advert.bthome_payload or b""
        memo = self.state.last_packet
        if (
            memo is not None
            and memo.packet_id == update.packet_id
            and memo.raw == raw
            and advert.mono - memo.mono <= self.config.duplicate_window_s
        ):
            self.state.duplicates += 1
            return True
        self.state.last_packet = _PacketMemo(update.packet_id, raw, advert.mono)
        return False

    # -- mapping ------------------------------------------------------------------------
    def _data(self, **extra: Any) -> dict[str, Any]:
        return {"room": self.device.room, "role": self.device.role, "source": "ble", **extra}

    def _reading(self, type_: str, prio: Priority, stamp: Stamp, publish: bool = True,
                 **extra: Any) -> Reading:
        return Reading(device_id=self.device.id, type=type_, priority=prio,
                       data=self._data(**extra), mono=stamp.mono, wall=stamp.wall,
                       publish=publish)

    def map(self, update: BTHomeUpdate, stamp: Stamp) -> list[Reading]:
        out: list[Reading] = []
        for key, etype in update.events:
            out.extend(self._button(key, etype, stamp))
        for key, value in update.binaries:
            out.extend(self._binary(key, value, stamp))
        out.extend(self._measurements(update, stamp))
        return out

    def _button(self, key: str, etype: str, stamp: Stamp) -> list[Reading]:
        if kind_of(key) != "button" or etype not in PRESS_EVENTS:
            log.debug("%s: ignoring BTHome event %s=%s", self.device.id, key, etype)
            return []
        if self.device.button == "cancel":
            return [self._reading("cancel", Priority.INFO, stamp, publish=False,
                                  press=etype, button=key)]
        return [self._reading("pendant", Priority.ALARM, stamp,
                              contact_id=CONTACT_ID_PENDANT, press=etype, button=key)]

    def _binary(self, key: str, value: bool, stamp: Stamp) -> list[Reading]:
        kind = kind_of(key)
        prev = self.state.binaries.get(key)
        self.state.binaries[key] = value
        changed = prev is None or prev != value
        if kind == "motion":
            if value:
                last = self.state.last_motion_mono
                if changed or last is None or stamp.mono - last >= MOTION_REPEAT_S:
                    self.state.last_motion_mono = stamp.mono
                    return [self._reading("motion", Priority.TELEMETRY, stamp, state="detected")]
                return []
            return [self._reading("motion_clear", Priority.TELEMETRY, stamp, publish=False)] \
                if prev else []
        if kind == "occupancy":
            if not changed:
                return []
            if value:
                self.state.last_motion_mono = stamp.mono
                return [self._reading("motion", Priority.TELEMETRY, stamp, state="detected",
                                      sensor="occupancy")]
            return [self._reading("motion_clear", Priority.TELEMETRY, stamp, publish=False)] \
                if prev else []
        if kind in DOOR_KINDS:
            if not changed:
                return []
            return [self._reading("door_open" if value else "door_close", Priority.INFO, stamp,
                                  sensor=kind)]
        if kind == "moisture":
            if value and changed:
                return [self._reading("flood", Priority.ALARM, stamp, contact_id=CONTACT_ID_FLOOD)]
            return []
        if kind == "smoke":
            if value and changed:
                return [self._reading("smoke", Priority.ALARM, stamp, contact_id=CONTACT_ID_SMOKE)]
            return []
        if kind == "battery":  # the BTHome "battery low" flag
            return [self.measurement(stamp, low_flag=value)]
        return []

    def measurement(self, stamp: Stamp, **values: Any) -> Reading:
        """The unpublished ``measurement`` reading the condition rules take (``battery_pct``,
        ``low_flag``, ``temperature_c``), stamped with the clock's sync state."""
        return self._reading(MEASUREMENT, Priority.TELEMETRY, stamp, publish=False,
                             clock_synced=stamp.synced, **values)

    def battery_pct(self, pct: float, stamp: Stamp) -> list[Reading]:
        """A battery level heard (an advert, a wearable's battery service)."""
        self.state.battery_pct = pct
        return [self.measurement(stamp, battery_pct=pct)]

    def _measurements(self, update: BTHomeUpdate, stamp: Stamp) -> list[Reading]:
        out: list[Reading] = []
        numeric = [m for m in update.measurements
                   if isinstance(m.value, (int, float)) and not isinstance(m.value, bool)]
        for m in update.measurements:
            self.state.values[m.key] = m.value
        batteries = [m.value for m in numeric if m.kind == "battery"]
        temps = [m.value for m in numeric if m.kind == "temperature"]
        values: dict[str, float] = {}
        if batteries:
            self.state.battery_pct = values["battery_pct"] = float(min(batteries))
        if temps:
            values["temperature_c"] = float(min(temps))
        if values:
            out.append(self.measurement(stamp, **values))
        if update.measurements:
            last = self.state.last_telemetry_mono
            if last is None or stamp.mono - last >= self.config.telemetry_interval_s:
                self.state.last_telemetry_mono = stamp.mono
                values = {m.key: _jsonable(m.value) for m in update.measurements}
                units = {m.key: m.unit for m in update.measurements if m.unit}
                out.append(self._reading("telemetry", Priority.TELEMETRY, stamp,
                                         **values, units=units))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
