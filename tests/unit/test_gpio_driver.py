"""GpioDriver on gpiozero's MockFactory, against a small fake AgentContext: inputs, and the
status LED and buzzer patterns.

Pins are driven from a worker thread (as gpiozero's own edge threads would) while the
agent's loop runs; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.model import Priority
from agent.ports import AgentState, Component
from drivers.gpio import outputs as o
from drivers.gpio.config import GpioConfig, GpioDevice
from drivers.gpio.driver import GpioDriver
from tests.fake_context import FakeContext

DEADLINE_S = 3.0


async def wait_until(pred: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Drive pins from another thread, like a real edge thread."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def make(devices: list[GpioDevice], **kw: Any) -> tuple[GpioDriver, MockFactory]:
    factory = MockFactory()
    return GpioDriver(GpioConfig(pin_factory="mock", devices=tuple(devices), **kw),
                      pin_factory=factory), factory


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def test_driver_is_a_component() -> None:
    driver, _ = make([])
    assert isinstance(driver, Component)
    assert driver.name == "gpio"


def test_mock_factory_from_config_is_exposed_before_start() -> None:
    driver = GpioDriver(GpioConfig(pin_factory="mock"))
    assert isinstance(driver.pin_factory, MockFactory)


def test_pull_cord_raises_alarm_with_contract_fields() -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="cord-1", kind="pull_cord", pin=17,
                                           room="bathroom", role="bathroom_cord")])
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            pin = factory.pin(17)
            assert pin.state is True               # pull-up: idle contact reads high
            t0 = time.monotonic()
            await in_thread(pin.drive_low)         # cord pulled: contact closes to ground
            await wait_until(lambda: len(ctx.readings) == 1)
            r = ctx.readings[0]
            assert r.type == "pull_cord" and r.priority == Priority.ALARM and r.publish
            assert r.device_id == "cord-1"
            assert dict(r.data) == {"contact_id": 101, "room": "bathroom",
                                    "role": "bathroom_cord", "source": "gpio"}
            assert t0 <= r.mono <= time.monotonic()
            await in_thread(pin.drive_high)        # released: no second event
            await asyncio.sleep(0.1)
            assert ctx.types() == ["pull_cord"]
            assert ctx.device_states[-1][1]["state"] == "idle"
        finally:
            await driver.stop()

    run(body)


def test_door_open_close_and_bounce_is_debounced() -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="front", kind="door", pin=27, bounce_s=0.05)])
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            pin = factory.pin(27)
            # The mock pull-up leaves the contact open at start; close the door first.
            await in_thread(pin.drive_low)
            await wait_until(lambda: ctx.types() == ["door_close"])
            ctx.readings.clear()

            def open_with_bounce() -> None:
                for _ in range(5):
                    pin.drive_high()
                    pin.drive_low()
                pin.drive_high()

            await in_thread(open_with_bounce)
            await wait_until(lambda: ctx.types() == ["door_open"])
            await asyncio.sleep(0.1)               # lockout over: still just one
            assert ctx.types() == ["door_open"]
            assert ctx.readings[0].priority == Priority.INFO
            await in_thread(pin.drive_low)
            await wait_until(lambda: ctx.types() == ["door_open", "door_close"])
        finally:
            await driver.stop()

    run(body)


def test_pir_motion_and_clear() -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="pir-hall", kind="pir", pin=4, room="hall",
                                           sample_rate_hz=100.0)])
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            pin = factory.pin(4)
            await asyncio.sleep(0.05)              # first sample taken
            await in_thread(pin.drive_high)
            await wait_until(lambda: "motion" in ctx.types())
            motion = ctx.readings[0]
            assert motion.priority == Priority.TELEMETRY and motion.publish
            assert motion.data["state"] == "detected" and motion.data["room"] == "hall"
            await in_thread(pin.drive_low)
            await wait_until(lambda: ctx.types() == ["motion", "motion_clear"])
            assert ctx.readings[1].publish is False
        finally:
            await driver.stop()

    run(body)


@pytest.mark.parametrize("kind,rtype,code", [("flood", "flood", 154), ("smoke", "smoke", 111),
                                             ("button", "button", 101)])
def test_dry_contact_alarms(kind: str, rtype: str, code: int) -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id=f"{kind}-1", kind=kind, pin=22)])
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            await in_thread(factory.pin(22).drive_low)
            await wait_until(lambda: len(ctx.readings) == 1)
            r = ctx.readings[0]
            assert (r.type, r.priority, r.data["contact_id"]) == (rtype, Priority.ALARM, code)
        finally:
            await driver.stop()

    run(body)


def test_alarm_contact_already_closed_at_start_is_raised() -> None:
    async def body() -> None:
        factory = MockFactory()
        driver = GpioDriver(GpioConfig(devices=(GpioDevice(id="f", kind="flood", pin=5,
                                                           active_high=False),)),
                            pin_factory=factory)
        factory.pin(5).drive_low()                 # external pull; already wet at boot
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            await wait_until(lambda: ctx.types() == ["flood"])
            assert ctx.readings[0].data["at_start"] is True
        finally:
            await driver.stop()

    run(body)


@pytest.mark.parametrize("kind,what", [("bed_mat", "bed"), ("chair_mat", "chair")])
def test_mat_reports_after_settle(kind: str, what: str) -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="mat", kind=kind, pin=6, settle_s=0.3,
                                           bounce_s=0.01)])
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            pin = factory.pin(6)

            def lie_down() -> float:
                t = time.monotonic()
                pin.drive_low()
                return t

            t_edge = await in_thread(lie_down)
            await wait_until(lambda: ctx.types() == [f"{what}_occupied"])
            assert time.monotonic() - t_edge >= 0.3          # not before the settle time
            assert ctx.readings[0].mono - t_edge < 0.1       # but stamped at the edge

            def roll_over() -> None:                         # off the mat for 50 ms
                pin.drive_high()
                time.sleep(0.05)
                pin.drive_low()

            await in_thread(roll_over)
            await asyncio.sleep(0.5)
            assert ctx.types() == [f"{what}_occupied"]
            await in_thread(pin.drive_high)
            await wait_until(lambda: ctx.types() == [f"{what}_occupied", f"{what}_vacated"])
        finally:
            await driver.stop()

    run(body)


def test_cancel_button_short_and_long_press() -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="hub-btn", kind="cancel_button", pin=26,
                                           hold_s=0.5, bounce_s=0.01)])
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            pin = factory.pin(26)
            await in_thread(pin.drive_low)
            await asyncio.sleep(0.05)
            await in_thread(pin.drive_high)
            await wait_until(lambda: ctx.types() == ["cancel"])
            cancel = ctx.readings[0]
            assert cancel.priority == Priority.INFO and cancel.publish is False
            assert cancel.data["source"] == "gpio"
            await in_thread(pin.drive_low)
            await wait_until(lambda: ctx.types() == ["cancel", "test"])
            assert ctx.readings[1].publish is True
            await in_thread(pin.drive_high)
            await asyncio.sleep(0.1)
            assert ctx.types() == ["cancel", "test"]
        finally:
            await driver.stop()

    run(body)


def test_flapping_contact_gives_one_bounce_storm_warning() -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="back", kind="door", pin=13, bounce_s=0.0)],
                               storm_events=10, storm_window_s=0.3)
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            pin = factory.pin(13)

            def flap() -> None:
                for _ in range(200):
                    pin.drive_low()
                    pin.drive_high()

            await in_thread(flap)
            await wait_until(lambda: "bounce_storm" in ctx.types())
            await asyncio.sleep(0.1)
            assert ctx.types().count("bounce_storm") == 1
            assert len(ctx.readings) == 10         # 9 changes, then one warning
            storm = ctx.readings[-1]
            assert storm.priority == Priority.WARNING and storm.data["kind"] == "door"
            # Quiet for the window: muting ends; the door is open (high) as it was reported.
            await wait_until(lambda: driver.devices()[0].details["bounce_storm"] is False)
            await in_thread(pin.drive_low)
            await wait_until(lambda: ctx.types()[-1] == "door_close")
        finally:
            await driver.stop()

    run(body)


def test_stop_releases_pins_for_a_new_driver() -> None:
    async def body() -> None:
        factory = MockFactory()
        cfg = GpioConfig(devices=(GpioDevice(id="cord", kind="pull_cord", pin=17),
                                  GpioDevice(id="pir", kind="pir", pin=4)))
        for _ in range(2):
            driver = GpioDriver(cfg, pin_factory=factory)
            ctx = FakeContext(asyncio.get_running_loop())
            await driver.start(ctx)
            assert [d.online for d in driver.devices()] == [True, True]
            await driver.stop()

    run(body)


def test_busy_pin_is_reported_not_fatal() -> None:
    async def body() -> None:
        import gpiozero

        factory = MockFactory()
        squatter = gpiozero.DigitalInputDevice(17, pin_factory=factory)
        driver = GpioDriver(GpioConfig(devices=(GpioDevice(id="cord", kind="pull_cord", pin=17),
                                                GpioDevice(id="door", kind="door", pin=27))),
                            pin_factory=factory)
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            online = {d.device_id: d.online for d in driver.devices()}
            assert online == {"cord": False, "door": True}
            await wait_until(lambda: ctx.types() == ["device_offline"])
            assert ctx.readings[0].priority == Priority.WARNING
            await in_thread(factory.pin(27).drive_low)
            await wait_until(lambda: ctx.types()[-1] == "door_close")
        finally:
            await driver.stop()
            squatter.close()

    run(body)


# -- outputs ---------------------------------------------------------------------------------
def test_led_pattern_priorities() -> None:
    show = 30.0
    assert o.led_pattern(AgentState(online=True), 100.0, show) is o.LED_ONLINE
    assert o.led_pattern(AgentState(online=False, backlog=3), 100.0, show) is o.LED_OFFLINE
    pending = AgentState(online=True, alarm_pending=True, last_alarm_delivered_mono=99.0)
    assert o.led_pattern(pending, 100.0, show) is o.LED_ALARM_PENDING
    delivered = AgentState(online=False, last_alarm_delivered_mono=90.0)
    assert o.led_pattern(delivered, 100.0, show) is o.LED_ALARM_DELIVERED
    assert o.led_pattern(delivered, 121.0, show) is o.LED_OFFLINE
    assert o.led_next_change(delivered, 100.0, show) == 120.0
    assert o.led_next_change(AgentState(online=True), 100.0, show) is None


def test_buzzer_pattern_transitions() -> None:
    idle = AgentState(online=True)
    warn = AgentState(online=True, prewarning=True)
    assert o.buzzer_pattern(warn, idle) is o.BUZZER_PREWARNING
    assert o.buzzer_pattern(warn, warn) is None                 # keeps beeping
    assert o.buzzer_pattern(idle, warn) is o.BUZZER_SILENT       # countdown cancelled
    done = AgentState(online=True, last_alarm_delivered_mono=5.0)
    assert o.buzzer_pattern(done, idle) is o.BUZZER_CONFIRM
    assert o.buzzer_pattern(done, done) is None                  # confirms once
    assert o.buzzer_pattern(idle, None) is None


def _transitions(pin: object, since: int = 0) -> list[bool]:
    return [s.state for s in pin.states[since:]]  # type: ignore[attr-defined]


def test_led_and_buzzer_follow_agent_state() -> None:
    async def body() -> None:
        driver, factory = make([GpioDevice(id="status", kind="led", pin=24),
                                GpioDevice(id="beeper", kind="buzzer", pin=25)],
                               delivered_show_s=0.3)
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        led, buzzer = factory.pin(24), factory.pin(25)
        try:
            # Initial state: offline -> slow blink (on first).
            await wait_until(lambda: led.state is True)
            ctx.set_state(AgentState(online=True))
            await asyncio.sleep(0.05)
            assert led.state is True and _pattern(driver, "status") == "online"
            # Alarm pending: fast flash, several toggles within half a second.
            mark = len(led.states)
            ctx.set_state(AgentState(online=True, alarm_pending=True))
            await wait_until(lambda: len(led.states) - mark >= 5)
            assert _pattern(driver, "status") == "alarm_pending"
            # Delivered: distinct pattern, a confirmation beep, then back to steady on.
            mark_b = len(buzzer.states)
            t = time.monotonic()
            ctx.set_state(AgentState(online=True, last_alarm_delivered_mono=t))
            assert _pattern(driver, "status") == "alarm_delivered"
            await wait_until(lambda: _transitions(buzzer, mark_b) == [True, False, True, False])
            await wait_until(lambda: _pattern(driver, "status") == "online")
            assert led.state is True
            # Pre-warning beeps until the countdown ends.
            mark_b = len(buzzer.states)
            ctx.set_state(AgentState(online=True, prewarning=True))
            await wait_until(lambda: buzzer.state is True)
            ctx.set_state(AgentState(online=True))
            await wait_until(lambda: buzzer.state is False)
            await asyncio.sleep(0.3)
            assert buzzer.state is False
        finally:
            await driver.stop()
        assert led.state is False and buzzer.state is False

    run(body)


def _pattern(driver: object, device_id: str) -> str | None:
    for d in driver.devices():  # type: ignore[attr-defined]
        if d.device_id == device_id:
            return d.details["pattern"]
    return None


def test_unusable_pin_factory_marks_devices_offline_not_fatal() -> None:
    async def body() -> None:
        cfg = GpioConfig(pin_factory="pigpio",   # no pigpio daemon here
                         devices=(GpioDevice(id="cord", kind="pull_cord", pin=17),
                                  GpioDevice(id="led", kind="led", pin=24)))
        driver = GpioDriver(cfg)
        ctx = FakeContext(asyncio.get_running_loop())
        await driver.start(ctx)
        try:
            assert [d.online for d in driver.devices()] == [False, False]
            assert "pigpio" in driver.devices()[0].details["error"]
            await wait_until(lambda: ctx.types() == ["device_offline"])
        finally:
            await driver.stop()

    run(body)
