"""Device supervision: last seen per device, offline/online events, retained device state.

A sleepy BTHome sensor may report once an hour or only when something happens, so the
offline threshold is per device (``interval_s`` x ``missed_intervals``) or per kind (25 h
for BTHome, minutes for a streaming wearable). Time is the monotonic clock: a wall-clock
step (NTP arriving late on a Pi without RTC) never makes a device look offline.

With a :class:`~drivers.ble.persistence.SupervisionStore` the last sighting, battery,
signal and online state survive a restart (:meth:`Supervisor.restore`): the offline clock
continues from the last sighting when the time since can be known (same boot, or two
synchronised wall clocks), and a device already reported offline is not reported again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.model import Event, Priority, iso_utc
from drivers.ble.bthome_mapping import Stamp
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.persistence import SAVE_EVERY_S, SupervisionStore, seconds_since_seen

log = logging.getLogger(__name__)

SAVE_RETRY_S = 60.0      # after a failed write, wait this long before the next attempt


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
    seen_synced: bool = False
    saved_mono: float | None = None      # when the record was last written
    save_due: bool = False

    def record(self, boot_id: str | None) -> dict[str, Any]:
        """What :class:`~drivers.ble.persistence.SupervisionStore` keeps for this device."""
        return {"address": self.device.mac,
                "seen_mono": self.last_seen_mono, "seen_wall": self.last_seen_wall,
                "seen_synced": self.seen_synced, "boot_id": boot_id,
                "battery": self.battery_pct, "rssi": self.rssi, "online": self.online}

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
        store: SupervisionStore | None = None,
        boot_id: str | None = None,
    ) -> None:
        self._config = config
        self._submit = submit_event
        self._publish = publish_state
        self._store = store
        self._boot_id = boot_id
        self._save_failed_mono: float | None = None
        self._start_mono: float | None = None
        self.health: dict[str, DeviceHealth] = {
            d.id: DeviceHealth(d, config.offline_after(d)) for d in config.devices
        }

    def add_device(self, device: BleDevice) -> None:
        """Supervise a device discovered at run time (replay without a config)."""
        self.health.setdefault(device.id, DeviceHealth(device, self._config.offline_after(device)))

    def start(self, now_mono: float) -> None:
        self._start_mono = now_mono

    def restore(self, stamp: Stamp) -> int:
        """Continue from the saved records of configured devices; returns how many."""
        if self._store is None:
            return 0
        restored = 0
        for device_id, rec in self._store.load().items():
            h = self.health.get(device_id)
            if h is None:
                continue
            if rec.get("address") not in (None, h.device.mac):
                log.info("BLE supervision: %s is now %s (was %s): saved state not used",
                         device_id, h.device.mac, rec.get("address"))
                continue
            try:
                battery, rssi, wall = (_num(rec.get("battery")), _num(rec.get("rssi")),
                                       _num(rec.get("seen_wall")))
                age = seconds_since_seen(rec, stamp.mono, stamp.wall, stamp.synced,
                                         self._boot_id)
            except (TypeError, ValueError):
                log.warning("BLE supervision: saved state of %s is unreadable, ignored",
                            device_id)
                continue
            h.battery_pct = battery
            h.rssi = None if rssi is None else int(rssi)
            h.last_seen_wall = wall
            h.seen_synced = bool(rec.get("seen_synced"))
            if age is not None:
                h.last_seen_mono = stamp.mono - age
            if rec.get("online") is False:
                h.online = False          # reported offline before the restart: not again
            h.saved_mono = stamp.mono
            restored += 1
        if restored:
            log.info("BLE supervision: state of %d device(s) restored", restored)
        return restored

    def save(self, now_mono: float, everything: bool = False) -> None:
        """Write the records that are due (all of them with ``everything``)."""
        if self._store is None:
            return
        failed = self._save_failed_mono
        if not everything and failed is not None and now_mono - failed < SAVE_RETRY_S:
            return      # the disk just refused: retry later, not on every advert
        due = {i: h for i, h in self.health.items()
               if h.save_due or (everything and h.last_seen_wall is not None)}
        if not due:
            return
        if self._store.save({i: h.record(self._boot_id) for i, h in due.items()}):
            self._save_failed_mono = None
            for h in due.values():
                h.save_due = False
                h.saved_mono = now_mono
        else:
            self._save_failed_mono = now_mono

    def seen(self, device_id: str, stamp: Stamp, rssi: int | None = None,
             battery_pct: float | None = None) -> None:
        h = self.health.get(device_id)
        if h is None:
            return
        if battery_pct is not None and battery_pct != h.battery_pct:
            h.battery_pct = battery_pct
            h.dirty = True
            h.save_due = True
        was = h.online
        h.last_seen_mono = stamp.mono
        h.last_seen_wall = stamp.wall
        h.seen_synced = stamp.synced
        if rssi is not None and rssi != h.rssi:
            h.rssi = rssi
        if was is not True:
            h.online = True
            h.dirty = True
            h.save_due = True
            if was is False:
                log.warning("BLE device %s is back online", device_id)
                self._submit(self._event("device_online", Priority.INFO, h, stamp))
        self._maybe_publish(h, stamp.mono)
        if self._store is not None:
            if h.saved_mono is None or stamp.mono - h.saved_mono >= SAVE_EVERY_S:
                h.save_due = True
            if h.save_due:
                self.save(stamp.mono)

    def battery(self, device_id: str, pct: float, stamp: Stamp) -> None:
        h = self.health.get(device_id)
        if h is None or pct == h.battery_pct:
            return
        h.battery_pct = pct
        h.dirty = True
        h.save_due = True
        self._maybe_publish(h, stamp.mono)
        self.save(stamp.mono)

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
                h.save_due = True
        self.save(stamp.mono)

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


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return float(value)
