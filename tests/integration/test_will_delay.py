"""mqtt.will_delay_s (issue 20): an agent killed and back within the delay never shows
'offline' (the broker drops the will when the same session returns); one that stays away
shows it after the delay, not at once."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.harness import TestBroker, agent_cmd

DELAY_S = 6


def _config(tmp_path: Path, broker: TestBroker) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'hub_id = "hub-w"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n'
        f'reconnect_min_s = 0.1\nreconnect_max_s = 1.0\nwill_delay_s = {DELAY_S}\n'
        f'[store]\npath = "{tmp_path / "events.db"}"\n')
    return path


def _start(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(agent_cmd("run", "--config", str(cfg)), stderr=subprocess.DEVNULL)


def test_a_blip_does_not_flap_offline(tmp_path: Path, mqtt_broker: TestBroker) -> None:
    cfg = _config(tmp_path, mqtt_broker)
    status = mqtt_broker.subscribe("tec/v1/hub-w/status")

    def states() -> list[str]:
        return [m.json()["state"] for m in status.snapshot()]

    procs = [_start(cfg)]
    try:
        status.wait_for(lambda ms: states().count("online") == 1, 20, what="online")
        procs[0].send_signal(signal.SIGKILL)   # no DISCONNECT: the broker holds the will
        procs[0].wait(10)
        procs.append(_start(cfg))
        status.wait_for(lambda ms: states().count("online") == 2, 20, what="online again")
        assert "offline" not in states()
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(10)
        killed = time.monotonic()
        last = status.wait_for(lambda ms: ms[-1].json()["state"] == "offline" and ms[-1],
                               DELAY_S + 10, what="offline after the delay")
        assert last.json()["reason"] == "connection lost"
        assert last.received_mono - killed >= DELAY_S - 1.0
        assert states() == ["online", "online", "offline"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
