"""Inactivity end to end: PIR silence on MockFactory -> pre-warning on the MockFactory
buzzer -> ``inactivity`` alarm on a real mosquitto.

The agent, the GPIO driver and the broker run for real; only the inactivity detector's
clock is a :class:`ManualClock`, moved from the test (on the agent loop), so an hour of
silence takes no real time.
"""

from __future__ import annotations

import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.app import Hardware, build_components
from agent.clock import ManualClock
from agent.inactivity.detector import InactivityDetector
from tests.harness import AgentRunner, make_config, wait_until

HOME = """
[gpio]
pin_factory = "mock"

[[gpio.devices]]
id = "pir-living"
kind = "pir"
pin = 17
room = "living"

[[gpio.devices]]
id = "hub-cancel"
kind = "cancel_button"
pin = 26
hold_s = 0.6

[[gpio.devices]]
id = "buzzer"
kind = "buzzer"
pin = 18

[inactivity]
auto_rules = false
prewarning_s = 600

[[inactivity.inactivity]]
start = "00:00"
end = "00:00"
after_s = 3600
"""


def _start(
    tmp_path: Path, broker
) -> tuple[AgentRunner, MockFactory, ManualClock, InactivityDetector]:
    factory = MockFactory()
    cfg = make_config(tmp_path, broker, HOME)
    hw = Hardware(pin_factory=factory)
    clock = ManualClock(mono=time.monotonic(), wall=time.time(), synced=True)
    detector = InactivityDetector(cfg, clock=clock, max_sleep_s=0.05)
    components = [detector if isinstance(c, InactivityDetector) else c
                  for c in build_components(cfg, hw)]
    assert any(c is detector for c in components)          # the app builds one from config
    runner = AgentRunner(cfg, hw, components=components).start()
    return runner, factory, clock, detector


def _silence(runner: AgentRunner, clock: ManualClock, detector: InactivityDetector,
             seconds: float) -> None:
    runner.call(clock.advance, seconds)
    runner.call(detector.wake)


def _buzzer_pattern(runner: AgentRunner) -> str | None:
    for d in runner.call(runner.agent.devices):
        if d.device_id == "buzzer":
            return d.details.get("pattern")
    return None


def _motion(runner: AgentRunner, factory: MockFactory, events,
            detector: InactivityDetector) -> None:
    """One pass of the PIR: motion, then (about 0.1 s later) motion_clear, both seen."""
    pir = factory.pin(17)
    pir.drive_high()
    events.wait_for(lambda ms: any(e["type"] == "motion" for e in events.events()), what="motion")
    pir.drive_low()
    wait_until(lambda: runner.call(lambda: detector.observations) >= 2, what="motion_clear seen")


def test_pir_silence_prewarns_on_the_buzzer_then_alarms(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    runner, factory, clock, detector = _start(tmp_path, mqtt_broker)
    try:
        wait_until(lambda: runner.agent.state.online, what="online")
        time.sleep(0.3)     # gpiozero's MotionSensor ignores a pin high before its first sample
        _motion(runner, factory, events, detector)
        wait_until(lambda: runner.call(lambda: detector.engine.home.last_device) == "pir-living",
                   what="the detector saw the PIR")

        _silence(runner, clock, detector, 3600 - 600 - 5)
        runner.call(detector.poll)                             # evaluated now, on the loop
        assert not runner.agent.state.prewarning               # 5 s before the warning
        _silence(runner, clock, detector, 6)
        wait_until(lambda: runner.agent.state.prewarning, what="pre-warning state")
        wait_until(lambda: _buzzer_pattern(runner) == "prewarning", what="buzzer pattern")
        wait_until(lambda: factory.pin(18).state, timeout=3.0, what="buzzer pin on")
        warn = events.wait_for(lambda ms: [e for e in events.events()
                                           if e["type"] == "inactivity_prewarning"],
                               what="inactivity_prewarning event")[0]
        assert warn["priority"] == "warning"
        assert not [e for e in events.events() if e["type"] == "inactivity"]

        _silence(runner, clock, detector, 600)
        alarm = events.wait_for(lambda ms: [e for e in events.events()
                                            if e["type"] == "inactivity"],
                                what="inactivity alarm")[0]
        assert alarm["priority"] == "alarm" and alarm["device_id"] == "inactivity"
        assert alarm["data"]["threshold_s"] == 3600 and alarm["data"]["last_device"] == "pir-living"
        wait_until(lambda: not runner.agent.state.prewarning, what="pre-warning over")
        wait_until(lambda: runner.agent.state.backlog == 0, what="all acknowledged")
    finally:
        runner.stop()
    # The state went to the agent's database beside the event store.
    import sqlite3
    db = sqlite3.connect(tmp_path / "events.db")
    try:
        assert db.execute(
            "SELECT count(*) FROM inactivity_state WHERE key='snapshot'"
        ).fetchone()[0] == 1
    finally:
        db.close()


def test_the_cancel_button_stops_the_prewarning(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    runner, factory, clock, detector = _start(tmp_path, mqtt_broker)
    try:
        wait_until(lambda: runner.agent.state.online, what="online")
        time.sleep(0.3)
        _motion(runner, factory, events, detector)
        _silence(runner, clock, detector, 3600 - 300)
        wait_until(lambda: runner.agent.state.prewarning, what="pre-warning state")
        button = factory.pin(26)
        button.drive_low()                                       # a short press: cancel
        time.sleep(0.1)
        button.drive_high()
        wait_until(lambda: not runner.agent.state.prewarning, what="pre-warning cancelled")
        wait_until(lambda: _buzzer_pattern(runner) == "silent", what="buzzer silent")
        _silence(runner, clock, detector, 3600 - 700)            # still short of a new hour
        runner.call(detector.poll)
        assert runner.call(lambda: dict(detector.counts)) == {"inactivity_prewarning": 1}
        assert not runner.agent.state.prewarning
        wait_until(lambda: runner.agent.state.backlog == 0, what="all acknowledged")
        assert not [e for e in events.events() if e["type"] == "inactivity"]
    finally:
        runner.stop()
