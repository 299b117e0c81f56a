"""The one BLE scanner the agent owns: start, watch for stalls, restart, recover.

- Passive scanning where BlueZ allows it (AdvertisementMonitor with ``or_patterns``),
  active otherwise. The patterns match the flags most advertisers send (as Home
  Assistant's habluetooth does) plus BTHome service data, so a quiet home still feeds
  the stall watchdog. No ``service_uuids`` filter: it would drop BTHome adverts.
- No advert for ``stall_timeout_s`` while scanning: stop and start the scanner. After
  ``restarts_before_recovery`` restarts (or start failures) in a row without an advert,
  recover the adapter (``bluetooth-auto-recovery``), raise a ``ble_adapter_recovery``
  warning and count it.
- An adapter that is absent or broken at start is logged as a clear error and retried
  with backoff; the agent keeps running.

Callbacks from BlueZ arrive on the agent loop; a backend that calls from another thread
is bridged with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from agent.clock import Clock
from agent.model import Event, Priority
from drivers.ble.config import BleConfig

log = logging.getLogger(__name__)

AdvertSink = Callable[[BLEDevice, AdvertisementData], None]
EventSink = Callable[[Event], None]
Recover = Callable[[str], Awaitable[bool]]

# AD type 0x01 (flags) values seen in the wild (habluetooth's list), AD type 0x16
# (16-bit service data) starting with the BTHome UUID 0xFCD2 little-endian.
_PASSIVE_FLAGS = (0x02, 0x04, 0x05, 0x06, 0x18, 0x1A)


def passive_or_patterns() -> list[Any]:
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    patterns = [OrPattern(0, AdvertisementDataType.FLAGS, bytes([f])) for f in _PASSIVE_FLAGS]
    patterns.append(OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc"))
    return patterns


class ScannerOwner:
    """Owns one ``BleakScanner``; hands every advert to ``sink`` on the loop."""

    def __init__(
        self,
        config: BleConfig,
        clock: Clock,
        sink: AdvertSink,
        events: EventSink,
        backend: type[BaseBleakScanner] | None = None,
        backend_options: dict[str, Any] | None = None,
        recover: Recover | None = None,
        poll_s: float = 5.0,
    ) -> None:
        self._cfg = config
        self._clock = clock
        self._sink = sink
        self._events = events
        self._backend = backend
        self._backend_options = dict(backend_options or {})
        self._recover = recover
        self._poll_s = poll_s
        self._scanner: BleakScanner | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._passive_ok = config.scanning_mode != "active"
        self._last_advert: float = 0.0
        self._unanswered = 0            # restarts/start failures since the last advert
        self._last_recovery: float | None = None
        self._recovery_interval = config.recovery_min_interval_s   # doubles after failures
        self._unavailable_reported = False
        self.mode: str | None = None
        self.stats: dict[str, int] = {
            "adverts": 0, "restarts": 0, "start_failures": 0, "recoveries": 0,
            "recoveries_failed": 0,
        }

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="ble-scanner")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_scanner()

    @property
    def scanning(self) -> bool:
        return self._scanner is not None

    # -- adverts -------------------------------------------------------------------------
    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._on_advert, device, adv)
            return
        self._last_advert = self._clock.monotonic()
        self._unanswered = 0
        self.stats["adverts"] += 1
        try:
            self._sink(device, adv)
        except Exception:
            log.exception("BLE advert handling failed for %s", device.address)

    # -- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        retry = self._cfg.adapter_retry_min_s
        while not self._stopping.is_set():
            try:
                await self._start_scanner()
            except Exception as exc:
                self.stats["start_failures"] += 1
                self._unanswered += 1
                self._report_unavailable(exc, retry)
                await self._maybe_recover("start_failed")
                await self._sleep(retry)
                retry = min(retry * 2, self._cfg.adapter_retry_max_s)
                continue
            retry = self._cfg.adapter_retry_min_s
            if self._unavailable_reported:
                log.warning("BLE adapter %s is scanning again", self._cfg.adapter)
                self._unavailable_reported = False
            await self._watch()
            if self._stopping.is_set():
                break
            self.stats["restarts"] += 1
            self._unanswered += 1
            log.warning(
                "BLE scanner on %s heard nothing for %.0f s: restarting it (restart %d)",
                self._cfg.adapter, self._cfg.stall_timeout_s, self.stats["restarts"],
            )
            await self._stop_scanner()
            await self._maybe_recover("stall")

    async def _watch(self) -> None:
        """Return when no advert arrived for ``stall_timeout_s`` (or on stop)."""
        while not self._stopping.is_set():
            silent = self._clock.monotonic() - self._last_advert
            if silent >= self._cfg.stall_timeout_s:
                return
            await self._sleep(min(self._cfg.stall_timeout_s - silent, self._poll_s))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0.0))

    def _build(self, mode: str) -> BleakScanner:
        bluez: dict[str, Any] = {"adapter": self._cfg.adapter}
        if mode == "passive":
            bluez["or_patterns"] = passive_or_patterns()
        kwargs: dict[str, Any] = dict(self._backend_options)
        if self._backend is not None:
            kwargs["backend"] = self._backend
        return BleakScanner(self._on_advert, None, mode, bluez=bluez, **kwargs)  # type: ignore[arg-type]

    async def _start_scanner(self) -> None:
        await self._stop_scanner()
        passive_error: Exception | None = None
        if self._passive_ok:
            try:
                scanner = self._build("passive")
                await scanner.start()
            except Exception as exc:
                if self._cfg.scanning_mode == "passive":
                    raise
                passive_error = exc
            else:
                self._started(scanner, "passive")
                return
        scanner = self._build("active")
        await scanner.start()   # raises when the adapter itself is the problem
        if passive_error is not None:
            # Active works, so passive is what this BlueZ lacks; stop asking.
            log.warning("BLE passive scanning unavailable on %s (%s): using active scanning",
                        self._cfg.adapter, passive_error)
            self._passive_ok = False
        self._started(scanner, "active")

    def _started(self, scanner: BleakScanner, mode: str) -> None:
        self._scanner = scanner
        self.mode = mode
        self._last_advert = self._clock.monotonic()  # the stall clock starts now
        log.info("BLE scanner started on %s (%s)", self._cfg.adapter, mode)

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            await asyncio.wait_for(scanner.stop(), timeout=10.0)
        except Exception as exc:
            log.warning("BLE scanner on %s did not stop cleanly: %r", self._cfg.adapter, exc)

    def _report_unavailable(self, exc: BaseException, retry: float) -> None:
        if isinstance(exc, FileNotFoundError) and not exc.filename:
            exc = FileNotFoundError(exc.errno, "D-Bus system bus socket not found (is dbus "
                                               "running? BlueZ is reached over D-Bus)")
        log.error(
            "BLE adapter %s unavailable (%s: %s); BLE sensors are not being heard; "
            "retrying in %.3g s (check the adapter is present: `bluetoothctl list`, "
            "`rfkill list`, and that bluetoothd is running)",
            self._cfg.adapter, type(exc).__name__, exc or "no detail", retry,
        )
        if not self._unavailable_reported:
            self._unavailable_reported = True
            self._events(self._event("ble_adapter_unavailable", {
                "adapter": self._cfg.adapter, "error": f"{type(exc).__name__}: {exc}",
                "retry_s": retry,
            }))

    async def _maybe_recover(self, reason: str) -> None:
        if self._unanswered <= self._cfg.restarts_before_recovery or self._recover is None:
            return
        now = self._clock.monotonic()
        if self._last_recovery is not None and now - self._last_recovery < self._recovery_interval:
            return
        self._last_recovery = now
        self._unanswered = 0
        log.warning("BLE adapter %s: %s persists; recovering the adapter",
                    self._cfg.adapter, reason)
        try:
            ok = await self._recover(self._cfg.adapter)
        except Exception as exc:
            log.error("BLE adapter %s recovery raised %r", self._cfg.adapter, exc)
            ok = False
        self.stats["recoveries" if ok else "recoveries_failed"] += 1
        # A recovery that keeps failing (no adapter at all) is retried ever more rarely,
        # so a hub without a working adapter does not raise a warning every few minutes.
        self._recovery_interval = (self._cfg.recovery_min_interval_s if ok
                                   else min(self._recovery_interval * 2, 86400.0))
        self._events(self._event("ble_adapter_recovery", {
            "adapter": self._cfg.adapter, "reason": reason, "ok": ok,
            "recoveries": self.stats["recoveries"],
            "recoveries_failed": self.stats["recoveries_failed"],
            "scanner_restarts": self.stats["restarts"],
        }))

    def _event(self, type_: str, data: dict[str, Any]) -> Event:
        return Event(type=type_, priority=Priority.WARNING, device_id=f"ble-{self._cfg.adapter}",
                     data={"source": "ble", **data}, wall=self._clock.wall(),
                     mono=self._clock.monotonic(), clock_synced=self._clock.synced())
