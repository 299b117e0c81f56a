"""``tec-agent commission`` against MockFactory sensors and a real mosquitto: a full pass
(walk test, test alarm, installation_complete with the inventory at the broker) and the
failures an installer must see (a device never triggered, a broker that is not there)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.app import Hardware
from agent.cli import main
from agent.commission import Commissioning, CommissionOptions, CommissionResult
from tests.harness import make_config, wait_until

GPIO = """
[gpio]
pin_factory = "mock"

[[gpio.devices]]
id = "cord-bath"
kind = "pull_cord"
pin = 27
room = "bathroom"

[[gpio.devices]]
id = "door-front"
kind = "door"
pin = 17
room = "hall"
role = "main_entrance_door"

[[gpio.devices]]
id = "pir-lounge"
kind = "pir"
pin = 4
room = "lounge"

[[gpio.devices]]
id = "hub-button"
kind = "cancel_button"
pin = 26
hold_s = 0.6

[[gpio.devices]]
id = "status-led"
kind = "led"
pin = 24
"""


class Run:
    """Commissioning on its own thread (as the CLI would run it), progress lines collected."""

    def __init__(self, commissioning: Commissioning) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        commissioning.out = self._out
        self.commissioning = commissioning
        self.result: CommissionResult | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _out(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def _main(self) -> None:
        import asyncio

        self.result = asyncio.run(self.commissioning.run())

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = 20.0) -> None:
        wait_until(lambda: fragment in self.text(), timeout, what=repr(fragment))

    def join(self, timeout: float = 30.0) -> CommissionResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "commissioning did not finish"
        assert self.result is not None
        return self.result


def test_full_commissioning_reaches_the_broker(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    factory = MockFactory()
    config = make_config(tmp_path, mqtt_broker, GPIO)
    run = Run(Commissioning(config, Hardware(pin_factory=factory),
                            options=CommissionOptions(walk_timeout_s=30, reminder_every_s=5,
                                                      installer="inst-7")))
    run.wait_for("[ok]   connected to 127.0.0.1")
    run.wait_for("Waiting up to 30 s")
    cord, door, pir, button = (factory.pin(n) for n in (27, 17, 4, 26))
    cord.drive_low()
    cord.drive_high()
    run.wait_for("1/4 cord-bath (pull_cord, bathroom): pull_cord")
    door.drive_high()
    door.drive_low()
    run.wait_for("door-front (door, hall): door_")
    pir.drive_high()
    run.wait_for("pir-lounge (pir, lounge): motion")
    pir.drive_low()
    button.drive_low()
    time.sleep(0.1)           # a short press of the hub's button
    button.drive_high()
    run.wait_for("4/4 hub-button (cancel_button)")
    result = run.join()

    text = run.text()
    assert result.ok, text
    for fragment in ("2. Devices (5 configured)", "[ok]   cord-bath (pull_cord, bathroom): ready",
                     "stored, sent and acknowledged by the broker in",
                     "installation_complete (4 devices) acknowledged by the broker",
                     "Commissioning PASSED: 4 device(s) walk-tested"):
        assert fragment in text, fragment
    got = events.wait_for(
        lambda ms: [e for e in events.events() if e["type"] == "installation_complete"],
        what="installation_complete at the broker")
    done = got[0]["data"]
    assert done["installer"] == "inst-7"
    assert [(d["device_id"], d["kind"], d["room"], d["walk_test"]) for d in done["devices"]] == [
        ("cord-bath", "pull_cord", "bathroom", "passed"),
        ("door-front", "door", "hall", "passed"),
        ("pir-lounge", "pir", "lounge", "passed"),
        ("hub-button", "cancel_button", "", "passed"),
    ]
    assert done["devices"][1]["role"] == "main_entrance_door"
    assert all("battery_pct" in d and "rssi" in d for d in done["devices"])
    assert done["outputs"] == [{"device_id": "status-led", "kind": "led", "online": True}]
    assert done["test_alarm"]["event_id"] == result.test_event_id
    types = [e["type"] for e in events.events()]
    test_events = [e for e in events.events() if e["type"] == "test"]
    assert [e["id"] for e in test_events] == [result.test_event_id]
    walk = {e["device_id"] for e in events.events() if e["type"] == "walk_test"}
    assert walk == {"cord-bath", "door-front", "pir-lounge", "hub-button"}
    assert "pull_cord" in types          # a real alarm: nothing is suppressed on test


def test_a_device_never_triggered_is_reported_and_fails(
    tmp_path: Path, mqtt_broker, capsys
) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    config_path = tmp_path / "hub.toml"
    config_path.write_text(
        f'hub_id = "hub-test"\n[store]\npath = "{tmp_path / "events.db"}"\n'
        '[agent]\nassume_clock_synced = true\n'
        f'[mqtt]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\n'
        f'username = "{mqtt_broker.username}"\npassword_file = "{mqtt_broker.password_file}"\n'
        + GPIO)
    code = main(["commission", "--config", str(config_path), "--walk-timeout", "2",
                 "--skip", "hub-button=out of reach today"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[skip] hub-button (cancel_button): skipped by the installer: out of reach today" in out
    for dev in ("cord-bath (pull_cord, bathroom)", "door-front (door, hall)",
                "pir-lounge (pir, lounge)"):
        assert f"[FAIL] {dev}: never triggered during the walk test" in out
    assert "installation_complete NOT sent" in out
    assert "Commissioning FAILED (3 problem(s))" in out
    # The test alarm still went end to end; installation_complete did not.
    assert "stored, sent and acknowledged by the broker" in out
    events.wait_for(lambda ms: "test" in [e["type"] for e in events.events()], what="test event")
    assert "installation_complete" not in [e["type"] for e in events.events()]


def test_an_unreachable_broker_fails_fast_and_keeps_the_events(tmp_path: Path, capsys) -> None:
    from agent.sim.local_broker import free_port

    config_path = tmp_path / "hub.toml"
    config_path.write_text(
        f'hub_id = "hub-test"\n[store]\npath = "{tmp_path / "events.db"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[[gpio.devices]]\nid = "cord"\nkind = "pull_cord"\npin = 27\n'
        '[gpio]\npin_factory = "mock"\n')
    code = main(["commission", "--config", str(config_path), "--connect-timeout", "1",
                 "--walk-timeout", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] broker 127.0.0.1:" in out and "not reachable within 1 s" in out
    assert "test alarm not attempted: broker not reachable" in out
    assert "cord (pull_cord): never triggered" in out


def test_unknown_skip_and_bad_timeouts_are_usage_errors(tmp_path: Path, capsys) -> None:
    config_path = tmp_path / "hub.toml"
    config_path.write_text(f'hub_id = "h"\n[store]\npath = "{tmp_path / "e.db"}"\n')
    assert main(["commission", "--config", str(config_path), "--walk-timeout", "0"]) == 2
    assert main(["commission", "--config", str(config_path), "--skip", "nope=gone",
                 "--connect-timeout", "1"]) == 1
    assert "--skip names unknown device(s): nope" in capsys.readouterr().out
    assert main(["commission", "--config", str(config_path), "--skip", "nope"]) == 2
    assert "--skip nope: give the reason" in capsys.readouterr().err
