"""BTHome v1/v2 decoding through the ``bthome-ble`` library (never hand-written).

``bthome-ble`` is the parser Home Assistant ships: it handles every object id, the
encryption (AES-CCM with the per-device bindkey, nonce from MAC + UUID + counter), replay
protection (encryption counter), downgrade refusal and packet-id duplicate filtering. Its
public result (``SensorUpdate``) accumulates values across adverts, so we record what each
advert produced by overriding the parser's public ``update_sensor`` /
``update_binary_sensor`` / ``fire_event`` hooks, then call the library as usual. That the
library kept an advert out as a repeat (same or older packet id within 4 s, or the same
encrypted bytes again) is read from its public state: it did not take the advert as its
``last_service_info`` and found nothing wrong with it (no downgrade, a valid version).

One :class:`BTHomeDecoder` per device: the library keeps per-device state (packet id,
encryption counter) that must not be shared between devices.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.parser import BTHomeData, BTHomeVersion, EncryptionScheme
from habluetooth import BluetoothServiceInfoBleak

from drivers.ble.advert import Advert

log = logging.getLogger(__name__)

_IGNORED_SENSORS = frozenset({"signal_strength", "packet_id"})


class DecodeStatus(enum.Enum):
    OK = "ok"                        # decoded (possibly with nothing of interest in it)
    DUPLICATE = "duplicate"          # same or older packet id / identical encrypted advert
    NO_KEY = "no_key"                # encrypted, but no bindkey configured
    DECRYPT_FAILED = "decrypt_failed"  # wrong bindkey, tampered or replayed advert
    DOWNGRADE = "downgrade"          # plaintext from a device that has a bindkey
    INVALID = "invalid"              # not BTHome, bad version, truncated or garbage


@dataclass(frozen=True, slots=True)
class Measurement:
    key: str            # "temperature", "temperature_2", "battery", ...
    kind: str           # the device class: "temperature", "humidity", "battery", ...
    value: Any
    unit: str | None


@dataclass(frozen=True, slots=True)
class BTHomeUpdate:
    """What one advert said. Empty tuples when the status is not OK."""

    status: DecodeStatus
    measurements: tuple[Measurement, ...] = ()
    binaries: tuple[tuple[str, bool], ...] = ()     # (key, value): ("opening", True)
    events: tuple[tuple[str, str], ...] = ()        # (key, event type): ("button", "press")
    packet_id: int | None = None
    encrypted: bool = False
    sleepy: bool = False

    @property
    def ok(self) -> bool:
        return self.status is DecodeStatus.OK


class _RecordingParser(BTHomeBluetoothDeviceData):
    """The library parser, noting what the current advert produced."""

    def __init__(self, bindkey: bytes | None) -> None:
        self.rec_sensors: list[Measurement] = []
        self.rec_binaries: list[tuple[str, bool]] = []
        self.rec_events: list[tuple[str, str]] = []
        self.rec_packet_id: int | None = None
        super().__init__(bindkey=bindkey)

    def begin(self) -> None:
        self.rec_sensors.clear()
        self.rec_binaries.clear()
        self.rec_events.clear()
        self.rec_packet_id = None

    def update_sensor(  # type: ignore[override]
        self, key: str, native_unit_of_measurement: Any, native_value: Any,
        device_class: Any = None, name: str | None = None, device_id: str | None = None,
    ) -> None:
        super().update_sensor(
            key=key, native_unit_of_measurement=native_unit_of_measurement,
            native_value=native_value, device_class=device_class, name=name,
            device_id=device_id,
        )
        kind = str(device_class.value if hasattr(device_class, "value") else device_class or key)
        if kind == "packet_id" and isinstance(native_value, (int, float)):
            self.rec_packet_id = int(native_value)
        if kind in _IGNORED_SENSORS:
            return
        unit = native_unit_of_measurement
        self.rec_sensors.append(
            Measurement(key=key, kind=kind, value=native_value,
                        unit=None if unit is None else str(getattr(unit, "value", unit)))
        )

    def update_binary_sensor(  # type: ignore[override]
        self, key: str, native_value: bool | None, device_class: Any = None,
        name: str | None = None, device_id: str | None = None,
    ) -> None:
        super().update_binary_sensor(
            key=key, native_value=native_value, device_class=device_class, name=name,
            device_id=device_id,
        )
        if native_value is not None:
            self.rec_binaries.append((key, bool(native_value)))

    def fire_event(  # type: ignore[override]
        self, key: str, event_type: str, event_properties: Any = None,
        name: str | None = None, device_id: str | None = None,
    ) -> None:
        super().fire_event(
            key=key, event_type=event_type, event_properties=event_properties, name=name,
            device_id=device_id,
        )
        self.rec_events.append((key, event_type))

class BTHomeDecoder:
    """Decode one device's adverts. Never raises: bad input gives ``DecodeStatus.INVALID``."""

    def __init__(self, bindkey: bytes | None = None) -> None:
        if bindkey is not None and len(bindkey) != 16:
            raise ValueError("a BTHome bindkey is 16 bytes")
        self._parser = _RecordingParser(bindkey)
        self._bindkey = bindkey
        self._device: BLEDevice | None = None    # one per device, not one per advert

    def _ble_device(self, advert: Advert) -> BLEDevice:
        dev = self._device
        if dev is None or dev.address != advert.address or dev.name != advert.name:
            dev = self._device = BLEDevice(advert.address, advert.name, None)
        return dev

    def decode(self, advert: Advert) -> BTHomeUpdate:
        if advert.bthome_payload is None and not any(
            k.startswith(("0000181c-", "0000181e-")) for k in advert.service_data
        ):
            return BTHomeUpdate(DecodeStatus.INVALID)
        info = BluetoothServiceInfoBleak(
            name=advert.name or advert.address,
            address=advert.address,
            rssi=advert.rssi,
            manufacturer_data=dict(advert.manufacturer_data),
            service_data=dict(advert.service_data),
            service_uuids=list(advert.service_data),
            source="local",
            device=self._ble_device(advert),  # never read by the parser
            advertisement=None,
            connectable=False,
            time=advert.mono,
            tx_power=None,
        )
        p = self._parser
        p.begin()
        before = p.last_service_info
        try:
            p.update(info)
        except Exception as exc:  # noqa: BLE001 - any malformed input must not crash the driver
            log.debug("BTHome advert from %s not decodable: %r", advert.address, exc)
            return BTHomeUpdate(DecodeStatus.INVALID)
        encrypted = p.encryption_scheme is EncryptionScheme.BTHOME_BINDKEY
        nothing = not (p.rec_sensors or p.rec_binaries or p.rec_events) and p.rec_packet_id is None
        bad: bool | None = None      # asked of the library at most once (it logs the answer)
        if (nothing and before is not None and p.last_service_info is before
                and not p.downgrade_detected
                and (encrypted or _plain_packet_id(advert.bthome_payload) is not None)):
            bad = _bad_version(info)
            if not bad:
                return BTHomeUpdate(DecodeStatus.DUPLICATE, encrypted=encrypted)
        if p.downgrade_detected:
            return BTHomeUpdate(DecodeStatus.DOWNGRADE, encrypted=False)
        if encrypted and nothing and (_bad_version(info) if bad is None else bad):
            return BTHomeUpdate(DecodeStatus.INVALID)
        if encrypted and self._bindkey is None:
            return BTHomeUpdate(DecodeStatus.NO_KEY, encrypted=True)
        if encrypted and (p.decryption_failed or nothing):
            # Wrong key, a tampered advert, or an old encryption counter (a replay).
            return BTHomeUpdate(DecodeStatus.DECRYPT_FAILED, encrypted=True)
        if nothing:
            # Nothing parsed: wrong version, truncated object or unknown object id first.
            return BTHomeUpdate(DecodeStatus.INVALID, encrypted=encrypted)
        return BTHomeUpdate(
            DecodeStatus.OK,
            measurements=tuple(p.rec_sensors),
            binaries=tuple(p.rec_binaries),
            events=tuple(p.rec_events),
            packet_id=p.rec_packet_id,
            encrypted=encrypted,
            sleepy=bool(p.sleepy_device),
        )


def _plain_packet_id(payload: bytes | None) -> int | None:
    """The packet id of an unencrypted BTHome v2 advert (object 0x00, first by the spec's
    ordering), None if it carries none: a repeat the library dropped has one."""
    if not payload or len(payload) < 3 or payload[0] & 0x01 or payload[0] >> 5 != 2:
        return None
    return payload[2] if payload[1] == 0x00 else None


def _bad_version(info: BluetoothServiceInfoBleak) -> bool:
    """True if the advert's header names no existing BTHome version (asked of the library)."""
    try:
        return BTHomeData(info).get_bthome_version() is BTHomeVersion.INVALID
    except Exception:  # noqa: BLE001
        return True
