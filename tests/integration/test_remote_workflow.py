"""The support desk's workflows as the README tells them (issue 17 items 1, 2 and 9):
``tec-agent run --config FILE`` on one side, ``tec-agent remote`` on the other, a real
mosquitto between them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.config import parse_config
from tests.harness import wait_until
from tests.integration.test_remote_harness import (  # noqa: F401
    HUB,
    RemoteEnv,
    hub_config_text,
    remote_env,
)

# agent.remote.toml_edit.HEADER_MARK (spelt out: the test must load on older code too)
HEADER_MARK = "# Last changed by tec-agent remote support:"
COMMENT = "# Mrs Smith's flat: installed by J. Jones, 2026-03-02"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=timeout)


def _installed_file(e: RemoteEnv, name: str = "hub.toml", **kw: object) -> Path:
    """An installer's config: comments, no ``remote.config_path`` (the default)."""
    text = hub_config_text(e.tmp, e.broker, **kw)  # type: ignore[arg-type]
    text = "\n".join(line for line in text.splitlines() if not line.startswith("config_path"))
    path = e.tmp / name
    path.write_text(f"{COMMENT}\n{text}\n# end of the installer's file\n")
    return path


@contextmanager
def _running(e: RemoteEnv, config: Path) -> Iterator[Path]:
    """``tec-agent run --config FILE`` as systemd starts it; yields its log file."""
    log_path = e.tmp / f"{config.stem}.log"
    with open(log_path, "w") as log_file:
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        status = e.broker.subscribe(f"tec/v1/{HUB}/status", username="support",
                                    password=e.broker.users["support"])
        status.wait_for(lambda ms: ms and ms[-1].json()["state"] == "online", timeout=30,
                        what="online")
        yield log_path
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)


def _desk(e: RemoteEnv) -> list[str]:
    pw = e.tmp / "support.pass"
    pw.write_text(e.broker.users["support"] + "\n")
    pw.chmod(0o600)
    return ["--hub", HUB, "--broker", f"mqtt://support@{e.broker.host}:{e.broker.port}",
            "--password-file", str(pw)]


def test_a_push_to_a_hub_started_with_run_config_is_written_to_that_file(
    remote_env: RemoteEnv,
) -> None:
    """Item 1: no config_path in the file; the push lands in FILE, at once, not in
    /etc/tec-agent/tec-agent.toml after a 30 s trial and a rollback."""
    e = remote_env
    config = _installed_file(e)
    with _running(e, config):
        change = e.tmp / "debug.toml"
        change.write_text('[agent]\nlog_level = "DEBUG"\n')
        res = _cli("remote", "push-config", str(change), "--merge", *_desk(e),
                   "--key", str(e.key_path), "--timeout", "20")
        assert res.returncode == 0, res.stderr + res.stdout
        assert json.loads(res.stdout)["status"] == "accepted"
    text = config.read_text()
    assert tomllib.loads(text)["agent"]["log_level"] == "DEBUG"
    assert COMMENT in text and "# end of the installer's file" in text


def test_a_config_file_that_cannot_be_written_is_reported_at_once_and_at_start(
    remote_env: RemoteEnv,
) -> None:
    """Item 1: ``not_writable: PATH`` within seconds (the trial would take 20 s), and
    check-config and run warn before any push."""
    e = remote_env
    target = e.tmp / "no-such-dir" / "agent.toml"
    e.config_path.write_text(e.config_path.read_text()
                             .replace(str(e.tmp / "agent.toml"), str(target))
                             .replace("rollback_after_s = 1.0", "rollback_after_s = 20.0"))
    check = _cli("check-config", str(e.config_path))
    assert check.returncode == 0, check.stdout
    assert f"warning: remote.config_path: remote config is on but {target}" in check.stdout
    assert "not_writable" in check.stdout
    with _running(e, e.config_path) as log_path:
        assert f"remote config is on but {target}: directory" in log_path.read_text()
        t0 = time.monotonic()
        change = e.tmp / "debug.toml"
        change.write_text('[agent]\nlog_level = "DEBUG"\n')
        res = _cli("remote", "push-config", str(change), "--merge", *_desk(e),
                   "--key", str(e.key_path), "--timeout", "15")
        elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["status"], doc["reason"]) == ("rejected", "not_writable")
    assert f"not_writable: {target}: directory {target.parent} does not exist" in res.stderr
    assert elapsed < 10, elapsed


