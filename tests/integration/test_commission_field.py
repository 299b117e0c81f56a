"""Commissioning as installers meet it (issue 17 item 3): every device walk-tested or
skipped with a reason, alarm devices not passed untested unless named, an unheard BLE
sensor excusable, a failure that says how to skip, and Ctrl-C that says what was done."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.app import Hardware
from agent.cli import main
from agent.commission import Commissioning, CommissionOptions
from drivers.ble.replay_backend import AdvertFeed
from drivers.ble.tools.fake_gatt import FakeGattClient
from tests.harness import make_config

DEVICES = """
[gpio]
pin_factory = "mock"

[[gpio.devices]]
id = "cord-bath"
kind = "pull_cord"
pin = 27
room = "bathroom"

[[gpio.devices]]
id = "pir-lounge"
kind = "pir"
pin = 4
room = "lounge"
"""


def _config_file(tmp_path: Path, broker, extra: str = DEVICES) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'hub_id = "hub-test"\n[store]\npath = "{tmp_path / "events.db"}"\n'
        '[agent]\nassume_clock_synced = true\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n'
        + extra)
    return path


def test_nothing_tested_never_passes_and_an_alarm_device_needs_allow_untested(
    tmp_path: Path, mqtt_broker, capsys
) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    cfg = str(_config_file(tmp_path, mqtt_broker))
    skips = ["--skip", "cord-bath=resident in the bath", "--skip", "pir-lounge=room locked"]

    # Everything skipped, the pull cord included: not a pass without --allow-untested.
    code = main(["commission", "--config", cfg, "--walk-timeout", "1", *skips])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "Commissioning PASSED" not in out
    assert ("cord-bath (pull_cord, bathroom): an alarm device cannot pass untested;"
            " walk-test it, or add --allow-untested cord-bath") in out
    assert "installation_complete NOT sent" in out

    # Named, with the reasons: it passes, says what was skipped and records why.
    code = main(["commission", "--config", cfg, "--walk-timeout", "1", *skips,
                 "--allow-untested", "cord-bath"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert ("Commissioning PASSED: 0 of 2 device(s) walk-tested, 2 skipped (cord-bath:"
            " resident in the bath; pir-lounge: room locked)") in out
    assert "0 device(s) walk-tested, test alarm" not in out
    done = events.wait_for(
        lambda ms: [e for e in events.events() if e["type"] == "installation_complete"],
        what="installation_complete")[0]["data"]
    assert done["walk_test"]["skip_reasons"] == {"cord-bath": "resident in the bath",
                                                 "pir-lounge": "room locked"}
    assert done["walk_test"]["allowed_untested"] == ["cord-bath"]
    by_id = {d["device_id"]: d for d in done["devices"]}
    assert by_id["cord-bath"]["skip_reason"] == "resident in the bath"
    assert by_id["cord-bath"]["alarm_device"] is True
    assert by_id["pir-lounge"]["alarm_device"] is False


def test_the_failure_summary_says_how_to_skip(tmp_path: Path, mqtt_broker, capsys) -> None:
    cfg = str(_config_file(tmp_path, mqtt_broker))
    code = main(["commission", "--config", cfg, "--walk-timeout", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "skip it with the reason (recorded in installation_complete)" in out
    assert "--skip 'cord-bath=REASON' --allow-untested cord-bath" in out
    assert "--skip 'pir-lounge=REASON'\n" in out


def test_an_unheard_ble_sensor_can_be_skipped_with_a_reason(tmp_path: Path, mqtt_broker) -> None:
    ble = """
[[ble.devices]]
id = "thermo-kitchen"
address = "A4:C1:38:00:00:01"
kind = "bthome"
room = "kitchen"
"""
    config = make_config(tmp_path, mqtt_broker, ble)
    lines: list[str] = []
    options = CommissionOptions(walk_timeout_s=1, connect_timeout_s=10, ack_timeout_s=10,
                                skip={"thermo-kitchen": "battery not fitted yet"})
    result = asyncio.run(Commissioning(
        config, Hardware(ble_backend=AdvertFeed(), ble_client_factory=FakeGattClient),
        out=lines.append, options=options).run())
    text = "\n".join(lines)
    assert result.ok, text
    assert "thermo-kitchen (bthome, kitchen): not heard yet" in text
    assert "skipped by the installer: battery not fitted yet" in text
    assert result.installation_event is not None
    assert result.installation_event.data["walk_test"]["skip_reasons"] == {
        "thermo-kitchen": "battery not fitted yet"}


# Ctrl-C at a terminal reaches a process whose SIGINT has its default action. A shell without
# job control starts a background job (`nohup pytest ... &`) with SIGINT ignored (and nohup
# ignores SIGHUP), exec keeps them ignored, and the command then leaves them so, as it
# should: a command started that way is not meant to be stopped by them. The child restores
# the defaults before it execs the command, as from an installer's terminal; not
# preexec_fn, which the subprocess docs call unsafe in a process with threads.
_AS_FROM_A_TERMINAL = [
    sys.executable, "-c",
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
    "    signal.signal(s, signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


def _interrupted(tmp_path: Path, broker, signum: signal.Signals) -> tuple[int, str, str, float]:
    """Commissioning ended by ``signum`` while it waits for the walk test: its exit code,
    stdout, stderr and how long it took to end."""
    cfg = _config_file(tmp_path, broker)
    proc = subprocess.Popen([*_AS_FROM_A_TERMINAL, "-m", "agent", "commission",
                             "--config", str(cfg), "--walk-timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 30
    try:
        for line in proc.stdout:
            seen.append(line)
            if "Waiting up to 60 s" in line or time.monotonic() > deadline:
                break
        t0 = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:   # not left running (and holding its store) if it hung
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(seen) + out, err, time.monotonic() - t0


def _says_what_was_done(out: str) -> None:
    assert "Commissioning INTERRUPTED: installation_complete NOT sent" in out
    assert "broker: connected" in out
    assert "walk test: 0 of 2 triggered; not triggered: cord-bath, pir-lounge" in out
    assert "test alarm: not sent" in out
    json.dumps(out)  # plain text, no binary noise


def test_ctrl_c_says_what_was_done_and_exits_130(tmp_path: Path, mqtt_broker) -> None:
    code, out, err, took = _interrupted(tmp_path, mqtt_broker, signal.SIGINT)
    assert code == 130, out + err
    assert took < 10
    assert "Traceback" not in err, err
    _says_what_was_done(out)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_kill_or_a_closed_ssh_session_ends_it_as_ctrl_c_does(
        tmp_path: Path, mqtt_broker, signum: signal.Signals) -> None:
    """SIGTERM (kill) and SIGHUP (the installer's SSH session closed) end the run through the
    same path as Ctrl-C, which also starts again a service the run paused; their default
    action ended the process on the spot and left that service stopped."""
    code, out, err, took = _interrupted(tmp_path, mqtt_broker, signum)
    assert code == 128 + signum, out + err     # 143, 129: as the shell reports them
    assert took < 10
    assert "Traceback" not in err, err
    _says_what_was_done(out)
