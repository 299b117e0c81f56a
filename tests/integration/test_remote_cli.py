"""``tec-agent remote`` against ``tec-agent run``: two real processes and a real broker."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from agent.remote.keys import load_private_key
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_keygen_writes_a_private_and_a_public_key_and_never_overwrites(tmp_path: Path) -> None:
    res = _cli("remote", "keygen", "--key-id", "desk-2026", "--out", str(tmp_path / "k"))
    assert res.returncode == 0, res.stderr
    key, pub = tmp_path / "k" / "desk-2026.key", tmp_path / "k" / "desk-2026.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    again = _cli("remote", "keygen", "--key-id", "desk-2026", "--out", str(tmp_path / "k"))
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = _cli("remote", "keygen", "--key-id", "../evil", "--out", str(tmp_path / "k"))
    assert bad.returncode == 2
    # Not in a terminal and no passphrase given: written unencrypted, with a warning.
    assert "not encrypted" in res.stderr and b"ENCRYPTED" not in key.read_bytes()
    quiet = _cli("remote", "keygen", "--key-id", "hsm", "--out", str(tmp_path / "k"),
                 "--no-passphrase")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_keygen_encrypts_the_key_with_a_passphrase_file(tmp_path: Path) -> None:
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple\n")
    res = _cli("remote", "keygen", "--key-id", "desk", "--out", str(tmp_path / "k"),
               "--passphrase-file", str(phrase))
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr and "(encrypted;" in res.stdout
    key = tmp_path / "k" / "desk.key"
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "correct horse" not in res.stdout + res.stderr
    assert load_private_key(key, b"correct horse battery staple") is not None
    empty = tmp_path / "empty"
    empty.write_text("\n")
    res = _cli("remote", "keygen", "--key-id", "other", "--out", str(tmp_path / "k"),
               "--passphrase-file", str(empty))
    assert res.returncode == 2 and "empty" in res.stderr
    assert not (tmp_path / "k" / "other.key").exists()


def test_cli_pushes_config_runs_commands_and_restarts_a_running_agent(
    remote_env: RemoteEnv,
) -> None:
    e = remote_env
    pw = e.tmp / "support.pass"
    pw.write_text("support-pw-1\n")
    broker = f"mqtt://support@{e.broker.host}:{e.broker.port}"
    common = ["--hub", HUB, "--broker", broker, "--password-file", str(pw)]
    signed = [*common, "--key", str(e.key_path)]
    log_path = e.tmp / "agent.log"
    with open(log_path, "w") as log_file:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(e.config_path)],
            stdout=subprocess.DEVNULL, stderr=log_file,
        )
    try:
        status = e.broker.subscribe(f"tec/v1/{HUB}/status", username="support",
                                    password="support-pw-1")
        status.wait_for(lambda ms: ms and ms[-1].json()["state"] == "online", timeout=30,
                        what="online")

        res = _cli("remote", "cmd", "status", *signed)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["status"] == "ok" and doc["result"]["online"] is True

        # The same key, encrypted with a passphrase (same file name: same key id).
        enc_dir = e.tmp / "encrypted"
        enc_dir.mkdir()
        enc_key = enc_dir / e.key_path.name
        enc_key.write_bytes(load_private_key(e.key_path).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"desk passphrase")))
        phrase = e.tmp / "phrase"
        phrase.write_text("desk passphrase\n")
        with_enc = [*common, "--key", str(enc_key)]
        res = _cli("remote", "cmd", "status", *with_enc)
        assert res.returncode == 2 and "--key-passphrase-file" in res.stderr
        res = _cli("remote", "cmd", "status", *with_enc, "--key-passphrase-file", str(phrase))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["result"]["online"] is True

        full = tomllib.loads(e.config_path.read_text())
        full["inactivity"]["inactivity"][0]["after_s"] = 5400.0
        push = e.tmp / "new.json"
        push.write_text(json.dumps(full))
        res = _cli("remote", "push-config", str(push), *signed)
        assert res.returncode == 0, res.stderr + res.stdout
        assert json.loads(res.stdout)["status"] == "accepted"
        assert tomllib.loads(
            e.config_path.read_text()
        )["inactivity"]["inactivity"][0]["after_s"] == 5400.0

        bad = e.tmp / "bad.toml"
        bad.write_text("[inactivity]\nprewarning_s = -1\n")
        res = _cli("remote", "push-config", str(bad), "--merge", *signed)
        assert res.returncode == 1 and "invalid_config" in res.stderr
        assert "inactivity.prewarning_s" in json.loads(res.stdout)["problems"][0]

        res = _cli("remote", "cmd", "status", *common, "--key", str(e.rogue_key_path),
                   "--key-id", "support-1")
        assert res.returncode == 1 and "bad_signature" in res.stderr

        res = _cli("remote", "cmd", "walk_test", *signed, "--arg", "action=start",
                   "--arg", "duration_s=30")
        assert res.returncode == 0 and json.loads(res.stdout)["result"]["active"] is True

        res = _cli("remote", "get-config", *common)
        assert res.returncode == 0
        assert json.loads(res.stdout)["config"]["inactivity"]["inactivity"][0]["after_s"] == 5400.0

        res = _cli("remote", "cmd", "restart", *signed)
        assert res.returncode == 0 and json.loads(res.stdout)["result"]["restarting"] is True
        assert agent.wait(15) == 0  # a clean exit: systemd (Restart=always) starts it again
        last = status.wait_for(lambda ms: ms[-1].json()["state"] == "offline" and ms[-1],
                               what="offline")
        assert last.json()["reason"] == "shutdown"

        res = _cli("remote", "cmd", "status", *signed, "--timeout", "1")
        assert res.returncode == 3 and "no answer" in res.stderr
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
    log_text = log_path.read_text()
    assert "remote restart command" in log_text
    assert e.broker.password not in log_text


def test_cli_reports_local_problems_with_exit_2(remote_env: RemoteEnv) -> None:
    e = remote_env
    res = _cli("remote", "cmd", "status", "--hub", HUB, "--key", str(e.tmp / "missing.key"),
               "--broker", f"mqtt://support@{e.broker.host}:{e.broker.port}")
    assert res.returncode == 2 and "cannot read key" in res.stderr
    res = _cli("remote", "push-config", str(e.tmp / "nope.toml"), "--hub", HUB,
               "--key", str(e.key_path))
    assert res.returncode == 2 and "cannot read" in res.stderr
    wrong = e.tmp / "wrong.pass"
    wrong.write_text("not-the-password\n")
    res = _cli("remote", "cmd", "status", "--hub", HUB, "--key", str(e.key_path), "--broker",
               f"mqtt://support@{e.broker.host}:{e.broker.port}", "--password-file", str(wrong))
    assert res.returncode == 2 and "refused" in res.stderr
    res = _cli("remote", "cmd", "status", "--hub", HUB, "--key", str(e.key_path), "--broker", "http://x")
    assert res.returncode == 2 and "mqtt[s]://" in res.stderr


def test_plaintext_url_to_a_tls_listener_says_to_use_mqtts(tmp_path: Path) -> None:
    """The shipped broker profile listens with TLS only; `mqtt://` to it used to end in
    'broker refused the connection: Unspecified error', which says nothing of the cause."""
    from tests.harness import TestBroker, write_pki

    tls = write_pki(tmp_path / "pki")
    broker = TestBroker(tmp_path / "broker", tls_files=tls)
    broker.start()
    try:
        res = _cli("remote", "get-config", "--hub", HUB, "--broker",
                   f"mqtt://{broker.username}@{broker.host}:{broker.port}",
                   "--password-file", str(broker.password_file), timeout=30)
        assert res.returncode == 2, res.stderr
        assert "use mqtts://" in res.stderr, res.stderr
        res = _cli("remote", "get-config", "--hub", HUB, "--broker",
                   f"mqtts://{broker.username}@{broker.host}:{broker.port}", "--ca-file", tls[0],
                   "--password-file", str(broker.password_file), "--timeout", "1", timeout=30)
        assert "refused" not in res.stderr, res.stderr   # the same broker, spoken to in TLS
    finally:
        broker.close()


def test_remote_hubs_as_support_says_the_device_figures_are_unknown(
        remote_env: RemoteEnv) -> None:
    """The shipped ACL keeps device state from the support account (mosquitto grants the
    subscription and delivers nothing): the hub it sees online has its device figures
    unknown, not 0 devices and none offline, while the platform account hears them."""
    from tests.harness import wait_until

    e = remote_env
    runner = e.start_agent()
    wait_until(lambda: runner.agent.state.online, 20, what="the hub online")
    platform = e.broker.subscribe(f"tec/v1/{HUB}/device/+", username="platform",
                                  password=e.broker.users["platform"])
    platform.wait_for(lambda ms: len(ms) >= 1, 10, what="the hub's retained device state")
    (support_pw := e.tmp / "support.pass").write_text(e.broker.users["support"] + "\n")
    support_pw.chmod(0o600)
    url = f"mqtt://support@{e.broker.host}:{e.broker.port}"
    res = _cli("remote", "hubs", "--broker", url, "--password-file", str(support_pw),
               "--listen", "1", "--json")
    assert res.returncode == 0, res.stderr
    (hub,) = json.loads(res.stdout)
    assert (hub["hub_id"], hub["state"]) == (HUB, "online")
    assert (hub["devices"], hub["devices_offline"], hub["battery_low"]) == (None, None, None)
    text = _cli("remote", "hubs", "--broker", url, "--password-file", str(support_pw),
                "--listen", "1")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith(HUB))
    assert line.split()[-2:] == ["unknown", "unknown"]
