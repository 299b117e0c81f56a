"""Nordic Thingy:52 (firmware 2.x) motion service, raw data characteristic.

From Nordic's firmware (NordicSemiconductor/Nordic-Thingy52-FW, ``include/ble_services/
ble_tms.h`` and ``source/modules/m_motion.c``):

- Motion service ``EF680400-9B35-4933-9B10-52FFA9740042``; configuration ``...0401``
  (``ble_tms_config_t``: uint16 pedometer interval ms, uint16 temperature compensation
  interval ms, uint16 compass interval ms, uint16 motion processing frequency Hz (1..200),
  uint8 wake on motion; little-endian); raw data ``...0406`` notifies ``ble_tms_raw_t``:
  int16 accel x,y,z, int16 gyro x,y,z, int16 compass x,y,z, little-endian, 18 bytes.
- The firmware shifts its Q16.16 values right by the integer bits (6, 11, 12), so the
  accelerometer is Q6.10 (g = raw / 1024), the gyroscope Q11.5 (deg/s = raw / 32) and the
  compass Q12.4 (uT = raw / 16). (Nordic's Web Bluetooth demo divides by 64/2048/4096,
  i.e. by the integer bits; the firmware's shifts are authoritative.)
- One raw sample per notification, at the motion processing frequency.
- The accelerometer's full-scale range is never set by ``source/``, so the MPU-9250 stays at
  the eMPL driver's ``mpu_init`` default, +-2 g (``libs/eMD6/core/driver/eMPL/inv_mpu.c``:
  ``mpu_set_accel_fsr(2)``), and the configuration characteristic cannot change it. +-2 g
  costs falls (models/fall/README.md, "Accelerometer range"); the fall detector names such
  a wearable with an ``accelerometer_clipping`` warning. A pendant needs firmware that sets
  +-4 g or more.
- User interface service ``EF680300-...``, button characteristic ``...0302``: uint8,
  1 pressed, 0 released.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

from agent.errors import DecodeError
from drivers.ble.wearable.profile import GattClient, MotionSample

log = logging.getLogger(__name__)

_BASE = "ef68{:04x}-9b35-4933-9b10-52ffa9740042"
MOTION_CONFIG_CHAR = _BASE.format(0x0401)
RAW_DATA_CHAR = _BASE.format(0x0406)
BUTTON_CHAR = _BASE.format(0x0302)

_RAW = struct.Struct("<9h")
_CONFIG = struct.Struct("<HHHHB")
ACC_LSB_PER_G = 1 << 10
GYRO_LSB_PER_DPS = 1 << 5
MIN_HZ, MAX_HZ = 1, 200


def encode_raw(sample: MotionSample, compass: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """The notification a Thingy sends for ``sample`` (for simulators and tests)."""
    def q(v: float, scale: int) -> int:
        return max(-32768, min(32767, round(v * scale)))

    gyro = sample.gyro_dps or (0.0, 0.0, 0.0)
    return _RAW.pack(*(q(v, ACC_LSB_PER_G) for v in sample.acc_g),
                     *(q(v, GYRO_LSB_PER_DPS) for v in gyro), *compass)


class Thingy52Profile:
    name = "thingy52"
    motion_char = RAW_DATA_CHAR
    button_char: str | None = BUTTON_CHAR
    has_gyro = True

    async def configure(self, client: GattClient, rate_hz: float) -> float:
        want = max(MIN_HZ, min(MAX_HZ, round(rate_hz)))
        current = bytes(await client.read_gatt_char(MOTION_CONFIG_CHAR))
        if len(current) < _CONFIG.size:
            raise DecodeError(f"Thingy:52 motion config is {len(current)} bytes, expected 9")
        pedo, temp, comp, freq, wom = _CONFIG.unpack_from(current)
        if freq != want:
            await client.write_gatt_char(
                MOTION_CONFIG_CHAR, _CONFIG.pack(pedo, temp, comp, want, wom), response=True
            )
            check = bytes(await client.read_gatt_char(MOTION_CONFIG_CHAR))
            freq = _CONFIG.unpack_from(check)[3] if len(check) >= _CONFIG.size else want
            if freq != want:
                log.warning("Thingy:52 %s streams at %d Hz, not the %d Hz asked",
                            client.address, freq, want)
        return float(freq)

    def decode_motion(self, data: bytes) -> Sequence[MotionSample]:
        if len(data) != _RAW.size:
            raise DecodeError(f"Thingy:52 raw data is {len(data)} bytes, expected {_RAW.size}")
        v = _RAW.unpack(data)
        return (
            MotionSample(
                acc_g=(v[0] / ACC_LSB_PER_G, v[1] / ACC_LSB_PER_G, v[2] / ACC_LSB_PER_G),
                gyro_dps=(v[3] / GYRO_LSB_PER_DPS, v[4] / GYRO_LSB_PER_DPS,
                          v[5] / GYRO_LSB_PER_DPS),
            ),
        )

    def decode_button(self, data: bytes) -> bool | None:
        if len(data) != 1 or data[0] > 1:
            return None
        return data[0] == 1
