"""The small interface a wearable must offer, so devices other than the Thingy:52 can be added.

A profile knows the device's GATT layout and byte formats: which characteristic notifies
motion, how to set the sample rate, how to decode a notification into samples in g and
deg/s, and (optionally) which characteristic reports a button. The connection, timing,
gaps and reconnects are the same for every wearable (``link.py``, ``stream.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

BATTERY_LEVEL_CHAR = "00002a19-0000-1000-8000-00805f9b34fb"  # Battery Service 0x180F


@dataclass(frozen=True, slots=True)
class MotionSample:
    acc_g: tuple[float, float, float]
    gyro_dps: tuple[float, float, float] | None = None


class GattClient(Protocol):
    """The part of ``bleak.BleakClient`` the wearable code uses (a fake honours the same)."""

    @property
    def address(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    async def disconnect(self) -> None: ...

    async def start_notify(self, char_specifier: Any, callback: Any, **kwargs: Any) -> None: ...

    async def stop_notify(self, char_specifier: Any) -> None: ...

    async def read_gatt_char(self, char_specifier: Any, **kwargs: Any) -> bytearray: ...

    async def write_gatt_char(self, char_specifier: Any, data: Any,
                              response: bool | None = None) -> None: ...


class MotionProfile(Protocol):
    name: str
    motion_char: str
    button_char: str | None
    has_gyro: bool

    async def configure(self, client: GattClient, rate_hz: float) -> float:
        """Ask the device for ``rate_hz``; return the rate it will actually stream at."""

    def decode_motion(self, data: bytes) -> Sequence[MotionSample]:
        """Samples in one notification, oldest first. Raises ``DecodeError``."""

    def decode_button(self, data: bytes) -> bool | None:
        """True when pressed, False when released, None if not understood."""


def make_profile(name: str) -> MotionProfile:
    if name == "thingy52":
        from drivers.ble.wearable.thingy52 import Thingy52Profile

        return Thingy52Profile()
    raise ValueError(f"unknown wearable profile {name!r}")
