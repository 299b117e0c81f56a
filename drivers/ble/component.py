"""The BLE driver as an agent component: one scanner, BTHome sensors, wearables, supervision.

Seams (gpiozero-style, constructor arguments defaulting to the real thing):

- ``backend``: ``None`` for the platform's bleak backend (BlueZ), a
  ``BaseBleakScanner`` subclass, or an :class:`AdvertFeed` (the replay radio).
- ``client_class``: the GATT client class for wearables (``BleakClientWithServiceCache``).
- ``recover``: ``async (adapter) -> bool`` adapter recovery (``bluetooth-auto-recovery``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from agent.aio import cancel_all
from agent.clock import read_boot_id
from agent.errors import StoreError
from agent.model import Priority, Reading
from agent.ports import AgentContext, DeviceInfo
from drivers.ble.advert import BTHOME_UUID, Advert
from drivers.ble.bthome_decoder import BTHomeDecoder, DecodeStatus
from drivers.ble.bthome_mapping import BTHomeMapper, Stamp
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.persistence import SupervisionStore
from drivers.ble.replay_backend import AdvertFeed, ReplayScannerBackend
from drivers.ble.scanner import ScannerOwner
from drivers.ble.supervision import Supervisor
from drivers.ble.wearable.link import WearableLink
from drivers.ble.wearable.profile import make_profile
from drivers.ble.wearable.stream import MotionChunk

log = logging.getLogger(__name__)

# Problems with one device are logged at most this often (a wrong bindkey would
# otherwise log on every advert).
_PROBLEM_LOG_S = 600.0


class _BTHomeHandler:
    def __init__(self, device: BleDevice, config: BleConfig) -> None:
        self.device = device
        self.decoder = BTHomeDecoder(bytes.fromhex(device.bindkey) if device.bindkey else None)
        self.mapper = BTHomeMapper(device, config)
        self.counts: dict[str, int] = {s.value: 0 for s in DecodeStatus}
        self.last_problem_log: dict[DecodeStatus, float] = {}


class BleComponent:
    """Component ``ble``: see the module docstring for the seams."""

    name = "ble"

    def __init__(
        self,
        config: BleConfig,
        backend: type[BaseBleakScanner] | AdvertFeed | None = None,
        client_class: type | None = None,
        recover: Callable[[str], Awaitable[bool]] | None = None,
        decode_all_bthome: bool = False,
        watchdog_poll_s: float = 5.0,
        supervision_poll_s: float = 30.0,
    ) -> None:
        self.config = config
        self._backend = backend
        self._client_class = client_class
        self._recover = recover
        self._decode_all = decode_all_bthome
        self._watchdog_poll_s = watchdog_poll_s
        self._supervision_poll_s = supervision_poll_s
        self._ctx: AgentContext | None = None
        self._bthome: dict[str, _BTHomeHandler] = {}
        self._wearables: dict[str, WearableLink] = {}
        self._wearable_mappers: dict[str, BTHomeMapper] = {}
        self.scanner: ScannerOwner | None = None
        self.supervisor: Supervisor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.last_decode: tuple[str, DecodeStatus] | None = None   # for replay reports

    # -- life cycle ----------------------------------------------------------------------
    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        try:
            store: SupervisionStore | None = SupervisionStore(ctx.component_state(self.name))
        except StoreError as exc:
            log.error("BLE supervision: cannot open its saved state: %s (carrying on without)",
                      exc)
            store = None
        self.supervisor = Supervisor(self.config, ctx.submit_event, ctx.publish_device_state,
                                     store=store, boot_id=read_boot_id())
        self.supervisor.start(ctx.clock.monotonic())
        self.supervisor.restore(self.stamp())
        for dev in self.config.devices:
            if dev.kind == "bthome":
                self._bthome[dev.mac] = _BTHomeHandler(dev, self.config)
            else:
                self._add_wearable(dev)
        backend_cls: type[BaseBleakScanner] | None
        options: dict[str, Any] = {}
        if isinstance(self._backend, AdvertFeed):
            backend_cls, options = ReplayScannerBackend, self._backend.scanner_options()
        else:
            backend_cls = self._backend
        recover = self._recover
        if recover is None and backend_cls is None:
            from drivers.ble.adapter_recovery import recover_adapter

            recover = recover_adapter
        self.scanner = ScannerOwner(
            self.config, ctx.clock, self._on_advert, ctx.submit_event, backend=backend_cls,
            backend_options=options, recover=recover, poll_s=self._watchdog_poll_s,
        )
        await self.scanner.start()
        for link in self._wearables.values():
            await link.start()
        self._tasks.append(asyncio.create_task(self._supervise(), name="ble-supervision"))
        log.info("BLE driver started: %d BTHome device(s), %d wearable(s)",
                 len(self._bthome), len(self._wearables))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        for link in self._wearables.values():
            await link.stop()
        if self.scanner is not None:
            await self.scanner.stop()
        if self.supervisor is not None and self._ctx is not None:
            self.supervisor.save(self.stamp().mono, everything=True)

    def devices(self) -> list[DeviceInfo]:
        out = []
        for h in (self.supervisor.health.values() if self.supervisor else []):
            details: dict[str, Any] = {"address": h.device.mac, "room": h.device.room,
                                       "role": h.device.role}
            handler = self._bthome.get(h.device.mac)
            if handler is not None:
                details["decode"] = dict(handler.counts)
                details["encrypted"] = h.device.bindkey is not None
            link = self._wearables.get(h.device.mac)
            if link is not None:
                details.update(connected=link.connected, profile=link.profile.name,
                               rate_hz=link.stream.rate_hz, gaps=link.stream.gaps,
                               **link.stats)
            out.append(DeviceInfo(
                device_id=h.device.id, kind=h.device.kind, driver="ble", online=h.online,
                last_seen_wall=h.last_seen_wall, battery_pct=h.battery_pct, rssi=h.rssi,
                details=details,
            ))
        return out

    def stamp(self) -> Stamp:
        clock = self._require_ctx().clock
        return Stamp(clock.monotonic(), clock.wall(), clock.synced())

    def check_supervision(self) -> None:
        """Raise ``device_offline`` for silent devices now (the periodic task calls this)."""
        if self.supervisor is not None:
            self.supervisor.check(self.stamp())

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._supervision_poll_s)
            try:
                self.check_supervision()
            except Exception:
                log.exception("BLE supervision check failed")

    def _require_ctx(self) -> AgentContext:
        if self._ctx is None:
            raise RuntimeError("BleComponent used before start()")
        return self._ctx

    # -- adverts -------------------------------------------------------------------------
    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        handler = self._bthome.get(address)
        if handler is None:
            link = self._wearables.get(address)
            if link is not None:
                link.advert_seen(device)
                return
            if not (self._decode_all and BTHOME_UUID in adv.service_data):
                return      # not ours: ignored cheaply
            handler = self._auto_add(address)
        stamp = self.stamp()
        advert = Advert(address=address, rssi=adv.rssi, ts=stamp.wall, mono=stamp.mono,
                        name=adv.local_name, service_data=adv.service_data,
                        manufacturer_data=adv.manufacturer_data)
        self.handle_bthome(handler, advert, stamp)

    def _auto_add(self, address: str) -> _BTHomeHandler:
        dev = BleDevice(id="bthome-" + address.replace(":", "").lower(), address=address,
                        kind="bthome")
        handler = _BTHomeHandler(dev, self.config)
        self._bthome[address] = handler
        if self.supervisor is not None:
            self.supervisor.add_device(dev)
        return handler

    def handle_bthome(self, handler: _BTHomeHandler, advert: Advert, stamp: Stamp) -> None:
        ctx = self._require_ctx()
        update = handler.decoder.decode(advert)
        if update.ok and handler.mapper.is_duplicate(advert, update):
            handler.counts[DecodeStatus.DUPLICATE.value] += 1
            self.last_decode = (advert.address, DecodeStatus.DUPLICATE)
            return
        handler.counts[update.status.value] += 1
        self.last_decode = (advert.address, update.status)
        if not update.ok:
            self._problem(handler, update.status, stamp)
            return
        assert self.supervisor is not None
        outputs = handler.mapper.map(update, stamp)
        self.supervisor.seen(handler.device.id, stamp, rssi=advert.rssi,
                             battery_pct=handler.mapper.state.battery_pct)
        for reading in outputs:
            ctx.emit_reading(reading)

    def _problem(self, handler: _BTHomeHandler, status: DecodeStatus, stamp: Stamp) -> None:
        if status is DecodeStatus.DUPLICATE:
            return
        last = handler.last_problem_log.get(status)
        if last is not None and stamp.mono - last < _PROBLEM_LOG_S:
            return
        handler.last_problem_log[status] = stamp.mono
        dev = handler.device
        if status is DecodeStatus.NO_KEY:
            log.error("BLE device %s (%s) sends encrypted BTHome but has no bindkey "
                      "configured: its readings are ignored", dev.id, dev.mac)
        elif status is DecodeStatus.DECRYPT_FAILED:
            log.error("BLE device %s (%s): BTHome decryption failed (wrong bindkey, or a "
                      "replayed/tampered advert): its readings are ignored", dev.id, dev.mac)
        elif status is DecodeStatus.DOWNGRADE:
            log.error("BLE device %s (%s) sent a plaintext advert although a bindkey is "
                      "configured: refused", dev.id, dev.mac)
        else:
            log.warning("BLE device %s (%s): advert is not valid BTHome: ignored",
                        dev.id, dev.mac)

    # -- wearables -----------------------------------------------------------------------
    def _add_wearable(self, dev: BleDevice) -> None:
        ctx = self._require_ctx()
        mapper = BTHomeMapper(dev, self.config)     # battery levels as measurements
        self._wearable_mappers[dev.mac] = mapper
        base = {"room": dev.room, "role": dev.role, "source": "ble"}

        def on_chunk(chunk: MotionChunk) -> None:
            c = ctx.clock
            ctx.emit_reading(Reading(
                device_id=dev.id, type="motion_samples", priority=Priority.TELEMETRY,
                data={**chunk.as_data(), **base}, mono=c.monotonic(), wall=c.wall(),
                publish=False,
            ))

        def on_alive() -> None:
            if self.supervisor is not None:
                self.supervisor.seen(dev.id, self.stamp())

        def on_battery(pct: float) -> None:
            stamp = self.stamp()
            for reading in mapper.battery_pct(pct, stamp):
                ctx.emit_reading(reading)
            if self.supervisor is not None:
                self.supervisor.battery(dev.id, pct, stamp)

        def on_button() -> None:
            c = ctx.clock
            ctx.emit_reading(Reading(
                device_id=dev.id, type="cancel", priority=Priority.INFO,
                data={**base, "button": "wearable"}, mono=c.monotonic(), wall=c.wall(),
                publish=False,
            ))

        assert dev.profile is not None
        self._wearables[dev.mac] = WearableLink(
            dev, self.config, make_profile(dev.profile), ctx.clock, on_chunk=on_chunk,
            on_alive=on_alive, on_battery=on_battery, on_button=on_button,
            client_class=self._client_class,
        )

    def wearable(self, device_id: str) -> WearableLink | None:
        for link in self._wearables.values():
            if link.device.id == device_id:
                return link
        return None
