"""Capture-line format (contract) and the [ble] config section."""

from __future__ import annotations

import json

import pytest

from agent.config import parse_config_text
from agent.errors import ConfigError, DecodeError
from drivers.ble.advert import BTHOME_UUID, Advert, advert_from_json_line

LINE = ('{"ts": 1732460000.5, "address": "A4:C1:38:8D:18:B2", "rssi": -67, "name": "ATC", '
        '"service_data": {"0000fcd2-0000-1000-8000-00805f9b34fb": "4002ca09"}, '
        '"manufacturer_data": {"76": "0215"}}')


def test_parse_capture_line() -> None:
    a = advert_from_json_line(LINE)
    assert a.address == "A4:C1:38:8D:18:B2" and a.rssi == -67 and a.ts == 1732460000.5
    assert a.bthome_payload == bytes.fromhex("4002ca09")
    assert a.manufacturer_data == {76: bytes.fromhex("0215")}


def test_round_trip() -> None:
    a = Advert(address="A4:C1:38:8D:18:B2", rssi=-50, ts=5.25, mono=1.0, name=None,
               service_data={BTHOME_UUID: b"\x40\x01"}, manufacturer_data={0x004C: b"\x02"})
    doc = json.loads(a.to_json_line())
    assert doc == {"ts": 5.25, "address": "A4:C1:38:8D:18:B2", "rssi": -50, "name": None,
                   "service_data": {BTHOME_UUID: "4001"}, "manufacturer_data": {"76": "02"}}
    assert advert_from_json_line(a.to_json_line()).service_data == a.service_data


@pytest.mark.parametrize("line, fragment", [
    ("nope", "invalid JSON"),
    ("[1]", "JSON object"),
    ('{"address": "A4:C1:38:8D:18:B2"}', "ts"),
    ('{"ts": 1, "address": "nope"}', "address"),
    ('{"ts": 1, "address": "A4:C1:38:8D:18:B2", "rssi": "x"}', "rssi"),
    ('{"ts": 1, "address": "A4:C1:38:8D:18:B2", "service_data": {"fcd2": "40"}}', "UUID"),
    (f'{{"ts": 1, "address": "A4:C1:38:8D:18:B2", "service_data": {{"{BTHOME_UUID}": "4g"}}}}',
     "not hex"),
    ('{"ts": 1, "address": "A4:C1:38:8D:18:B2", "manufacturer_data": {"apple": "00"}}',
     "company id"),
])
def test_malformed_lines_name_the_problem(line: str, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        advert_from_json_line(line)


BASE = 'hub_id = "h1"\n'


def test_ble_section_and_device_ids() -> None:
    cfg = parse_config_text(BASE + """
[ble]
cold_home_c = 15.0
[[ble.devices]]
id = "pendant"
address = "b4:35:22:f5:3d:a4"
kind = "bthome"
bindkey = "90bffd73cb6b26ef58a7a8eba9232036"
[[ble.devices]]
id = "wrist"
address = "D1:00:00:00:00:01"
kind = "wearable"
profile = "thingy52"
rate_hz = 100
""")
    assert cfg.ble.cold_home_c == 15.0
    assert cfg.ble.devices[0].mac == "B4:35:22:F5:3D:A4"
    assert ("ble.devices[1]", "wrist") in cfg.device_ids()
    assert "90bffd" not in repr(cfg.ble.devices[0])      # the bindkey is a secret


@pytest.mark.parametrize("body, fragment", [
    ('id="x"\naddress="zz"\nkind="bthome"', "ble.devices[0].address"),
    ('id="x"\naddress="AA:BB:CC:DD:EE:FF"\nkind="watch"', "ble.devices[0].kind"),
    ('id="x"\naddress="AA:BB:CC:DD:EE:FF"\nkind="wearable"', "ble.devices[0].profile: required"),
    ('id="x"\naddress="AA:BB:CC:DD:EE:FF"\nkind="bthome"\nprofile="thingy52"', "only applies"),
    ('id="x"\naddress="AA:BB:CC:DD:EE:FF"\nkind="wearable"\nprofile="thingy52"\nrate_hz=20',
     "ble.devices[0].rate_hz"),
])
def test_invalid_devices_name_the_key(body: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config_text(BASE + "[[ble.devices]]\n" + body + "\n")
    assert fragment in str(exc.value)


def test_bad_bindkey_is_reported_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config_text(BASE + '[[ble.devices]]\nid="x"\naddress="AA:BB:CC:DD:EE:FF"\n'
                                 'kind="bthome"\nbindkey="90bffd73cb6b26ef58a7a8eba923203"\n')
    assert "ble.devices[0].bindkey" in str(exc.value)
    assert "90bffd73" not in str(exc.value)


def test_duplicate_address_and_id_across_sections() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config_text(BASE + """
[[ble.devices]]
id = "a"
address = "AA:BB:CC:DD:EE:FF"
kind = "bthome"
[[ble.devices]]
id = "a"
address = "aa:bb:cc:dd:ee:ff"
kind = "bthome"
""")
    text = str(exc.value)
    assert "already used by 'a'" in text and "duplicate device id 'a'" in text
