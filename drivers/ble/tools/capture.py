"""Record every advert the adapter hears to a JSONL file (``tec-agent ble capture``).

Active scanning, so local names from scan responses are recorded too. A support engineer
runs this on a hub, then replays the file anywhere (``tec-agent ble replay``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TextIO

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from agent.clock import Clock, SystemClock
from agent.errors import DriverError
from drivers.ble.advert import Advert

log = logging.getLogger(__name__)


async def capture(
    seconds: float,
    out: TextIO,
    adapter: str = "hci0",
    backend: type[BaseBleakScanner] | None = None,
    backend_options: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> int:
    """Write one JSON line per advert for ``seconds``; return how many were written."""
    clock = clock or SystemClock()
    count = 0

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        nonlocal count
        advert = Advert(
            address=device.address.upper(), rssi=adv.rssi, ts=clock.wall(),
            mono=clock.monotonic(), name=adv.local_name, service_data=adv.service_data,
            manufacturer_data=adv.manufacturer_data,
        )
        out.write(advert.to_json_line() + "\n")
        count += 1

    kwargs: dict[str, Any] = dict(backend_options or {})
    if backend is not None:
        kwargs["backend"] = backend
    try:
        scanner = BleakScanner(on_advert, None, "active", bluez={"adapter": adapter}, **kwargs)
        await scanner.start()
    except Exception as exc:
        raise DriverError(
            f"cannot scan on Bluetooth adapter {adapter}: {type(exc).__name__}:"
            f" {exc or 'no detail'}"
            " (is the adapter present and bluetoothd running? try `bluetoothctl list`)"
        ) from exc
    try:
        await asyncio.sleep(seconds)
    finally:
        try:
            await scanner.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("stopping the scanner failed: %r", exc)
        out.flush()
    return count
