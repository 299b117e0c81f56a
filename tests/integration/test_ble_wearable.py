"""The wearable motion stream through the driver with a fake GATT client and peripheral
(a simulated Thingy:52): connect via bleak-retry-connector, rate configuration, samples as
``motion_samples`` readings, dropped notifications and link loss flagged as gaps,
reconnects with backoff, battery (0x180F) and the wearable's button."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent.clock import ManualClock
from agent.conditions import ConditionsDetector
from agent.model import Priority, Reading
from drivers.ble.advert import Advert
from drivers.ble.component import BleComponent
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.replay_backend import AdvertFeed
from drivers.ble.tools.fake_gatt import FakeGattClient, FakePeripheral
from drivers.ble.tools.replay import CollectingContext
from drivers.ble.wearable.profile import MotionSample

ADDR = "D1:5E:A5:00:00:01"
WRIST = BleDevice(id="wrist", address=ADDR, kind="wearable", profile="thingy52", rate_hz=50.0,
                  room="", role="pendant_wearer")
CFG = BleConfig(devices=(WRIST,), reconnect_min_s=0.01, reconnect_max_s=5.0,
                battery_poll_s=3600.0)
DEADLINE = 8.0


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


def sample(i: int) -> MotionSample:
    # a gentle 1 Hz sway around 1 g, in values the Thingy's Q6.10 / Q11.5 can carry
    return MotionSample((0.125 * math.sin(2 * math.pi * i / 50), 0.0, 1.0),
                        (0.0, 30.0 * math.cos(2 * math.pi * i / 50), 0.0))


class Rig:
    def __init__(self, comp: BleComponent, feed: AdvertFeed, ctx: CollectingContext,
                 clock: ManualClock, per: FakePeripheral) -> None:
        self.comp, self.feed, self.ctx, self.clock, self.per = comp, feed, ctx, clock, per
        self.i = 0

    def advertise(self) -> None:
        self.feed.push(Advert(address=ADDR, rssi=-55, ts=self.clock.wall(),
                              mono=self.clock.monotonic(), name="Thingy"), details=self.per)

    def stream(self, n: int) -> int:
        """n samples at 50 Hz on the manual clock; returns how many were delivered."""
        sent = 0
        for _ in range(n):
            self.clock.advance(0.02)
            sent += self.per.send_samples([sample(self.i)])
            self.i += 1
        return sent

    def chunks(self) -> list[Reading]:
        return [r for r in self.ctx.readings if r.type == "motion_samples"]


def run(scenario: Callable[[Rig], Awaitable[None]], per: FakePeripheral | None = None) -> None:
    async def main() -> None:
        clock = ManualClock()
        feed = AdvertFeed()
        ctx = CollectingContext(clock)
        p = per or FakePeripheral(ADDR, motion_freq_hz=10)
        comp = BleComponent(CFG, backend=feed, client_class=FakeGattClient,
                            watchdog_poll_s=0.005, supervision_poll_s=3600.0)
        await ConditionsDetector(CFG).start(ctx)        # as the registry builds them
        await comp.start(ctx)
        try:
            await wait_for(lambda: feed.scanning, "the scanner")
            rig = Rig(comp, feed, ctx, clock, p)
            await scenario(rig)
        finally:
            await comp.stop()
            ctx.close()
        assert not p.connected, "the wearable was not disconnected on stop"
    asyncio.run(main())


def test_streams_motion_samples_at_the_configured_rate() -> None:
    async def scenario(rig: Rig) -> None:
        rig.advertise()
        link = rig.comp.wearable("wrist")
        assert link is not None
        await wait_for(lambda: link.connected, "the connection")
        assert rig.per.motion_freq_hz == 50          # the Thingy was set to 50 Hz
        assert rig.stream(100) == 100
        chunks = rig.chunks()
        assert len(chunks) == 4
        c = chunks[0]
        assert (c.priority, c.publish, c.device_id) == (Priority.TELEMETRY, False, "wrist")
        assert c.data["rate_hz"] == 50.0 and c.data["gap_before"] is False
        assert len(c.data["acc_g"]) == 25 and c.data["gyro_dps"] is not None
        assert c.data["acc_g"][0][2] == 1.0
        assert abs(c.data["gyro_dps"][0][1] - 30.0) < 0.05
        assert [r.data["chunk"] for r in chunks] == [0, 1, 2, 3]
        assert chunks[1].data["t0"] - chunks[0].data["t0"] == pytest.approx(0.5, abs=0.01)
        assert c.data["role"] == "pendant_wearer" and c.data["source"] == "ble"
        (info,) = rig.comp.devices()
        assert info.online is True and info.battery_pct == 87 and info.details["connected"]
        dev_id, state = rig.ctx.device_states[-1]
        assert dev_id == "wrist"
        assert state == {"kind": "wearable", "last_seen": state["last_seen"], "battery": 87,
                         "rssi": None, "online": True}
        assert state["last_seen"].endswith("Z")

    run(scenario)


def test_dropped_notifications_are_flagged_as_a_gap() -> None:
    async def scenario(rig: Rig) -> None:
        rig.advertise()
        link = rig.comp.wearable("wrist")
        assert link is not None
        await wait_for(lambda: link.connected, "the connection")
        rig.stream(30)
        rig.per.drop_notifications = 20                  # 0.4 s lost in the air
        assert rig.stream(20) == 0
        rig.stream(50)
        chunks = rig.chunks()
        gaps = [c.data["gap_before"] for c in chunks]
        assert gaps.count(True) == 1
        first_after = gaps.index(True)
        assert sum(len(c.data["acc_g"]) for c in chunks[:first_after]) == 30
        assert link.stream.gaps == 1 and abs(link.stream.lost_estimate - 20) <= 1

    run(scenario)


def test_link_loss_reconnects_and_flags_the_gap() -> None:
    async def scenario(rig: Rig) -> None:
        rig.advertise()
        link = rig.comp.wearable("wrist")
        assert link is not None
        await wait_for(lambda: link.connected, "the connection")
        rig.stream(40)
        rig.per.refuse_connections = 2                   # the next attempts fade out
        rig.per.drop_link()
        await wait_for(lambda: rig.per.connects == 2 and link.connected, "the reconnect")
        assert rig.per.refuse_connections == 0           # bleak-retry-connector retried
        rig.stream(25)
        chunks = rig.chunks()
        assert [len(c.data["acc_g"]) for c in chunks] == [25, 15, 25]
        assert [c.data["gap_before"] for c in chunks] == [False, False, True]
        assert link.stats["disconnects"] == 1 and link.stats["connects"] == 2

    run(scenario)


def test_unreachable_wearable_backs_off_and_goes_offline() -> None:
    async def scenario(rig: Rig) -> None:
        link = rig.comp.wearable("wrist")
        assert link is not None
        rig.per.refuse_connections = 10**6               # in a drawer, out of range
        rig.advertise()
        await wait_for(lambda: link.stats["connect_failures"] >= 1, "a failed round")
        assert not link.connected
        rig.clock.advance(CFG.wearable_offline_s)
        rig.comp.check_supervision()
        (off,) = [e for e in rig.ctx.events if e.type == "device_offline"]
        assert off.device_id == "wrist" and off.data["kind"] == "wearable"
        rig.per.refuse_connections = 0
        await wait_for(lambda: link.connected, "the connection once reachable", timeout=10)
        rig.stream(5)
        assert [e.type for e in rig.ctx.events].count("device_online") == 1

    run(scenario)


def test_low_battery_and_the_button() -> None:
    async def scenario(rig: Rig) -> None:
        rig.advertise()
        link = rig.comp.wearable("wrist")
        assert link is not None
        await wait_for(lambda: link.connected, "the connection")
        (low,) = [e for e in rig.ctx.events if e.type == "battery_low"]
        assert low.priority is Priority.WARNING and low.data["battery_pct"] == 12
        assert rig.per.press_button()
        (cancel,) = [r for r in rig.ctx.readings if r.type == "cancel"]
        assert cancel.priority is Priority.INFO and cancel.publish is False
        assert cancel.data["source"] == "ble" and cancel.device_id == "wrist"

    run(scenario, per=FakePeripheral(ADDR, battery_pct=12))
