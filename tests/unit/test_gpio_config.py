"""[gpio] config: every bad entry is a problem line naming the entry."""

from __future__ import annotations

import pytest

from agent.config import parse_config_text
from agent.errors import ConfigError

HEAD = 'hub_id = "hub-1"\n[gpio]\npin_factory = "mock"\n'


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(HEAD + body)
    return info.value.problems


def test_full_valid_example_loads() -> None:
    cfg = parse_config_text(HEAD + """
[[gpio.devices]]
id = "pir-hall"
kind = "pir"
pin = 4
room = "hall"
sample_rate_hz = 20.0
[[gpio.devices]]
id = "bed"
kind = "bed_mat"
pin = 6
settle_s = 10.0
[[gpio.devices]]
id = "cancel"
kind = "cancel_button"
pin = 26
hold_s = 2.0
[[gpio.devices]]
id = "cord"
kind = "pull_cord"
pin = 3
invert = true
[[gpio.devices]]
id = "status"
kind = "led"
pin = 24
active_high = false
""")
    devs = {d.id: d for d in cfg.gpio.devices}
    assert devs["bed"].effective_settle_s() == 10.0
    assert devs["cancel"].effective_hold_s() == 2.0
    assert devs["cord"].effective_bounce_s() == 0.05
    assert devs["pir-hall"].effective_bounce_s() == 0.0


def test_pin_conflict_names_both_entries() -> None:
    lines = problems("""
[[gpio.devices]]
id = "a"
kind = "door"
pin = 17
[[gpio.devices]]
id = "b"
kind = "pull_cord"
pin = 17
""")
    assert lines == ["gpio.devices[1].pin: pin 17 of 'b' already used by 'a'"]


def test_unknown_kind_names_the_entry_path() -> None:
    (line,) = problems('[[gpio.devices]]\nid = "x"\nkind = "doorbell"\npin = 5\n')
    assert line.startswith("gpio.devices[0].kind: expected one of pir, door")
    assert "'doorbell'" in line


@pytest.mark.parametrize("extra,key", [
    ("settle_s = 3.0", "settle_s"),
    ("hold_s = 2.0", "hold_s"),
    ("sample_rate_hz = 50.0", "sample_rate_hz"),
    ("queue_len = 3", "queue_len"),
])
def test_option_for_another_kind_is_rejected(extra: str, key: str) -> None:
    (line,) = problems(f'[[gpio.devices]]\nid = "front"\nkind = "door"\npin = 5\n{extra}\n')
    assert line.startswith(f"gpio.devices[0].{key}: does not apply (entry 'front', kind door)")


def test_output_options() -> None:
    lines = problems('[[gpio.devices]]\nid = "led"\nkind = "led"\npin = 5\nbounce_s = 0.1\n'
                     'invert = true\n')
    assert any(x.startswith("gpio.devices[0].bounce_s: does not apply") for x in lines)
    assert any(x.startswith("gpio.devices[0].invert: does not apply") for x in lines)


def test_fixed_pull_up_pin_needs_pull_up() -> None:
    (line,) = problems('[[gpio.devices]]\nid = "pir"\nkind = "pir"\npin = 2\n')
    assert "GPIO2 (I2C SDA) has a fixed pull-up" in line and "'pir'" in line


def test_out_of_range_and_both_pulls() -> None:
    lines = problems('[[gpio.devices]]\nid = "c"\nkind = "pull_cord"\npin = 40\n'
                     '[[gpio.devices]]\nid = "d"\nkind = "door"\npin = 5\npull_up = true\n'
                     'active_high = true\n')
    assert "gpio.devices[0].pin: expected 0..27, got 40" in lines
    assert any("set pull_up or active_high, not both (entry 'd'" in x for x in lines)


def test_check_config_cli_reports_gpio_and_serial_problems(tmp_path, capsys) -> None:
    from agent.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + """
[[gpio.devices]]
id = "cord"
kind = "pull_cord"
pin = 17
[[gpio.devices]]
id = "door"
kind = "door"
pin = 17
hold_s = 2.0
[[gpio.devices]]
id = "bell"
kind = "doorbell"
pin = 5

[[serial.units]]
id = "unit"
port = "ttyUSB0"
parity = "X"
""")
    assert main(["check-config", str(bad)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert "gpio.devices[2] ('bell').kind: expected one of" in text
    assert "serial.units[0] ('unit').parity: expected one of N, E, O, got 'X'" in text
    good = tmp_path / "good.toml"
    good.write_text(HEAD + '[[gpio.devices]]\nid = "cord"\nkind = "pull_cord"\npin = 17\n'
                    '[[serial.units]]\nid = "unit"\nport = "/dev/serial/by-id/usb-FTDI-if00"\n')
    assert main(["check-config", str(good)]) == 0
    assert "devices: 2" in capsys.readouterr().out
