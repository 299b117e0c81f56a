"""Thingy:52 raw-data decoding (Q6.10 g, Q11.5 deg/s) and rate configuration."""

from __future__ import annotations

import asyncio
import struct

import pytest
from bleak.backends.device import BLEDevice

from agent.errors import DecodeError
from drivers.ble.tools.fake_gatt import FakeGattClient, FakePeripheral
from drivers.ble.wearable import thingy52
from drivers.ble.wearable.profile import MotionSample, make_profile


def test_decode_known_bytes() -> None:
    # 1 g on z (1024), -0.5 g on x, gyro 90 deg/s on y (90*32), compass ignored
    raw = struct.pack("<9h", -512, 0, 1024, 0, 2880, -32, 100, 200, 300)
    (s,) = thingy52.Thingy52Profile().decode_motion(raw)
    assert s.acc_g == (-0.5, 0.0, 1.0)
    assert s.gyro_dps == (0.0, 90.0, -1.0)


def test_encode_decode_round_trip_and_clipping() -> None:
    p = thingy52.Thingy52Profile()
    s = MotionSample((1.25, -2.0, 0.0009765625), (250.0, -0.03125, 0.0))
    assert p.decode_motion(thingy52.encode_raw(s)) == (s,)
    (big,) = p.decode_motion(thingy52.encode_raw(MotionSample((100.0, 0.0, 0.0))))
    assert big.acc_g[0] == pytest.approx(32767 / 1024)


@pytest.mark.parametrize("n", [0, 6, 17, 19, 36])
def test_wrong_length_is_a_decode_error(n: int) -> None:
    with pytest.raises(DecodeError):
        thingy52.Thingy52Profile().decode_motion(bytes(n))


def test_button() -> None:
    p = thingy52.Thingy52Profile()
    assert p.decode_button(b"\x01") is True
    assert p.decode_button(b"\x00") is False
    assert p.decode_button(b"\x07") is None and p.decode_button(b"") is None


def test_configure_writes_the_motion_frequency_keeping_other_fields() -> None:
    async def go() -> tuple[float, FakePeripheral]:
        per = FakePeripheral("D1:00:00:00:00:01", motion_freq_hz=10)
        client = FakeGattClient(BLEDevice(per.address, None, per))
        await client.connect()
        rate = await make_profile("thingy52").configure(client, 50.0)
        return rate, per

    rate, per = asyncio.run(go())
    assert rate == 50.0 and per.motion_freq_hz == 50
    (uuid, data), = per.writes
    assert uuid == thingy52.MOTION_CONFIG_CHAR
    assert struct.unpack("<HHHHB", data) == (100, 500, 500, 50, 1)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError):
        make_profile("nope")
