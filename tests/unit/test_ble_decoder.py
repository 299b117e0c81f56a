"""BTHome decoding through bthome-ble on recorded payloads (the library's own test vectors,
see tests/data/ble/README.md), encrypted and wrong-key cases, and garbage that must never
crash the decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ble.advert import BTHOME_UUID, Advert
from drivers.ble.bthome_decoder import BTHomeDecoder, DecodeStatus

DATA = Path(__file__).resolve().parents[1] / "data" / "ble" / "bthome_vectors.json"
VECTORS: dict[str, Any] = json.loads(DATA.read_text())


def hexb(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def advert(payload: bytes, t: float = 100.0, address: str = "A4:C1:38:8D:18:B2",
           name: str | None = "TEST") -> Advert:
    return Advert(address=address, rssi=-60, ts=1.7e9 + t, mono=t, name=name,
                  service_data={BTHOME_UUID: payload})


def check_expectation(update: Any, expect: dict[str, Any]) -> None:
    assert update.status is DecodeStatus.OK
    if "packet_id" in expect:
        assert update.packet_id == expect["packet_id"]
    values = {m.key: m.value for m in update.measurements}
    assert values == pytest.approx(expect.get("measurements", {}))
    assert dict(update.binaries) == expect.get("binaries", {})
    assert [list(e) for e in update.events] == expect.get("events", [])


@pytest.mark.parametrize("vec", VECTORS["recorded"], ids=lambda v: v["name"])
def test_recorded_vectors_decode_as_the_library_tests_assert(vec: dict[str, Any]) -> None:
    key = hexb(vec["bindkey"]) if "bindkey" in vec else None
    update = BTHomeDecoder(key).decode(
        advert(hexb(vec["payload"]), address=vec["address"], name=vec["local_name"]))
    check_expectation(update, vec["expect"])
    assert update.encrypted is ("bindkey" in vec)


@pytest.mark.parametrize("vec", VECTORS["synthesised"], ids=lambda v: v["name"])
def test_synthesised_objects_decode(vec: dict[str, Any]) -> None:
    check_expectation(BTHomeDecoder().decode(advert(hexb(vec["payload"]))), vec["expect"])


def test_units_come_from_the_library() -> None:
    vec = next(v for v in VECTORS["recorded"] if v["name"] == "atc_packet_temp_hum_battery")
    update = BTHomeDecoder().decode(advert(hexb(vec["payload"])))
    assert {m.key: m.unit for m in update.measurements} == {
        "battery": "%", "temperature": "°C", "humidity": "%"}


def test_wrong_bindkey_is_a_decrypt_failure_with_no_values() -> None:
    case = VECTORS["encryption_wrong_key"]
    update = BTHomeDecoder(hexb(case["bindkey"])).decode(
        advert(hexb(case["payload"]), address=case["address"]))
    assert update.status is DecodeStatus.DECRYPT_FAILED
    assert update.measurements == () and update.events == () and update.binaries == ()


def test_right_payload_with_another_devices_key_fails() -> None:
    vec = next(v for v in VECTORS["recorded"] if v["name"] == "shelly_blu_button1_encrypted_press")
    wrong = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    update = BTHomeDecoder(wrong).decode(advert(hexb(vec["payload"]), address=vec["address"]))
    assert update.status is DecodeStatus.DECRYPT_FAILED
    assert update.events == ()


def test_encrypted_without_key_is_reported_as_no_key() -> None:
    vec = next(v for v in VECTORS["recorded"] if v["name"] == "shelly_blu_ht_encrypted")
    update = BTHomeDecoder().decode(advert(hexb(vec["payload"]), address=vec["address"]))
    assert update.status is DecodeStatus.NO_KEY
    assert update.measurements == ()


def test_plaintext_from_a_device_with_a_key_is_refused() -> None:
    update = BTHomeDecoder(bytes(range(16))).decode(advert(hexb("4002ca0903bf13")))
    assert update.status is DecodeStatus.DOWNGRADE
    assert update.measurements == ()


def test_replayed_encryption_counter_is_refused() -> None:
    case = VECTORS["encryption_counter"]
    dec = BTHomeDecoder(hexb(case["bindkey"]))
    first = dec.decode(advert(hexb(case["counter_1122867"]), 1.0, case["address"]))
    second = dec.decode(advert(hexb(case["counter_1122868"]), 2.0, case["address"]))
    replay = dec.decode(advert(hexb(case["counter_1122867"]), 3.0, case["address"]))
    assert first.ok and second.ok
    assert replay.status is DecodeStatus.DECRYPT_FAILED


def test_same_packet_id_within_four_seconds_is_a_duplicate() -> None:
    dec = BTHomeDecoder()
    payload = hexb("440021015e3a01")
    first = dec.decode(advert(payload, 10.0))
    again = dec.decode(advert(payload, 11.0))
    older = dec.decode(advert(hexb("440020015e3a01"), 11.5))
    newer = dec.decode(advert(hexb("440022015e3a01"), 12.0))
    assert first.events == (("button", "press"),)
    assert again.status is DecodeStatus.DUPLICATE
    assert older.status is DecodeStatus.DUPLICATE
    assert newer.ok and newer.packet_id == 34


@pytest.mark.parametrize("payload", ["", "40", "4002", "4002ca", "e1ff", "00", "41", "4100112233"])
def test_short_and_invalid_payloads_are_invalid(payload: str) -> None:
    assert BTHomeDecoder().decode(advert(hexb(payload))).status in (
        DecodeStatus.INVALID, DecodeStatus.NO_KEY)


def test_advert_without_bthome_service_data_is_invalid() -> None:
    a = Advert(address="A4:C1:38:8D:18:B2", rssi=-50, ts=1.0, mono=1.0,
               service_data={"0000181a-0000-1000-8000-00805f9b34fb": b"\x01\x02"})
    assert BTHomeDecoder().decode(a).status is DecodeStatus.INVALID


def test_bindkey_must_be_16_bytes() -> None:
    with pytest.raises(ValueError):
        BTHomeDecoder(b"short")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=40), with_key=st.booleans())
def test_garbage_never_raises(payload: bytes, with_key: bool) -> None:
    dec = BTHomeDecoder(bytes(16) if with_key else None)
    update = dec.decode(advert(payload))
    assert isinstance(update.status, DecodeStatus)
    # and the decoder still works afterwards
    good = dec.decode(advert(hexb("4002ca0903bf13") if not with_key else payload, 200.0))
    assert isinstance(good.status, DecodeStatus)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_truncated_and_bitflipped_recorded_payloads_never_raise(data: st.DataObject) -> None:
    vec = data.draw(st.sampled_from(VECTORS["recorded"]))
    raw = bytearray(hexb(vec["payload"]))
    cut = data.draw(st.integers(0, len(raw)))
    raw = raw[:cut]
    if raw and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    key = hexb(vec["bindkey"]) if "bindkey" in vec else None
    update = BTHomeDecoder(key).decode(advert(bytes(raw), address=vec["address"]))
    assert isinstance(update.status, DecodeStatus)
    if update.ok:
        assert all(isinstance(m.key, str) for m in update.measurements)


def test_the_same_encrypted_advert_again_is_a_duplicate_a_later_counter_is_not() -> None:
    """The library drops identical encrypted bytes (a device re-broadcasting its last
    packet); the decoder reads that from the library's public state."""
    case = VECTORS["encryption_counter"]
    dec = BTHomeDecoder(hexb(case["bindkey"]))
    first = dec.decode(advert(hexb(case["counter_1122867"]), 1.0, case["address"]))
    again = dec.decode(advert(hexb(case["counter_1122867"]), 9.0, case["address"]))
    later = dec.decode(advert(hexb(case["counter_1122868"]), 10.0, case["address"]))
    assert first.ok and later.ok
    assert again.status is DecodeStatus.DUPLICATE


@pytest.mark.parametrize("payload", ["4002ca", "40", "4100112233", "e1ff"])
def test_garbage_after_a_good_advert_is_invalid_not_a_duplicate(payload: str) -> None:
    dec = BTHomeDecoder()
    assert dec.decode(advert(hexb("440021015e3a01"), 10.0)).ok
    status = dec.decode(advert(hexb(payload), 11.0)).status
    assert status is BTHomeDecoder().decode(advert(hexb(payload), 11.0)).status   # as if fresh
    assert status in (DecodeStatus.INVALID, DecodeStatus.NO_KEY)
