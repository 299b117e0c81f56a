"""Device conditions: ``battery_low`` and ``cold_home``, rules with memory over measurements.

The BLE driver turns each advert into readings and stops there; for every battery level,
battery-low flag or temperature it hears it emits an unpublished ``measurement`` reading
(:data:`agent.model.MEASUREMENT`). This detector keeps the per-device memory the two rules
need and raises their warnings, the same events (type, priority, data) the driver raised
before the rules moved here:

- ``battery_low`` (warning) when the level falls under ``ble.battery_low_pct`` (data
  ``battery_pct``, ``threshold_pct``) or the device sets its battery-low flag (data
  ``battery_pct``, ``low_flag``); re-armed once the level is back above
  ``battery_low_pct + battery_hysteresis_pct`` (or the flag clears while no level is known);
- ``cold_home`` (warning) when a thermometer with ``cold_home = true`` stays under
  ``ble.cold_home_c`` for ``cold_home_delay_s`` (data ``temperature_c``, ``threshold_c``,
  ``below_for_s``); re-armed once back above ``cold_home_c + cold_home_hysteresis_c``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.model import MEASUREMENT, Event, Priority, Reading
from agent.ports import AgentContext, DeviceInfo
from drivers.ble.config import BleConfig, BleDevice

log = logging.getLogger(__name__)

_LABELS = ("room", "role", "source")
_COLD_HOME_DEFAULT = bool(next(f.default for f in dataclasses.fields(BleDevice)
                               if f.name == "cold_home"))


@dataclass
class ConditionState:
    battery_pct: float | None = None
    battery_low: bool = False
    cold_since: float | None = None
    cold: bool = False


class DeviceConditions:
    """One device's conditions: pure logic over its measurements (no clock of its own)."""

    def __init__(self, device_id: str, labels: Mapping[str, Any], config: BleConfig,
                 cold_home: bool) -> None:
        self.device_id = device_id
        self.labels = dict(labels)
        self.config = config
        self.cold_home = cold_home
        self.state = ConditionState()

    def _event(self, type_: str, reading: Reading, synced: bool, **extra: Any) -> Event:
        return Event(type=type_, priority=Priority.WARNING, device_id=self.device_id,
                     data={**self.labels, **extra}, wall=reading.wall, mono=reading.mono,
                     clock_synced=synced)

    def measured(self, reading: Reading, synced: bool) -> list[Event]:
        out: list[Event] = []
        data = reading.data
        if "low_flag" in data:
            out.extend(self._battery_flag(bool(data["low_flag"]), reading, synced))
        pct = data.get("battery_pct")
        if isinstance(pct, int | float):
            out.extend(self._battery_pct(float(pct), reading, synced))
        temp = data.get("temperature_c")
        if isinstance(temp, int | float) and self.cold_home:
            out.extend(self._temperature(float(temp), reading, synced))
        return out

    def _battery_flag(self, low: bool, reading: Reading, synced: bool) -> list[Event]:
        st = self.state
        if low and not st.battery_low:
            st.battery_low = True
            return [self._event("battery_low", reading, synced, battery_pct=st.battery_pct,
                                low_flag=True)]
        if not low and st.battery_pct is None:
            st.battery_low = False
        return []

    def _battery_pct(self, pct: float, reading: Reading, synced: bool) -> list[Event]:
        cfg, st = self.config, self.state
        st.battery_pct = pct
        if not st.battery_low and pct < cfg.battery_low_pct:
            st.battery_low = True
            return [self._event("battery_low", reading, synced, battery_pct=pct,
                                threshold_pct=cfg.battery_low_pct)]
        if st.battery_low and pct >= cfg.battery_low_pct + cfg.battery_hysteresis_pct:
            log.info("%s: battery back to %s%%, battery_low re-armed", self.device_id, pct)
            st.battery_low = False
        return []

    def _temperature(self, temp: float, reading: Reading, synced: bool) -> list[Event]:
        cfg, st = self.config, self.state
        if temp < cfg.cold_home_c:
            if st.cold_since is None:
                st.cold_since = reading.mono
            if not st.cold and reading.mono - st.cold_since >= cfg.cold_home_delay_s:
                st.cold = True
                return [self._event("cold_home", reading, synced, temperature_c=temp,
                                    threshold_c=cfg.cold_home_c,
                                    below_for_s=round(reading.mono - st.cold_since, 1))]
            return []
        st.cold_since = None
        if st.cold and temp >= cfg.cold_home_c + cfg.cold_home_hysteresis_c:
            log.info("%s: temperature back to %.1f C, cold_home re-armed", self.device_id, temp)
            st.cold = False
        return []


class ConditionsDetector:
    """Component ``conditions``: the rules above for every device that sends measurements."""

    name = "conditions"

    def __init__(self, config: BleConfig) -> None:
        self.config = config
        self._cold_home = {d.id: d.cold_home for d in config.devices}
        self.devices_state: dict[str, DeviceConditions] = {}
        self._ctx: AgentContext | None = None

    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        ctx.subscribe_readings(self.handle_reading)

    async def stop(self) -> None:
        self._ctx = None

    def devices(self) -> list[DeviceInfo]:
        return []

    def handle_reading(self, reading: Reading) -> None:
        if reading.type != MEASUREMENT or self._ctx is None:
            return
        dev = self.devices_state.get(reading.device_id)
        if dev is None:
            labels = {k: reading.data[k] for k in _LABELS if k in reading.data}
            dev = DeviceConditions(reading.device_id, labels, self.config,
                                   self._cold_home.get(reading.device_id, _COLD_HOME_DEFAULT))
            self.devices_state[reading.device_id] = dev
        flag = reading.data.get("clock_synced")
        synced = self._ctx.clock.synced() if flag is None else bool(flag)
        for event in dev.measured(reading, synced):
            self._ctx.submit_event(event)
