from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config, parse_config_text
from agent.errors import ConfigError

GOOD = """
hub_id = "hub-0001"
[mqtt]
host = "127.0.0.1"
port = 1883
username = "hub-0001"
password_file = "{pw}"
[store]
path = "/var/lib/tec-agent/events.db"
max_mb = 256
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    return info.value.problems


def test_fixed_keys_load_into_frozen_dataclasses(tmp_path: Path) -> None:
    pw = tmp_path / "mqtt.pass"
    pw.write_text("s3cret\n")
    cfg = parse_config_text(GOOD.format(pw=pw))
    assert cfg.hub_id == "hub-0001"
    assert cfg.mqtt.port == 1883 and cfg.mqtt.username == "hub-0001"
    assert cfg.store.max_mb == 256
    with pytest.raises(AttributeError):
        cfg.mqtt.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('hub_id = "a/b"', "hub_id:"),
        ('hub_id = "a+b"', "hub_id:"),
        ('hub_id = ""', "hub_id:"),
        ('hub_id = "h"\n[mqtt]\nport = "abc"', "mqtt.port: expected int"),
        ('hub_id = "h"\n[mqtt]\nport = 70000', "mqtt.port: expected 1..65535"),
        ('hub_id = "h"\n[mqtt]\nhots = "x"', "mqtt.hots: unknown key"),
        ('hub_id = "h"\n[mqtt]\npassword_file = "/nonexistent/pw"\nusername = "u"',
         "mqtt.password_file: file not found: /nonexistent/pw"),
        ('hub_id = "h"\n[store]\nmax_mb = 0', "store.max_mb"),
        ('hub_id = "h"\n[store]\nmax_mb = true', "store.max_mb: expected int"),
        ('[store]\nmax_mb = 5', "hub_id: required"),
        ('hub_id = "h"\n[mqtt]\nhost = "broker.example.org"', "mqtt.tls_ca_file: required"),
        ('hub_id = "h"\nstore = 3', "store: expected a table"),
        ('hub_id = "h"\n[agent]\ntimezone = "Mars/Base"', "agent.timezone"),
    ],
)
def test_each_problem_names_its_key_path(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(expected in p for p in problems), problems


def test_all_problems_reported_at_once() -> None:
    problems = _problems('hub_id = "a b"\n[mqtt]\nport = 0\nfoo = 1\n[store]\nmax_mb = -1')
    assert len(problems) == 4


def test_bad_toml_is_one_clear_problem() -> None:
    problems = _problems('hub_id = "h\n[mqtt')
    assert len(problems) == 1 and "invalid TOML" in problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_gpio_pin_conflict_names_the_entry() -> None:
    problems = _problems(
        'hub_id = "h"\n[[gpio.devices]]\nid = "a"\nkind = "pir"\npin = 4\n'
        '[[gpio.devices]]\nid = "b"\nkind = "door"\npin = 4\n'
    )
    assert any(p.startswith("gpio.devices[1].pin") and "'a'" in p for p in problems), problems


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=60)


def test_check_config_cli_ok(tmp_path: Path) -> None:
    pw = tmp_path / "mqtt.pass"
    pw.write_text("s3cret\n")
    path = tmp_path / "ok.toml"
    path.write_text(GOOD.format(pw=pw))
    res = _cli("check-config", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "hub-0001" in res.stdout and "OK" in res.stdout
    assert "s3cret" not in res.stdout + res.stderr


@pytest.mark.parametrize(
    "text, key",
    [
        ('hub_id = "h"\n[mqtt]\nport = "abc"\n', "mqtt.port"),
        ('hub_id = "h"\n[mqtt\n', "invalid TOML"),
        ('hub_id = "x/y"\n', "hub_id"),
        ('hub_id = "h"\n[store]\nmax_mb = 0\nbogus = 1\n', "store.bogus"),
    ],
)
def test_check_config_cli_invalid_exits_2_without_traceback(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    res = _cli("check-config", str(path))
    assert res.returncode == 2
    assert key in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_check_config_cli_missing_file(tmp_path: Path) -> None:
    res = _cli("check-config", str(tmp_path / "missing.toml"))
    assert res.returncode == 2 and "file not found" in res.stdout
    assert "Traceback" not in res.stderr


def test_will_delay_defaults_to_a_few_seconds_and_stays_within_the_session() -> None:
    assert parse_config_text('hub_id = "h"\n').mqtt.will_delay_s == 5
    with pytest.raises(ConfigError, match=r"mqtt\.will_delay_s: greater than session_expiry_s"):
        parse_config_text('hub_id = "h"\n[mqtt]\nsession_expiry_s = 10\nwill_delay_s = 30\n')


@pytest.mark.parametrize("section", [
    '[[gpio.devices]]\nid = "cord.1"\nkind = "pull_cord"\npin = 17\n',
    '[[serial.units]]\nid = "unit.1"\nport = "/dev/ttyUSB0"\n',
    '[[ble.devices]]\nid = "pendant.1"\nkind = "button"\naddress = "A4:C1:38:8D:18:B2"\n',
])
def test_device_ids_may_not_contain_a_dot(section: str) -> None:
    """A device id is an MQTT topic level (device/{device_id}); RabbitMQ maps '.' to '/'."""
    with pytest.raises(ConfigError, match=r"\.id: must be 1-64 of A-Z a-z 0-9 _ - .*RabbitMQ"):
        parse_config_text('hub_id = "h"\n' + section)
