"""Device supervision: last seen per device, offline/online events, retained device state.

A sleepy BTHome sensor may report once an hour or only when something happens, so the
offline threshold is per device (``interval_s`` x ``missed_intervals``) or per kind (25 h
for BTHome, minutes for a streaming wearable). Time is the monotonic clock: a wall-clock
step (NTP arriving late on a Pi without RTC) never makes a device look offline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.model import Event, Priority, iso_utc
from drivers.ble.bthome_mapping import Stamp
from drivers.ble.config import BleConfig, BleDevice

log = logging.getLogger(__name__)


@dataclass
class DeviceHealth:
    device: BleDevice
    offline_after_s: float
    last_seen_mono: float | None = None
    last_seen_wall: float | None = None
    rssi: int | None = None
    battery_pct: float | None = None
    online: bool | None = None
    published_mono: float | None = None
    dirty: bool = True

    def state(self) -> dict[str, Any]:
        """The retained ``tec/v1/{hub_id}/device/{device_id}`` document (contract keys)."""
        return {
            "kind": self.device.kind,
            "last_seen": None if self.last_seen_wall is None else iso_utc(self.last_seen_wall),
            "battery": self.battery_pct,
            "rssi": self.rssi,
            "online": self.online,
        }


class Supervisor:
    """Tracks every configured device; the owner calls :meth:`check` periodically."""

    def __init__(
        self,
        config: BleConfig,
        submit_event: Callable[[Event], None],
        publish_state: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self._config = config
        self._submit = submit_event
        self._publish = publish_state
        self._start_mono: float | None = None
        self.health: dict[str, DeviceHealth] = {
            d.id: DeviceHealth(d, config.offline_after(d)) for d in config.devices
        }

    def add_device(self, device: BleDevice) -> None:
        """Supervise a device discovered at run time (replay without a config)."""
        self.health.setdefault(device.id, DeviceHealth(device, self._config.offline_after(device)))

    def start(self, now_mono: float) -> None:
        self._start_mono = now_mono

    def seen(self, device_id: str, stamp: Stamp, rssi: int | None = None,
             battery_pct: float | None = None) -> None:
        h = self.health.get(device_id)
        if h is None:
            return
        if battery_pct is not None and battery_pct != h.battery_pct:
            h.battery_pct = battery_pct
            h.dirty = True
        was = h.online
        h.last_seen_mono = stamp.mono
        h.last_seen_wall = stamp.wall
        if rssi is not None and rssi != h.rssi:
            h.rssi = rssi
        if was is not True:
            h.online = True
            h.dirty = True
            if was is False:
                log.warning("BLE device %s is back online", device_id)
                self._submit(self._event("device_online", Priority.INFO, h, stamp))
        self._maybe_publish(h, stamp.mono)

    def battery(self, device_id: str, pct: float, stamp: Stamp) -> None:
        h = self.health.get(device_id)
        if h is None or pct == h.battery_pct:
            return
        h.battery_pct = pct
        h.dirty = True
        self._maybe_publish(h, stamp.mono)

    def check(self, stamp: Stamp) -> None:
        """Raise ``device_offline`` for every device silent longer than its threshold."""
        for h in self.health.values():
            since = h.last_seen_mono if h.last_seen_mono is not None else self._start_mono
            if since is None or h.online is False:
                continue
            if stamp.mono - since >= h.offline_after_s:
                h.online = False
                h.dirty = True
                log.warning("BLE device %s offline: nothing heard for %.0f s",
                            h.device.id, stamp.mono - since)
                self._submit(self._event("device_offline", Priority.WARNING, h, stamp,
                                         silent_s=round(stamp.mono - since, 1)))
                self._maybe_publish(h, stamp.mono)

    def _maybe_publish(self, h: DeviceHealth, now: float) -> None:
        due = h.published_mono is None or now - h.published_mono >= self._config.state_interval_s
        if h.dirty or due:
            h.dirty = False
            h.published_mono = now
            self._publish(h.device.id, h.state())

    def _event(self, type_: str, prio: Priority, h: DeviceHealth, stamp: Stamp,
               **extra: Any) -> Event:
        data = {
            "kind": h.device.kind,
            "room": h.device.room,
            "role": h.device.role,
            "source": "ble",
            "last_seen": None if h.last_seen_wall is None else iso_utc(h.last_seen_wall),
            "offline_after_s": h.offline_after_s,
            **extra,
        }
        return Event(type=type_, priority=prio, device_id=h.device.id, data=data,
                     wall=stamp.wall, mono=stamp.mono, clock_synced=stamp.synced)
