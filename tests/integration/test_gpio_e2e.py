"""Wired sensors end to end: MockFactory pins -> the real agent -> a real mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.app import Hardware
from tests.harness import AgentRunner, make_config, wait_until

GPIO = """
[gpio]
pin_factory = "mock"
cancel_window_s = 30.0
storm_events = 8
storm_window_s = 3.0

[[gpio.devices]]
id = "cord-bathroom"
kind = "pull_cord"
pin = 27
room = "bathroom"

[[gpio.devices]]
id = "hub-button"
kind = "cancel_button"
pin = 26
hold_s = 0.6

[[gpio.devices]]
id = "bed"
kind = "bed_mat"
pin = 22
room = "bedroom"
settle_s = 0.3

[[gpio.devices]]
id = "back-door"
kind = "door"
pin = 17

[[gpio.devices]]
id = "status-led"
kind = "led"
pin = 24
"""


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def _led_pattern(runner: AgentRunner) -> str | None:
    gpio = next(c for c in runner.agent.components if c.name == "gpio")
    for d in runner.call(gpio.devices):
        if d.device_id == "status-led":
            return d.details["pattern"]
    return None


def test_alarm_cancel_test_mat_and_storm_reach_the_broker(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO)
    with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        wait_until(lambda: _led_pattern(runner) == "online", what="LED online")
        cord, button, bed, door = (factory.pin(n) for n in (27, 26, 22, 17))
        door.drive_low()                                   # door closed to begin with
        events.wait_for(lambda ms: "door_close" in _types(events.events()), what="door_close")

        cord.drive_low()                                   # cord pulled
        cord.drive_high()
        alarm = events.wait_for(
            lambda ms: [e for e in events.events() if e["type"] == "pull_cord"], what="alarm")[0]
        assert alarm["priority"] == "alarm" and alarm["data"]["contact_id"] == 101
        wait_until(lambda: _led_pattern(runner) == "alarm_delivered", what="LED delivered")

        button.drive_low()                                 # short press on the hub: cancel
        time.sleep(0.1)
        button.drive_high()
        cancelled = events.wait_for(
            lambda ms: [e for e in events.events() if e["type"] == "alarm_cancelled"],
            what="alarm_cancelled")[0]
        assert cancelled["data"]["cancelled_ids"] == [alarm["id"]]

        button.drive_low()                                 # long press: test
        events.wait_for(lambda ms: "test" in _types(events.events()), what="test")
        button.drive_high()

        bed.drive_low()                                    # lies down
        events.wait_for(lambda ms: "bed_occupied" in _types(events.events()), what="bed")

        # A contact flapping slower than the 50 ms debounce (so each change counts).
        for i in range(24):
            door.drive_high() if i % 2 == 0 else door.drive_low()
            time.sleep(0.06)
        events.wait_for(lambda ms: "bounce_storm" in _types(events.events()), what="storm")
        wait_until(lambda: runner.agent.state.backlog == 0, what="all acknowledged")
        time.sleep(0.3)
        got = events.events()
    assert _types(got).count("bounce_storm") == 1
    storm = next(e for e in got if e["type"] == "bounce_storm")
    assert storm["priority"] == "warning" and storm["device_id"] == "back-door"
    # At most storm_events - 1 door changes got through before the warning: never a flood.
    door_events = [t for t in _types(got) if t.startswith("door_")]
    assert len(door_events) <= 1 + 7
    assert "cancel" not in _types(got)                     # cancel readings are not published
