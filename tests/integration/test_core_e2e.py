"""The core path end to end: MockFactory pin -> agent -> SQLite -> real mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.app import Hardware
from agent.cancel import AlarmCanceller
from agent.model import Priority, Reading
from agent.sim.scenarios import SimSource
from drivers.gpio.config import GpioDevice
from tests.harness import (
    AgentRunner,
    agent_cmd,
    make_config,
    wait_until,
    with_gpio,
    write_config_file,
)

CORD = GpioDevice(id="cord-1", kind="pull_cord", pin=27, room="bathroom")
EVENT_FIELDS = {
    "id", "hub_id", "seq", "type", "priority", "device_id", "ts", "clock_synced", "data",
}


def test_pull_cord_reaches_broker_with_every_field(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    status = mqtt_broker.subscribe("tec/v1/hub-test/status")
    factory = MockFactory()
    cfg = with_gpio(make_config(tmp_path, mqtt_broker), (CORD,))
    with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
        status.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms), what="online")
        pin = factory.pin(27)
        pin.drive_low()
        time.sleep(0.05)
        pin.drive_high()
        got = events.wait_events(1)
        wait_until(lambda: runner.agent.state.backlog == 0, what="ack")
    ev = got[0]
    assert set(ev) >= EVENT_FIELDS
    assert ev["type"] == "pull_cord" and ev["priority"] == "alarm"
    assert ev["hub_id"] == "hub-test" and ev["device_id"] == "cord-1"
    assert ev["seq"] == 1 and isinstance(ev["clock_synced"], bool)
    assert ev["data"]["contact_id"] == 101 and ev["data"]["room"] == "bathroom"
    assert ev["ts"].endswith("Z") and len(ev["id"]) == 32
    # Graceful stop leaves a retained offline status.
    status.wait_for(lambda ms: ms[-1].json()["state"] == "offline", what="offline status")
    assert (status.snapshot()[-1].retain is False
            or status.snapshot()[-1].json()["state"] == "offline")


def test_device_state_follows_the_alarm_and_the_last_one_is_retained(
        tmp_path: Path, mqtt_broker) -> None:
    everything = mqtt_broker.subscribe("tec/v1/hub-test/#")
    factory = MockFactory()
    cfg = with_gpio(make_config(tmp_path, mqtt_broker), (CORD,))
    with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        pin = factory.pin(27)
        pin.drive_low()
        everything.wait_for(lambda ms: any(m.topic.endswith("/device/cord-1")
                                           and m.json()["state"] == "pulled" for m in ms),
                            what="the pulled state")
        msgs = everything.snapshot()
        # The alarm is on the wire before the state published in the same moment.
        first_pulled = next(i for i, m in enumerate(msgs)
                            if m.topic.endswith("/device/cord-1") and m.json()["state"] == "pulled")
        assert any(m.topic.endswith("/event") and m.json()["type"] == "pull_cord"
                   for m in msgs[:first_pulled]), [m.topic for m in msgs]
        pin.drive_high()
        everything.wait_for(lambda ms: ms[-1].topic.endswith("/device/cord-1")
                            and ms[-1].json()["state"] == "idle", what="the idle state")
    late = mqtt_broker.subscribe("tec/v1/hub-test/device/cord-1")
    (kept,) = late.wait_for(lambda ms: ms, what="the retained state")
    assert kept.retain and kept.json()["state"] == "idle"


def _soak(n: int, alarm_every: int = 10) -> list[Reading]:
    return [
        Reading("sim", "pull_cord" if i % alarm_every == 0 else "telemetry",
                Priority.ALARM if i % alarm_every == 0 else Priority.TELEMETRY, {"n": i})
        for i in range(n)
    ]


def test_broker_outage_buffers_then_delivers_all_alarms_first(
    tmp_path: Path, durable_broker
) -> None:
    mqtt_broker = durable_broker
    events = mqtt_broker.subscribe("tec/v1/hub-test/event", persistent_id="platform")
    cfg = make_config(tmp_path, mqtt_broker)
    sim = SimSource()
    with AgentRunner(cfg, components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        mqtt_broker.stop()
        wait_until(lambda: not runner.agent.state.online, what="offline")
        readings = _soak(300)
        sim.emit_from_thread(readings, rate=0).join()
        wait_until(lambda: runner.agent.stats["stored"] == 300, what="300 stored")
        assert runner.agent.state.backlog == 300
        mqtt_broker.start()
        got = events.wait_events(300, timeout=60)
        wait_until(lambda: runner.agent.state.backlog == 0, what="backlog drained")
    ns = sorted(e["data"]["n"] for e in got)
    assert ns == list(range(300))
    # After the outage, every alarm went out before any telemetry still waiting.
    prios = [e["priority"] for e in got]
    first_telemetry = prios.index("telemetry")
    assert prios[:first_telemetry].count("alarm") == 30


def test_store_full_still_stores_and_sends_alarms(tmp_path: Path, durable_broker) -> None:
    mqtt_broker = durable_broker
    events = mqtt_broker.subscribe("tec/v1/hub-test/event", persistent_id="platform")
    cfg = make_config(tmp_path, mqtt_broker, extra="")
    from dataclasses import replace
    cfg = replace(cfg, store=replace(cfg.store, max_mb=1, reserve_mb=0.25))
    sim = SimSource()
    with AgentRunner(cfg, components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        mqtt_broker.stop()
        big = "x" * 1500
        tele = [Reading("sim", "telemetry", Priority.TELEMETRY, {"n": i, "pad": big})
                for i in range(3000)]
        sim.emit_from_thread(tele, rate=0).join()
        wait_until(lambda: runner.agent.stats["readings"] == 3000, what="readings")
        alarm = Reading("sim", "pull_cord", Priority.ALARM, {"n": -1})
        sim.emit_from_thread([alarm], rate=0).join()
        wait_until(lambda: runner.agent.event_delivered(alarm.id) is False, what="alarm stored")
        store = runner.agent.store
        assert runner.call(lambda: store.evicted["telemetry"]) > 0
        assert runner.call(store.used_bytes) <= 1024 * 1024 + 64 * 1024
        mqtt_broker.start()
        events.wait_for(lambda ms: any(m.json()["id"] == alarm.id for m in ms), timeout=60,
                        what="the alarm on the broker")


def test_cancel_button_cancels_recent_alarm(tmp_path: Path, mqtt_broker) -> None:
    cfg = make_config(tmp_path, mqtt_broker)
    sim = SimSource()
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    with AgentRunner(cfg, components=[sim, AlarmCanceller(60.0)]):
        alarm = Reading("cord", "pull_cord", Priority.ALARM, {})
        sim.emit_from_thread([alarm], 0).join()
        events.wait_events(1)
        sim.emit_from_thread(
            [Reading("hub-button", "cancel", Priority.INFO, {}, publish=False)], 0
        ).join()
        got = events.wait_events(2)
    assert got[1]["type"] == "alarm_cancelled" and got[1]["data"]["cancelled_ids"] == [alarm.id]


def test_kill_9_mid_stream_then_restart_loses_nothing(tmp_path: Path, mqtt_broker) -> None:
    cfg = write_config_file(tmp_path, mqtt_broker)
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    mqtt_broker.stop()  # nothing can be delivered: everything must survive in the store
    proc = subprocess.Popen(
        agent_cmd("simulate", "--config", str(cfg), "--scenario", "soak", "--count", "5000",
                   "--rate", "2000", "--timeout", "60"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    accepted: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        accepted.append(json.loads(line))
        if len(accepted) >= 1500:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    accepted_ids = {e["id"] for e in accepted}
    mqtt_broker.start()
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    # A restarted agent on the same store sends what the killed one left.
    res = subprocess.run(
        agent_cmd("simulate", "--config", str(cfg), "--scenario", "soak", "--count", "0",
                   "--timeout", "60"), capture_output=True, text=True, timeout=90,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = {e["id"] for e in events.events()}
    missing = accepted_ids - got
    assert not missing, f"{len(missing)} accepted events lost"
    seqs = [e["seq"] for e in accepted]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_sigterm_publishes_offline_and_exits_fast(tmp_path: Path, mqtt_broker) -> None:
    cfg = write_config_file(tmp_path, mqtt_broker)
    status = mqtt_broker.subscribe("tec/v1/hub-test/status")
    proc = subprocess.Popen(agent_cmd("run", "--config", str(cfg)), stderr=subprocess.PIPE,
                            text=True)
    try:
        status.wait_for(lambda ms: ms and ms[-1].json()["state"] == "online", timeout=20,
                        what="online")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert rc == 0, err[-2000:]
    assert elapsed < 5.0
    last = status.wait_for(lambda ms: ms[-1].json()["state"] == "offline" and ms[-1],
                           what="offline")
    assert last.json()["reason"] == "shutdown"
    assert mqtt_broker.password not in err


def test_status_cli_reports_backlog_without_broker(tmp_path: Path, mqtt_broker) -> None:
    cfg = write_config_file(tmp_path, mqtt_broker)
    mqtt_broker.stop()
    proc = subprocess.run(
        agent_cmd("simulate", "--config", str(cfg), "--scenario", "pull-cord", "--timeout", "3"),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "pending" in proc.stderr
    res = subprocess.run(agent_cmd("status", "--config", str(cfg), "--json"),
                         capture_output=True, text=True, timeout=30)
    doc = json.loads(res.stdout)
    assert doc["pending"]["alarm"] == 1 and doc["pending_total"] == 1
    assert doc["oldest_pending_age_s"]["alarm"] >= 0


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    import shutil

    import pytest

    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed")
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "tec-agent.service").read_text()
    for key in ("Type=notify", "WatchdogSec=", "Restart=always", "StateDirectory=",
                "ConfigurationDirectory=", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "ProtectHome=yes", "PrivateTmp=yes", "SupplementaryGroups=gpio dialout bluetooth"):
        assert key in unit
    # Point the unit at this checkout's interpreter so verify can check the command lines.
    local = unit.replace("/opt/tec-agent/venv/bin/tec-agent",
                         str(Path(sys.executable).parent / "tec-agent"))
    path = tmp_path / "tec-agent.service"
    path.write_text(local)
    res = subprocess.run([exe, "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if "tec-agent.service" in line and "is not executable" not in line]
    assert res.returncode == 0 or not problems, res.stdout + res.stderr
