"""One agent per store (issue 17 item 4): with ``tec-agent run`` live, a second ``run``,
``simulate --config`` and ``commission`` on the same config are refused at once with the
holder's PID, and the live agent keeps its broker connection; after ``kill -9`` of the
holder the store is free again (the kernel drops the lock)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from agent.cli import main
from agent.store.lock import StoreLock, lock_path_for
from tests.harness import agent_cmd, write_config_file


def _config(tmp_path: Path, broker) -> Path:
    return write_config_file(tmp_path, broker, '[gpio]\npin_factory = "mock"\n'
                             '[[gpio.devices]]\nid = "cord"\nkind = "pull_cord"\npin = 27\n')


def test_second_agent_on_a_live_store_is_refused_naming_the_holder(
    tmp_path: Path, mqtt_broker, capsys
) -> None:
    cfg = _config(tmp_path, mqtt_broker)
    status = mqtt_broker.subscribe("tec/v1/hub-test/status")
    live = subprocess.Popen(agent_cmd("run", "--config", str(cfg)), stderr=subprocess.PIPE,
                            text=True)
    try:
        status.wait_for(lambda ms: ms and ms[-1].json()["state"] == "online", timeout=20,
                        what="the live agent online")
        assert lock_path_for(tmp_path / "events.db").exists()
        holder = f"PID {live.pid}"
        for args in (("run", "--config", str(cfg)),
                     ("simulate", "--config", str(cfg), "--scenario", "pull-cord",
                      "--timeout", "20")):
            res = subprocess.run(agent_cmd(*args), capture_output=True, text=True, timeout=15)
            assert res.returncode == 1, (args, res.stderr)
            assert "is in use by another tec-agent" in res.stderr, res.stderr
            assert f"{holder}: " in res.stderr and "agent run --config" in res.stderr
        assert main(["commission", "--config", str(cfg), "--walk-timeout", "1",
                     "--connect-timeout", "1"]) == 1
        err = capsys.readouterr().err
        assert holder in err and "run commissioning with sudo" in err
        # The live agent was never knocked off the broker by a second client with its id.
        states = [m.json()["state"] for m in status.snapshot()]
        assert states.count("online") == 1 and "offline" not in states, states
        assert live.poll() is None
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait(10)
        if live.stderr:
            live.stderr.close()
    # The kernel dropped the dead holder's lock: no stale lock to clear by hand.
    lock = StoreLock(tmp_path / "events.db")
    lock.acquire()
    assert lock.path.read_text().split("\n")[0] == str(os.getpid())
    lock.release()
