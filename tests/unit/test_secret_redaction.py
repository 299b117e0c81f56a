"""No secret (BLE bindkey, MQTT password, key passphrase) is echoed by a config problem, a
log line (message or traceback) or a CLI error, however wrongly it was typed."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import parse_config_text
from agent.errors import ConfigError
from agent.systemd_notify import RedactFilter

KEY = "90bffd73cb6b26ef58a7a8eba9232036"
BASE = 'hub_id = "hub-1"\n[store]\npath = "/tmp/tec-redaction-test.db"\n'
DEVICE = 'id = "pendant"\naddress = "B4:35:22:F5:3D:A4"\nkind = "bthome"\n'


INT_KEY = "901234567890123456"


def _problems(text: str, top: str = "") -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config_text('hub_id = "hub-1"\n' + top + BASE.split("\n", 1)[1] + text)
    return [str(exc.value), *exc.value.problems]


@pytest.mark.parametrize("text, top, where, secret", [
    # Unquoted: TOML reads the digits as an integer.
    (f"[[ble.devices]]\n{DEVICE}bindkey = {INT_KEY}\n", "", "ble.devices[0].bindkey", INT_KEY),
    (f'[[ble.devices]]\n{DEVICE}bindkey = ["{KEY}"]\n', "", "ble.devices[0].bindkey", KEY),
    (f'[[ble.devices]]\n{DEVICE}bindkey = {{ key = "{KEY}" }}\n', "", "ble.devices[0].bindkey",
     KEY),
    # The device written as one inline table instead of an array of tables.
    (f'[ble]\ndevices = {{ id = "p", address = "B4:35:22:F5:3D:A4", kind = "bthome",'
     f' bindkey = "{KEY}" }}\n', "", "ble.devices", KEY),
    # The whole [ble] section as an array by mistake.
    ("", f'ble = [{{ bindkey = "{KEY}" }}]\n', "ble", KEY),
])
def test_a_wrongly_typed_bindkey_is_never_echoed(text: str, top: str, where: str,
                                                 secret: str) -> None:
    problems = _problems(text, top)
    joined = "\n".join(problems)
    assert any(p.startswith(where + ":") for p in problems[1:]), problems
    for fragment in (secret[:8], secret[-8:]):
        assert fragment not in joined, (fragment, problems)


def test_the_problem_still_says_what_is_wrong() -> None:
    problems = _problems(f'[[ble.devices]]\n{DEVICE}bindkey = ["{KEY}"]\n')
    assert ("ble.devices[0].bindkey: expected string, got an array of 1 (not shown: a secret)"
            in problems)


def test_non_secret_values_are_still_shown() -> None:
    assert "mqtt.port: expected int, got 'abc'" in _problems('[mqtt]\nport = "abc"\n')


def test_check_config_prints_no_bindkey(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BASE + f'[[ble.devices]]\n{DEVICE}bindkey = ["{KEY}"]\n')
    res = subprocess.run([sys.executable, "-m", "agent", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "ble.devices[0] ('pendant').bindkey" in res.stdout
    assert KEY[:8] not in res.stdout + res.stderr


def _logger_with(secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactFilter(secrets))
    logger = logging.getLogger(f"test.redaction.{id(out)}")
    logger.propagate = False
    logger.handlers = [handler]
    return logger, out


def test_a_secret_in_a_traceback_is_redacted() -> None:
    logger, out = _logger_with([KEY])
    try:
        raise ValueError(f"cannot decrypt with {KEY}")
    except ValueError:
        logger.exception("advert from %s failed", "pendant")
    text = out.getvalue()
    assert "advert from pendant failed" in text and "ValueError: cannot decrypt with ***" in text
    assert KEY not in text


def test_a_hex_secret_is_redacted_whatever_its_case() -> None:
    logger, out = _logger_with([KEY.upper()])
    logger.warning("key bytes %s", bytes.fromhex(KEY).hex())
    assert KEY not in out.getvalue() and "key bytes ***" in out.getvalue()


def test_config_secrets_has_the_bindkeys_and_the_mqtt_password(tmp_path: Path) -> None:
    from agent.redaction import config_secrets

    pw = tmp_path / "mqtt.pass"
    pw.write_text("hunter2-broker\n")
    cfg = parse_config_text(BASE + f'[mqtt]\nhost = "127.0.0.1"\nusername = "u"\n'
                            f'password_file = "{pw}"\n'
                            f'[[ble.devices]]\n{DEVICE}bindkey = "{KEY}"\n')
    assert set(config_secrets(cfg)) == {KEY, "hunter2-broker"}


def test_new_secrets_reach_the_installed_log_filter() -> None:
    from agent.systemd_notify import update_log_secrets

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactFilter(["old-secret"]))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        update_log_secrets([KEY])
        root.error("pushed key %s", KEY)
    finally:
        root.removeHandler(handler)
    assert KEY not in out.getvalue() and "pushed key ***" in out.getvalue()


@pytest.mark.parametrize("option", ["--password-file", "--key-passphrase-file"])
def test_a_secret_given_where_its_file_belongs_is_not_echoed(tmp_path: Path, option: str) -> None:
    from agent.remote.keys import generate_keypair

    key, _ = generate_keypair("desk", tmp_path)
    res = subprocess.run([sys.executable, "-m", "agent", "remote", "cmd", "status", "--hub", "h",
                          "--key", str(key), "--broker", "mqtt://support@127.0.0.1:1",
                          option, "correct-horse-battery"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert option in res.stderr and "no such file" in res.stderr
    assert "correct-horse" not in res.stdout + res.stderr
