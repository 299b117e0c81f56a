"""Run recorded adverts through the real BLE driver, time-compressed.

``tec-agent ble replay`` and the tests use this: the capture file's lines go through the
same :class:`BleComponent` (scanner owner, decoders, mapping, supervision), with the
device-condition rules (:class:`~agent.conditions.ConditionsDetector`), on the replay
radio (:class:`AdvertFeed`), with a :class:`ManualClock` set from each line's ``ts``, into
a :class:`CollectingContext` that keeps (or forwards) what the agent would have been given.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agent.clock import ManualClock
from agent.conditions import ConditionsDetector
from agent.errors import DecodeError
from agent.model import MEASUREMENT, Event, Reading, iso_utc
from agent.offline import OfflineContext
from drivers.ble.advert import advert_from_json_line
from drivers.ble.bthome_decoder import DecodeStatus
from drivers.ble.component import BleComponent
from drivers.ble.config import BleConfig
from drivers.ble.replay_backend import AdvertFeed


class CollectingContext(OfflineContext):
    """The offline context as the BLE replay and driver tests use it: readings kept.

    ``on_reading`` / ``on_event`` see each item as it arrives. There is no store or
    uplink: this is what replay prints and what driver tests assert on.
    """

    def __init__(self, clock: Any, hub_id: str = "replay",
                 on_reading: Callable[[Reading], None] | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        super().__init__(clock, hub_id, keep_readings=True, on_reading=on_reading,
                         on_event=on_event)


def reading_json(reading: Reading) -> dict[str, Any]:
    return {
        "record": "reading",
        "device_id": reading.device_id,
        "type": reading.type,
        "priority": reading.priority.label,
        "ts": iso_utc(reading.wall),
        "publish": reading.publish,
        "data": dict(reading.data),
    }


def event_json(event: Event, hub_id: str) -> dict[str, Any]:
    return {"record": "event", **event.to_json_dict(hub_id)}


@dataclass
class ReplayStats:
    lines: int = 0
    adverts: int = 0
    malformed: int = 0
    undecodable: int = 0
    duplicates: int = 0
    readings: int = 0
    events: int = 0
    not_configured: int = 0     # with a config: adverts of addresses it does not name


def replay_config(config: BleConfig | None) -> BleConfig:
    """The driver config a replay runs with: BTHome devices only (a wearable needs a live
    connection), no stall restarts on gaps in the file, and without a config every
    measurement printed (no telemetry rate limit)."""
    if config is None:
        return BleConfig(telemetry_interval_s=0.0, stall_timeout_s=3600.0)
    return dataclasses.replace(
        config, devices=tuple(d for d in config.devices if d.kind == "bthome"),
        stall_timeout_s=3600.0,
    )


async def replay_lines(
    lines: Iterable[str],
    config: BleConfig | None,
    hub_id: str,
    on_reading: Callable[[Reading], None],
    on_event: Callable[[Event], None],
    on_problem: Callable[[int, str], None],
) -> ReplayStats:
    stats = ReplayStats()
    clock = ManualClock(mono=0.0, wall=0.0, synced=True)
    base_ts: float | None = None
    feed = AdvertFeed()
    def shown(reading: Reading) -> None:
        if reading.type != MEASUREMENT:     # the rules' input, not what the driver reports
            on_reading(reading)

    ctx = CollectingContext(clock, hub_id, on_reading=shown, on_event=on_event)
    ble_config = replay_config(config)
    configured = {d.address.upper() for d in ble_config.devices}
    conditions = ConditionsDetector(ble_config)
    comp = BleComponent(ble_config, backend=feed,
                        decode_all_bthome=config is None, watchdog_poll_s=3600.0,
                        supervision_poll_s=3600.0)
    await conditions.start(ctx)
    await comp.start(ctx)
    try:
        await _until(lambda: feed.scanning)
        for n, line in enumerate(lines, start=1):
            stats.lines = n
            if not line.strip():
                continue
            try:
                advert = advert_from_json_line(line)
            except DecodeError as exc:
                stats.malformed += 1
                on_problem(n, f"malformed line: {exc}")
                continue
            if base_ts is None:
                base_ts = advert.ts
                clock.step_wall(advert.ts - clock.wall())
            step = advert.ts - clock.wall()
            if step > 0:
                clock.advance(step)     # time-compressed: no real waiting
            stats.adverts += 1
            if config is not None and advert.address.upper() not in configured:
                stats.not_configured += 1
            comp.last_decode = None
            if not feed.push(advert):
                await _until(lambda: feed.scanning)
                feed.push(advert)
            decoded = comp.last_decode
            if decoded is not None and decoded[0] == advert.address:
                status = decoded[1]
                if status is DecodeStatus.DUPLICATE:
                    stats.duplicates += 1
                elif status is not DecodeStatus.OK:
                    stats.undecodable += 1
                    on_problem(n, f"{advert.address}: undecodable BTHome payload ({status.value})")
            comp.check_supervision()
            await asyncio.sleep(0)
    finally:
        await comp.stop()
        await conditions.stop()
        ctx.close()
    stats.readings = sum(1 for r in ctx.readings if r.type != MEASUREMENT)
    stats.events = len(ctx.events)
    return stats


async def _until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise TimeoutError("the replay scanner did not start")
        await asyncio.sleep(0.001)
