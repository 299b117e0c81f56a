"""One wearable's GATT connection: connect, stream, read battery, reconnect with backoff.

``bleak-retry-connector``'s ``establish_connection`` does the connect: it retries the
transient BlueZ errors (``le-connection-abort-by-local``, out of connection slots, stale
service cache, D-Bus hiccups) with the back-off each one needs, and cleans up stale
connections held by BlueZ. Around it, this link waits for the wearable to advertise
(it only does when not connected), then backs off exponentially (with jitter, capped)
between failed rounds so a wearable left in a drawer does not keep the radio busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from agent.clock import Clock
from agent.errors import DecodeError
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.wearable.profile import BATTERY_LEVEL_CHAR, MotionProfile
from drivers.ble.wearable.stream import MotionChunk, MotionStream

log = logging.getLogger(__name__)

_CONNECT_ERRORS = (BleakError, asyncio.TimeoutError, OSError, EOFError, DecodeError)


class WearableLink:
    """Owns the connection to one configured wearable."""

    def __init__(
        self,
        device: BleDevice,
        config: BleConfig,
        profile: MotionProfile,
        clock: Clock,
        on_chunk: Callable[[MotionChunk], None],
        on_alive: Callable[[], None],
        on_battery: Callable[[float], None],
        on_button: Callable[[], None],
        client_class: type | None = None,
        chunk_s: float = 0.5,
    ) -> None:
        self.device = device
        self._cfg = config
        self.profile = profile
        self._clock = clock
        self._on_chunk = on_chunk
        self._on_alive = on_alive
        self._on_battery = on_battery
        self._on_button = on_button
        self._client_class = client_class or BleakClientWithServiceCache
        self.stream = MotionStream(device.rate_hz, max(1, round(device.rate_hz * chunk_s)),
                                   has_gyro=profile.has_gyro)
        self._ble_device: BLEDevice | None = None
        self._advertised = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._last_alive = -1e18
        self.connected = False
        self.stats = {"connects": 0, "disconnects": 0, "connect_failures": 0,
                      "decode_errors": 0}

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"ble-wearable-{self.device.id}")

    async def stop(self) -> None:
        self._stopping.set()
        self._disconnected.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_client()

    def advert_seen(self, ble_device: BLEDevice) -> None:
        """The scanner heard the wearable advertising: it is free to connect to."""
        self._ble_device = ble_device
        self._advertised.set()

    # -- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self._cfg.reconnect_min_s
        while not self._stopping.is_set():
            device = await self._wait_for_device(backoff)
            if self._stopping.is_set():
                return
            try:
                await self._session(device)
                backoff = self._cfg.reconnect_min_s
            except _CONNECT_ERRORS as exc:
                self.stats["connect_failures"] += 1
                log.warning("wearable %s: connection failed: %s: %s; retrying in %.1f s",
                            self.device.id, type(exc).__name__, exc, backoff)
                await self._sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self._cfg.reconnect_max_s)
            finally:
                await self._drop_client()
                for chunk in self.stream.break_stream():
                    self._on_chunk(chunk)

    async def _wait_for_device(self, backoff: float) -> BLEDevice:
        """Prefer the device the scanner just heard; after a while try BlueZ's cache."""
        self._advertised.clear()
        if self._ble_device is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._advertised.wait(),
                                       timeout=max(backoff, self._cfg.reconnect_max_s))
        if self._ble_device is not None:
            return self._ble_device
        path = f"/org/bluez/{self._cfg.adapter}/dev_{self.device.mac.replace(':', '_')}"
        return BLEDevice(self.device.mac, None, {"path": path, "props": {}})

    async def _session(self, ble_device: BLEDevice) -> None:
        self._disconnected.clear()
        client = await establish_connection(
            self._client_class, ble_device, self.device.id,
            disconnected_callback=self._on_disconnect, max_attempts=3,
        )
        self._client = client
        self.stats["connects"] += 1
        rate = await self.profile.configure(client, self.device.rate_hz)
        if rate != self.stream.rate_hz:
            for chunk in self.stream.set_rate(rate):
                self._on_chunk(chunk)
        await client.start_notify(self.profile.motion_char, self._on_motion)
        if self.profile.button_char:
            try:
                await client.start_notify(self.profile.button_char, self._on_button_data)
            except BleakError as exc:
                log.info("wearable %s: no button notifications: %s", self.device.id, exc)
        self.connected = True
        log.info("wearable %s connected, streaming at %.0f Hz", self.device.id, rate)
        await self._read_battery(client)
        while not self._stopping.is_set() and not self._disconnected.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._disconnected.wait(), self._cfg.battery_poll_s)
            if not self._disconnected.is_set() and not self._stopping.is_set():
                await self._read_battery(client)
        self.connected = False
        if not self._stopping.is_set():
            self.stats["disconnects"] += 1
            log.warning("wearable %s disconnected; reconnecting", self.device.id)

    async def _read_battery(self, client: Any) -> None:
        try:
            data = bytes(await client.read_gatt_char(BATTERY_LEVEL_CHAR))
        except _CONNECT_ERRORS as exc:
            log.info("wearable %s: battery level unreadable: %s", self.device.id, exc)
            return
        if len(data) == 1 and data[0] <= 100:
            self._on_battery(float(data[0]))

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self.connected = False
        if client is not None:
            with contextlib.suppress(*_CONNECT_ERRORS):
                await asyncio.wait_for(client.disconnect(), timeout=10.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- callbacks (on the loop) ----------------------------------------------------------
    def _on_disconnect(self, _client: Any) -> None:
        self._disconnected.set()

    def _on_motion(self, _sender: Any, data: bytearray) -> None:
        now = self._clock.monotonic()
        try:
            samples = self.profile.decode_motion(bytes(data))
        except DecodeError as exc:
            self.stats["decode_errors"] += 1
            log.debug("wearable %s: bad motion notification: %s", self.device.id, exc)
            return
        for chunk in self.stream.push(samples, now):
            self._on_chunk(chunk)
        if now - self._last_alive >= 1.0:
            self._last_alive = now
            self._on_alive()

    def _on_button_data(self, _sender: Any, data: bytearray) -> None:
        if self.profile.decode_button(bytes(data)):
            self._on_button()