def test_get_config_edit_push_config_round_trips_and_keeps_the_installers_file(
    remote_env: RemoteEnv,
) -> None:
    """Item 2: what get-config prints (JSON, or TOML with --toml) is accepted by
    push-config as it is; the hub's file keeps its comments and gains no defaults."""
    e = remote_env
    config = _installed_file(e)
    desk, key = _desk(e), ["--key", str(e.key_path)]
    with _running(e, config):
        got = _cli("remote", "get-config", *desk)
        assert got.returncode == 0, got.stderr
        current = json.loads(got.stdout)
        assert current["applied_at"] == "" and current["config"]["hub_id"] == HUB
        current["config"]["inactivity"]["inactivity"][0]["after_s"] = 5400.0
        edited = e.tmp / "edited.json"
        edited.write_text(json.dumps(current))
        res = _cli("remote", "push-config", str(edited), *desk, *key, "--timeout", "20")
        assert res.returncode == 0, res.stderr + res.stdout
        assert json.loads(res.stdout)["changed"] == ["inactivity.inactivity[0].after_s"]

        got = _cli("remote", "get-config", "--toml", *desk)
        assert got.returncode == 0, got.stderr
        assert "after_s = 5400.0" in got.stdout and "push-config" in got.stdout
        edited = e.tmp / "edited.toml"
        edited.write_text(got.stdout.replace("after_s = 5400.0", "after_s = 6000.0"))
        res = _cli("remote", "push-config", str(edited), *desk, *key, "--timeout", "20")
        assert res.returncode == 0, res.stderr + res.stdout
        assert json.loads(res.stdout)["changed"] == ["inactivity.inactivity[0].after_s"]

        other = e.tmp / "other.json"
        other.write_text(json.dumps({**current, "config": {**current["config"],
                                                           "hub_id": "hub-other"}}))
        res = _cli("remote", "push-config", str(other), *desk, *key)
        assert res.returncode == 2 and "hub 'hub-other'" in res.stderr
    text = config.read_text()
    assert parse_config(tomllib.loads(text)).inactivity.inactivity[0].after_s == 6000.0
    assert text.startswith(HEADER_MARK) and COMMENT in text
    assert "# end of the installer's file" in text
    assert "session_expiry_s" not in text and "max_message_bytes" not in text


def test_remote_commands_to_a_silent_hub_say_what_they_wait_for(remote_env: RemoteEnv) -> None:
    """Item 9: the hub's retained status is read and shown, at once and on the timeout."""
    e = remote_env
    runner = e.start_agent()
    wait_until(lambda: runner.agent.state.online, what="the hub online (its status retained)")
    e.stop_agent()  # it leaves a retained "offline" status, as a hub that lost power would
    desk = _desk(e)
    t0 = time.monotonic()
    res = _cli("remote", "cmd", "status", *desk, "--key", str(e.key_path), "--timeout", "2")
    assert res.returncode == 3
    first = res.stderr.splitlines()[0]
    assert first.startswith("waiting up to 2 s for hub hub-test to run 'status'"), res.stderr
    assert f"hub {HUB} is offline" in first and "shutdown" in first
    assert "it may not answer until it reconnects" in res.stderr
    assert "waits in the hub's MQTT session" in res.stderr
    assert time.monotonic() - t0 < 15

    res = _cli("remote", "cmd", "status", *desk[2:], "--hub", "hub-other",
               "--key", str(e.key_path), "--timeout", "1")
    assert res.returncode == 3
    assert "hub hub-other has never published its status" in res.stderr
    assert "check --hub and --broker" in res.stderr


def test_remote_get_config_from_a_silent_hub_says_what_its_status_is(
    remote_env: RemoteEnv,
) -> None:
    e = remote_env
    res = _cli("remote", "get-config", *_desk(e), "--timeout", "1")
    assert res.returncode == 3
    assert "has never published its status" in res.stderr
