"""The BLE driver (BleComponent) on the replay radio: a real bleak ``BaseBleakScanner``
backend fed recorded BTHome adverts, a ManualClock, and a collecting AgentContext.
Covers decoding through the scanner, encryption, unknown devices, garbage, supervision,
stall restarts and adapter recovery, an absent adapter, and passive/active scanning."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bleak.exc import BleakError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import ManualClock
from agent.conditions import ConditionsDetector
from agent.model import Event, Priority, Reading
from drivers.ble.advert import BTHOME_UUID, Advert
from drivers.ble.component import BleComponent
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.replay_backend import AdvertFeed
from drivers.ble.tools.replay import CollectingContext

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data" / "ble" /
                      "bthome_vectors.json").read_text())
REC = {v["name"]: v for v in VECTORS["recorded"]}
BUTTON = REC["shelly_blu_button1_encrypted_press"]
WINDOW_ADDR = "C0:FF:EE:00:00:01"
DEADLINE = 5.0

PENDANT = BleDevice(id="pendant", address=BUTTON["address"], kind="bthome",
                    bindkey=BUTTON["bindkey"], room="bedroom")
WINDOW = BleDevice(id="front-door", address=WINDOW_ADDR, kind="bthome", room="hall",
                   role="main_entrance_door")


def hexb(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def advert(address: str, payload: bytes, clock: ManualClock, rssi: int = -60) -> Advert:
    return Advert(address=address, rssi=rssi, ts=clock.wall(), mono=clock.monotonic(),
                  name="SBBT-002C", service_data={BTHOME_UUID: payload})


async def wait_for(pred: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


Scenario = Callable[[BleComponent, AdvertFeed, CollectingContext, ManualClock], Awaitable[None]]


def run(scenario: Scenario, config: BleConfig, feed: AdvertFeed | None = None,
        **component_kw: Any) -> None:
    async def main() -> None:
        clock = ManualClock(mono=1000.0, wall=1_764_000_000.0)
        f = feed or AdvertFeed()
        ctx = CollectingContext(clock, "hub-test")
        comp = BleComponent(config, backend=f, watchdog_poll_s=0.005,
                            supervision_poll_s=3600.0, **component_kw)
        await ConditionsDetector(config).start(ctx)     # as the registry builds them
        await comp.start(ctx)
        try:
            await wait_for(lambda: f.scanning, "the scanner to start")
            await scenario(comp, f, ctx, clock)
        finally:
            await comp.stop()
            ctx.close()
        assert not f.scanning, "the scanner was not stopped"
    asyncio.run(main())


def readings(ctx: CollectingContext, type_: str) -> list[Reading]:
    return [r for r in ctx.readings if r.type == type_]


def events(ctx: CollectingContext, type_: str) -> list[Event]:
    return [e for e in ctx.events if e.type == type_]


def test_encrypted_button_press_becomes_one_pendant_alarm() -> None:
    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        a = advert(PENDANT.mac, hexb(BUTTON["payload"]), clock)
        assert feed.push(a) == 1
        for _ in range(5):            # the device repeats the packet for a while
            clock.advance(2.0)
            feed.push(advert(PENDANT.mac, hexb(BUTTON["payload"]), clock))
        clock.advance(30.0)           # beyond bthome-ble's 4 s, inside our window
        feed.push(advert(PENDANT.mac, hexb(BUTTON["payload"]), clock))
        (p,) = readings(ctx, "pendant")
        assert p.priority is Priority.ALARM and p.publish
        assert p.data["contact_id"] == 101 and p.data["room"] == "bedroom"
        assert p.device_id == "pendant"
        (info,) = [d for d in comp.devices() if d.device_id == "pendant"]
        assert info.online is True and info.battery_pct == 100 and info.rssi == -60
        assert info.details["decode"]["duplicate"] == 6
        assert ctx.device_states[0] == ("pendant", {
            "kind": "bthome", "last_seen": "2025-11-24T16:00:00.000Z", "battery": 100,
            "rssi": -60, "online": True})

    run(scenario, BleConfig(devices=(PENDANT, WINDOW)))


def test_wrong_bindkey_yields_nothing_and_is_counted() -> None:
    wrong = BleDevice(id="pendant", address=PENDANT.address, kind="bthome",
                      bindkey="231d39c1d7cc1ab1aee224cd096db932")

    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        feed.push(advert(wrong.mac, hexb(BUTTON["payload"]), clock))
        clock.advance(1)
        feed.push(advert(wrong.mac, hexb("44000b015e3a01"), clock))   # plaintext: downgrade
        assert ctx.readings == [] and ctx.device_states == []
        (info,) = comp.devices()
        assert info.details["decode"]["decrypt_failed"] == 1
        assert info.details["decode"]["downgrade"] == 1
        assert info.online is None            # never heard properly

    run(scenario, BleConfig(devices=(wrong,)))


def test_recorded_window_and_unconfigured_devices() -> None:
    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        feed.push(advert(WINDOW_ADDR, hexb(REC["shelly_blu_door_window_open"]["payload"]), clock))
        feed.push(advert("11:22:33:44:55:66", hexb(REC["shelly_button_press"]["payload"]), clock))
        (door,) = ctx.readings
        assert (door.type, door.device_id, door.data["role"]) == (
            "door_open", "front-door", "main_entrance_door")
        assert comp.scanner is not None and comp.scanner.stats["adverts"] == 2

    run(scenario, BleConfig(devices=(PENDANT, WINDOW)))


def test_adverts_from_another_thread_are_bridged_to_the_loop() -> None:
    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        loop_thread = threading.get_ident()
        seen: list[int] = []
        ctx.subscribe_readings(lambda r: seen.append(threading.get_ident()))
        t = threading.Thread(target=feed.push, args=(
            advert(WINDOW_ADDR, hexb(REC["shelly_blu_door_window_open"]["payload"]), clock),))
        t.start()
        t.join()
        await wait_for(lambda: ctx.readings, "the reading from the other thread")
        assert seen == [loop_thread]

    run(scenario, BleConfig(devices=(WINDOW,)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(st.binary(max_size=32), min_size=1, max_size=40))
def test_garbage_adverts_never_stop_the_driver(payloads: list[bytes]) -> None:
    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        for p in payloads:
            clock.advance(5.0)
            feed.push(advert(WINDOW_ADDR, p, clock))
            feed.push(advert(PENDANT.mac, p, clock))
        clock.advance(5.0)
        feed.push(advert(PENDANT.mac, hexb(BUTTON["payload"]), clock))
        assert len(readings(ctx, "pendant")) == 1      # still decoding after the garbage
        assert feed.scanning

    run(scenario, BleConfig(devices=(PENDANT, WINDOW)))


def test_supervision_offline_and_back_online_through_the_driver() -> None:
    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        feed.push(advert(WINDOW_ADDR, hexb("4000012d01"), clock))
        clock.advance(1799)
        comp.check_supervision()
        assert events(ctx, "device_offline") == []
        clock.advance(1)
        comp.check_supervision()
        (off,) = events(ctx, "device_offline")
        assert off.device_id == "front-door" and off.priority is Priority.WARNING
        assert ctx.device_states[-1][1]["online"] is False
        clock.advance(60)
        feed.push(advert(WINDOW_ADDR, hexb("4000022d00"), clock))
        (on,) = events(ctx, "device_online")
        assert on.device_id == "front-door"
        assert [r.type for r in ctx.readings] == ["door_open", "door_close"]

    dev = BleDevice(id="front-door", address=WINDOW_ADDR, kind="bthome", interval_s=600.0)
    run(scenario, BleConfig(devices=(dev,), stall_timeout_s=100000.0))


def test_stall_restarts_the_scanner_then_recovers_the_adapter() -> None:
    calls: list[str] = []

    async def recover(adapter: str) -> bool:
        calls.append(adapter)
        return True

    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        scanner = comp.scanner
        assert scanner is not None
        clock.advance(89)
        feed.push(advert(WINDOW_ADDR, hexb("4000012d01"), clock))   # keeps it alive
        clock.advance(89)
        await asyncio.sleep(0.05)
        assert scanner.stats["restarts"] == 0 and feed.starts == 1
        clock.advance(2)                                             # 91 s of silence
        await wait_for(lambda: feed.starts == 2, "the scanner restart")
        assert scanner.stats["restarts"] == 1 and calls == []
        feed.silent = True                        # the radio is wedged: nothing after restart 1
        clock.advance(91)
        await wait_for(lambda: feed.starts == 3, "restart 2")
        assert calls == []                        # two restarts were tried first
        clock.advance(91)
        await wait_for(lambda: calls, "the adapter recovery")
        (ev,) = events(ctx, "ble_adapter_recovery")
        assert ev.priority is Priority.WARNING and ev.device_id == "ble-hci0"
        assert ev.data["ok"] is True and ev.data["recoveries"] == 1
        assert ev.data["reason"] == "stall" and ev.data["scanner_restarts"] == 3
        assert calls == ["hci0"] and scanner.stats["recoveries"] == 1
        await wait_for(lambda: feed.starts == 4, "the scanner after recovery")
        feed.silent = False
        feed.push(advert(WINDOW_ADDR, hexb("4000022d00"), clock))
        assert readings(ctx, "door_close")

    run(scenario, BleConfig(devices=(WINDOW,), restarts_before_recovery=2), recover=recover)


def test_absent_adapter_is_an_error_and_a_retry_loop_not_a_crash() -> None:
    feed = AdvertFeed()
    # Each attempt tries passive, then active: 6 failures are 3 failed attempts.
    feed.fail_next_starts(BleakError("No Bluetooth adapters found."), times=6)

    async def main() -> None:
        clock = ManualClock()
        ctx = CollectingContext(clock)
        comp = BleComponent(BleConfig(devices=(WINDOW,), adapter_retry_min_s=0.01,
                                      adapter_retry_max_s=0.02), backend=feed,
                            watchdog_poll_s=0.005)
        await comp.start(ctx)          # returns although the adapter is missing
        try:
            await wait_for(lambda: feed.scanning, "scanning once the adapter appears")
            (ev,) = events(ctx, "ble_adapter_unavailable")   # once per outage, not per retry
            assert ev.priority is Priority.WARNING and "No Bluetooth adapters" in ev.data["error"]
            assert comp.scanner is not None and comp.scanner.stats["start_failures"] == 3
            feed.push(advert(WINDOW_ADDR, hexb("4000012d01"), clock))
            assert readings(ctx, "door_open")
        finally:
            await comp.stop()
            ctx.close()
    asyncio.run(main())


def test_passive_where_supported_active_otherwise() -> None:
    async def noop(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                   clock: ManualClock) -> None:
        assert comp.scanner is not None

    passive = AdvertFeed(passive_supported=True)
    run(noop, BleConfig(devices=(WINDOW,)), feed=passive)
    assert passive.modes == ["passive"]
    active = AdvertFeed(passive_supported=False)
    run(noop, BleConfig(devices=(WINDOW,)), feed=active)
    assert active.modes == ["active"]
    forced = AdvertFeed(passive_supported=True)
    run(noop, BleConfig(devices=(WINDOW,), scanning_mode="active"), feed=forced)
    assert forced.modes == ["active"]


def test_thermometer_telemetry_cold_home_and_battery_low_through_the_driver() -> None:
    thermo = BleDevice(id="lounge-thermo", address="A4:C1:38:8D:18:B2", kind="bthome",
                       room="lounge")

    async def scenario(comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                       clock: ManualClock) -> None:
        feed.push(advert(thermo.mac, hexb(REC["atc_temperature_minus_7_7"]["payload"]), clock))
        clock.advance(600)
        feed.push(advert(thermo.mac, hexb(REC["atc_temperature_minus_7_7"]["payload"]), clock))
        clock.advance(60)
        feed.push(advert(thermo.mac, hexb("400010010f"), clock))     # battery 15 %
        (tel, *_) = readings(ctx, "telemetry")
        assert tel.data["temperature"] == -7.7 and tel.data["units"]["temperature"] == "°C"
        (cold,) = events(ctx, "cold_home")
        assert cold.data["temperature_c"] == -7.7 and cold.data["room"] == "lounge"
        (low,) = events(ctx, "battery_low")
        assert low.data["battery_pct"] == 15
        assert ctx.device_states[-1][1]["battery"] == 15

    run(scenario, BleConfig(devices=(thermo,), cold_home_delay_s=600.0))
