"""The support CLI refuses plaintext MQTT to a broker off this machine unless told
``--insecure``: the broker password and signed pushes (which may carry secrets) would
otherwise cross the network readable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.remote.client import SupportClient, parse_broker_url


@pytest.mark.parametrize("url", ["mqtt://support@broker.example:1883", "mqtt://10.0.0.5",
                                 "mqtt://support@[2001:db8::1]:1883"])
def test_plaintext_off_loopback_is_refused_with_what_to_do(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        SupportClient(parse_broker_url(url), "pw")
    text = str(exc.value)
    assert "mqtts://" in text and "--insecure" in text and "plaintext" in text


@pytest.mark.parametrize("url", ["mqtt://support@127.0.0.1:1883", "mqtt://localhost",
                                 "mqtt://[::1]:1883", "mqtts://support@broker.example:8883"])
def test_loopback_and_tls_are_allowed(url: str) -> None:
    SupportClient(parse_broker_url(url), "pw").close()


def test_insecure_allows_plaintext_off_loopback() -> None:
    SupportClient(parse_broker_url("mqtt://support@broker.example"), "pw", insecure=True).close()


def _cmd(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    from agent.remote.keys import generate_keypair

    key, _ = generate_keypair("desk", tmp_path)
    return subprocess.run([sys.executable, "-m", "agent", "remote", "cmd", "status", "--hub", "h",
                           "--key", str(key), "--broker", "mqtt://support@no-such-host.invalid",
                           "--timeout", "1", *extra],
                          capture_output=True, text=True, timeout=60)


def test_cli_refuses_plaintext_to_another_host(tmp_path: Path) -> None:
    res = _cmd(tmp_path)
    assert res.returncode == 2
    # The shipped profile's staff listener: its 8883 refuses every account but the hubs'.
    assert "mqtts://support@no-such-host.invalid:8884" in res.stderr and "--insecure" in res.stderr


def test_cli_with_insecure_goes_on_to_connect(tmp_path: Path) -> None:
    res = _cmd(tmp_path, "--insecure")
    assert res.returncode == 2 and "cannot reach broker no-such-host.invalid" in res.stderr
    assert "--insecure" not in res.stderr
