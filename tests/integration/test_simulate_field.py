"""``tec-agent simulate`` as a new user meets it (issue 17 items 5 and 6): no broker is said
within seconds with the way out; scenarios run on one's own config (or say what they need);
exit 0 means every printed event was acknowledged, each soak event has its own time, and
the simulated unit's threads end before its pty closes (no ``Bad file descriptor``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from drivers.serial.sim import SimulatedUnit
from tests.harness import wait_until


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def _config(tmp_path: Path, broker, extra: str = "") -> Path:
    path = tmp_path / "my.toml"
    mqtt = (f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n'
            'reconnect_min_s = 0.1\nreconnect_max_s = 1.0\n') if broker else ""
    path.write_text(f'hub_id = "hub-test"\n{mqtt}[store]\npath = "{tmp_path / "events.db"}"\n'
                    + extra)
    return path


def test_no_broker_is_said_within_seconds_with_the_way_out(tmp_path: Path) -> None:
    from agent.sim.local_broker import free_port

    cfg = tmp_path / "nobroker.toml"
    cfg.write_text(f'hub_id = "hub-test"\n[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n'
                   f'[store]\npath = "{tmp_path / "events.db"}"\n')
    t0 = time.monotonic()
    proc = subprocess.Popen(_cmd("simulate", "--config", str(cfg), "--scenario", "pull-cord"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    said_at = None
    for line in proc.stderr:
        if "no MQTT broker reachable at 127.0.0.1:" in line:
            said_at = time.monotonic() - t0
            assert "--local-broker" in line
            break
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    assert said_at is not None and said_at < 8, said_at
    assert proc.returncode == 1
    assert elapsed < 20, elapsed              # not the 60 s timeout
    assert "Traceback" not in err
    assert "1 of 1 printed events still pending" in err and "--local-broker" in err
    (alarm,) = [json.loads(line) for line in out.splitlines()]
    assert alarm["type"] == "pull_cord"        # stored: it waits for a broker


MY_DEVICES = """
[gpio]
pin_factory = "mock"

[[gpio.devices]]
id = "my-cord"
kind = "pull_cord"
pin = 6
room = "toilet"

[[gpio.devices]]
id = "my-pir"
kind = "pir"
pin = 13
room = "kitchen"
"""


def test_demo_runs_on_my_own_devices_or_says_what_it_needs(tmp_path: Path, mqtt_broker) -> None:
    cfg = _config(tmp_path, mqtt_broker, MY_DEVICES)
    res = subprocess.run(_cmd("simulate", "--config", str(cfg), "--scenario", "demo",
                              "--timeout", "30"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert ("my-cord", "pull_cord") in [(e["device_id"], e["type"]) for e in events]
    assert ("my-pir", "motion") in [(e["device_id"], e["type"]) for e in events]

    no_cord = _config(tmp_path, mqtt_broker, '[gpio]\npin_factory = "mock"\n'
                      '[[gpio.devices]]\nid = "my-pir"\nkind = "pir"\npin = 13\n')
    for scenario in ("demo", "pull-cord"):
        res = subprocess.run(_cmd("simulate", "--config", str(no_cord), "--scenario", scenario),
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert (f'scenario {scenario} needs a wired device of kind = "pull_cord" in'
                ' [[gpio.devices]]; this config has: my-pir (pir)') in res.stderr


def test_soak_exit_0_means_every_printed_event_was_acknowledged(
    tmp_path: Path, mqtt_broker
) -> None:
    # A long group commit: the soak's last telemetry is still uncommitted when it ends.
    cfg = _config(tmp_path, mqtt_broker, "telemetry_commit_s = 2.0\n")
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    res = subprocess.run(_cmd("simulate", "--config", str(cfg), "--scenario", "soak",
                              "--count", "25", "--rate", "50", "--timeout", "30"),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    printed = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(printed) == 25
    assert "scenario soak done: 25 events stored and acknowledged" in res.stderr
    got = events.wait_for(lambda ms: len(events.events()) >= 25 and events.events(),
                          what="25 events at the broker")
    assert {e["id"] for e in printed} <= {e["id"] for e in got}
    # Each soak event carries the time it was emitted (50/s: 20 ms apart), not one shared ts.
    stamps = [e["ts"] for e in printed]
    assert len(set(stamps)) == len(stamps), stamps


def test_simulated_unit_closes_without_a_thread_touching_a_closed_pty() -> None:
    failures: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        unit = SimulatedUnit("u1", heartbeat_s=30.0)   # nobody answers: the heartbeat retries
        wait_until(lambda: any(t.name == "sim-unit-hb-u1" for t in threading.enumerate()), 5)
        time.sleep(0.2)                                 # mid-heartbeat, waiting for an ACK
        t0 = time.monotonic()
        unit.close()
        assert time.monotonic() - t0 < 1.0
        assert not [t for t in threading.enumerate() if t.name.startswith("sim-unit-")
                    and t.name.endswith("u1")]
        time.sleep(1.2)       # the old heartbeat would now write to the closed descriptor
    finally:
        threading.excepthook = previous
    assert failures == []


def test_readme_command_one_with_watch_exits_0(tmp_path: Path) -> None:
    """README's first command, as written (`simulate --scenario demo --local-broker --watch`):
    the watcher's MQTT client is closed from inside the running simulation, and winding down
    its private loop there raised 'Cannot run the event loop while another loop is running'."""
    res = subprocess.run(_cmd("simulate", "--scenario", "demo", "--local-broker", "--watch"),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stdout + res.stderr
    assert "broker received: seq=10 alarm pull_cord" in res.stderr   # the watcher saw it
    assert "10 events stored and acknowledged" in res.stderr
