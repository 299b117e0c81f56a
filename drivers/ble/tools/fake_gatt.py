"""A stand-in GATT peripheral and client, like gpiozero's ``MockFactory`` for BLE.

:class:`FakeGattClient` honours the part of ``bleak.BleakClient`` the driver uses
(construction as ``establish_connection`` does it, ``connect``, ``disconnect``,
``is_connected``, ``start_notify``/``stop_notify``, ``read_gatt_char``/``write_gatt_char``,
the ``disconnected_callback``). It talks to a :class:`FakePeripheral` found in the
``BLEDevice.details`` the scanner produced, as BlueZ's client finds its D-Bus path there.
The peripheral simulates a Nordic Thingy:52 (motion config/raw data, button, battery) and
the radio's failure modes: refused connections, lost notifications, link loss.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.exc import BleakCharacteristicNotFoundError, BleakDeviceNotFoundError, BleakError

from drivers.ble.wearable import thingy52
from drivers.ble.wearable.profile import BATTERY_LEVEL_CHAR, MotionSample

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FakeCharacteristic:
    uuid: str


def _uuid(spec: Any) -> str:
    return str(getattr(spec, "uuid", spec)).lower()


class FakePeripheral:
    """A simulated Thingy:52. Tests drive it; the driver talks to it through the client."""

    def __init__(self, address: str, battery_pct: int = 87, motion_freq_hz: int = 10) -> None:
        self.address = address.upper()
        self.battery_pct = battery_pct
        # ble_tms_config_t defaults: pedometer 100 ms, temp 500 ms, compass 500 ms, freq, WoM on
        self.chars: dict[str, bytearray] = {
            thingy52.MOTION_CONFIG_CHAR: bytearray(struct.pack("<HHHHB", 100, 500, 500,
                                                               motion_freq_hz, 1)),
            thingy52.RAW_DATA_CHAR: bytearray(18),
            thingy52.BUTTON_CHAR: bytearray(1),
            BATTERY_LEVEL_CHAR: bytearray([battery_pct]),
        }
        self.refuse_connections = 0          # next N connects fail like a radio fade
        self.drop_notifications = 0          # next N notifications are lost in the air
        self.client: FakeGattClient | None = None
        self.connects = 0
        self.writes: list[tuple[str, bytes]] = []

    @property
    def motion_freq_hz(self) -> int:
        return int(struct.unpack_from("<H", self.chars[thingy52.MOTION_CONFIG_CHAR], 6)[0])

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    def notify(self, uuid: str, data: bytes) -> bool:
        """Send a notification; False if nobody listens or it was dropped."""
        client = self.client
        if client is None or not client.is_connected:
            return False
        if self.drop_notifications > 0:
            self.drop_notifications -= 1
            return False
        return client._deliver(uuid.lower(), bytes(data))

    def send_samples(self, samples: Sequence[MotionSample]) -> int:
        """One raw-data notification per sample, as the Thingy:52 firmware does."""
        return sum(self.notify(thingy52.RAW_DATA_CHAR, thingy52.encode_raw(s)) for s in samples)

    def press_button(self) -> bool:
        sent = self.notify(thingy52.BUTTON_CHAR, b"\x01")
        self.notify(thingy52.BUTTON_CHAR, b"\x00")
        return sent

    def drop_link(self) -> None:
        """Link loss (supervision timeout): the client hears about it via its callback."""
        client, self.client = self.client, None
        if client is not None:
            client._lost()


class FakeGattClient:
    """Stands in for ``BleakClient``/``BleakClientWithServiceCache``."""

    def __init__(self, address_or_ble_device: BLEDevice | str,
                 disconnected_callback: Callable[[Any], None] | None = None,
                 services: Any = None, *, timeout: float = 10.0, pair: bool = False,
                 **kwargs: Any) -> None:
        if isinstance(address_or_ble_device, BLEDevice):
            self._address = address_or_ble_device.address
            details = address_or_ble_device.details
        else:
            self._address, details = address_or_ble_device, None
        self._peripheral = details if isinstance(details, FakePeripheral) else None
        self._disconnected_callback = disconnected_callback
        self._connected = False
        self._subs: dict[str, Callable[[Any, bytearray], None]] = {}

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, **kwargs: Any) -> bool:
        p = self._peripheral
        if p is None:
            raise BleakDeviceNotFoundError(self._address,
                                           f"Device with address {self._address} was not found.")
        if p.refuse_connections > 0:
            p.refuse_connections -= 1
            raise BleakError("[org.bluez.Error.Failed] le-connection-abort-by-local")
        if p.client is not None and p.client is not self:
            raise BleakError("[org.bluez.Error.InProgress] already connected to another central")
        p.client = self
        p.connects += 1
        self._connected = True
        return True

    async def disconnect(self) -> bool:
        if self._connected:
            self._connected = False
            self._subs.clear()
            if self._peripheral is not None and self._peripheral.client is self:
                self._peripheral.client = None
            if self._disconnected_callback is not None:
                self._disconnected_callback(self)
        return True

    async def start_notify(self, char_specifier: Any, callback: Callable[[Any, bytearray], None],
                           **kwargs: Any) -> None:
        uuid = self._char(char_specifier)
        self._subs[uuid] = callback

    async def stop_notify(self, char_specifier: Any) -> None:
        self._subs.pop(self._char(char_specifier), None)

    async def read_gatt_char(self, char_specifier: Any, **kwargs: Any) -> bytearray:
        uuid = self._char(char_specifier)
        assert self._peripheral is not None
        if uuid == BATTERY_LEVEL_CHAR:
            return bytearray([self._peripheral.battery_pct])
        return bytearray(self._peripheral.chars[uuid])

    async def write_gatt_char(self, char_specifier: Any, data: Any,
                              response: bool | None = None) -> None:
        uuid = self._char(char_specifier)
        assert self._peripheral is not None
        self._peripheral.writes.append((uuid, bytes(data)))
        self._peripheral.chars[uuid][:] = bytes(data)

    async def clear_cache(self) -> bool:
        return True

    # -- peripheral side -----------------------------------------------------------------
    def _char(self, spec: Any) -> str:
        if not self._connected or self._peripheral is None:
            raise BleakError("Not connected")
        uuid = _uuid(spec)
        if uuid not in self._peripheral.chars:
            raise BleakCharacteristicNotFoundError(uuid)
        return uuid

    def _deliver(self, uuid: str, data: bytes) -> bool:
        cb = self._subs.get(uuid)
        if cb is None:
            return False
        cb(FakeCharacteristic(uuid), bytearray(data))
        return True

    def _lost(self) -> None:
        if self._connected:
            self._connected = False
            self._subs.clear()
            if self._disconnected_callback is not None:
                self._disconnected_callback(self)
