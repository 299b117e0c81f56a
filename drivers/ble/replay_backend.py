"""A radio without a radio: a real ``bleak`` scanner backend fed from recorded adverts.

``BleakScanner(backend=ReplayScannerBackend, feed=feed)`` behaves like the BlueZ backend
(start/stop, ``seen_devices``, detection callbacks, passive mode needing ``or_patterns``)
but its adverts come from :meth:`AdvertFeed.push`. ``tec-agent ble replay`` and the tests
use it; so can a lab hub without an adapter. Failure modes (adapter absent, passive scanning
unsupported, radio gone silent) are switches on the feed, so the driver's recovery paths
run against the same code as in the field.
"""

from __future__ import annotations

import logging
from typing import Any

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakError

from drivers.ble.advert import Advert

log = logging.getLogger(__name__)


class AdvertFeed:
    """The fake radio shared by every scanner built on it (one adapter, as on a hub)."""

    def __init__(self, passive_supported: bool = True) -> None:
        self.passive_supported = passive_supported
        self.silent = False                 # True: the "radio" stops hearing anything
        self.starts = 0
        self.stops = 0
        self.modes: list[str] = []          # scanning mode of each successful start
        self._start_failures: list[BaseException] = []
        self._active: list[ReplayScannerBackend] = []

    # -- test and replay controls ----------------------------------------------------------
    def fail_next_starts(self, exc: BaseException, times: int = 1) -> None:
        self._start_failures.extend([exc] * times)

    @property
    def scanning(self) -> bool:
        return bool(self._active)

    def push(self, advert: Advert, details: Any = None) -> int:
        """Deliver ``advert`` to every started scanner; returns how many heard it."""
        if self.silent:
            return 0
        for backend in list(self._active):
            backend.deliver(advert, details)
        return len(self._active)

    def scanner_options(self) -> dict[str, Any]:
        """Keyword arguments for ``BleakScanner(backend=ReplayScannerBackend, **options)``."""
        return {"feed": self}

    # -- called by the backend ---------------------------------------------------------------
    def _attach(self, backend: ReplayScannerBackend) -> None:
        if self._start_failures:
            raise self._start_failures.pop(0)
        if backend.scanning_mode == "passive" and not self.passive_supported:
            raise BleakError(
                "passive scanning not supported: org.bluez.AdvertisementMonitorManager1 "
                "not available (start bluetoothd with --experimental)"
            )
        self.starts += 1
        self.modes.append(backend.scanning_mode)
        self._active.append(backend)

    def _detach(self, backend: ReplayScannerBackend) -> None:
        if backend in self._active:
            self._active.remove(backend)
            self.stops += 1


class ReplayScannerBackend(BaseBleakScanner):
    """``BaseBleakScanner`` whose adverts come from an :class:`AdvertFeed`."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        feed: AdvertFeed,
        bluez: dict[str, Any] | None = None,
        cb: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.scanning_mode = scanning_mode
        self._feed = feed
        self._started = False
        if scanning_mode == "passive" and not (bluez or {}).get("or_patterns"):
            raise BleakError("passive scanning mode requires bluez or_patterns")

    async def start(self) -> None:
        self.seen_devices = {}
        self._feed._attach(self)  # noqa: SLF001  the feed and its backends are one module
        self._started = True

    async def stop(self) -> None:
        self._started = False
        self._feed._detach(self)  # noqa: SLF001  the feed and its backends are one module

    def deliver(self, advert: Advert, details: Any = None) -> None:
        uuids = list(advert.service_data)
        if not self.is_allowed_uuid(uuids):
            return
        data = AdvertisementData(
            local_name=advert.name,
            manufacturer_data=dict(advert.manufacturer_data),
            service_data=dict(advert.service_data),
            service_uuids=uuids,
            tx_power=None,
            rssi=advert.rssi,
            platform_data=("replay",),
        )
        device = self.create_or_update_device(
            advert.address, advert.address, advert.name, details, data
        )
        self.call_detection_callbacks(device, data)
