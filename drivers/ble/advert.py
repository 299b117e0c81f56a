"""One received advertisement as an immutable value, and its capture-file (JSONL) form.

The JSON form is a contract (``tec-agent ble capture`` / ``replay``)::

    {"ts": 1732460000.5, "address": "A4:C1:38:8D:18:B2", "rssi": -67, "name": "...",
     "service_data": {"0000fcd2-0000-1000-8000-00805f9b34fb": "<hex>"},
     "manufacturer_data": {"<company id, decimal>": "<hex>"}}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.errors import DecodeError

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
_MAC_RE = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Advert:
    """What the radio heard. ``ts`` is wall time (a label); ``mono`` orders and times things."""

    address: str
    rssi: int
    ts: float
    mono: float
    name: str | None = None
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "service_data", MappingProxyType(dict(self.service_data)))
        object.__setattr__(
            self, "manufacturer_data", MappingProxyType(dict(self.manufacturer_data))
        )

    @property
    def bthome_payload(self) -> bytes | None:
        return self.service_data.get(BTHOME_UUID)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "ts": round(self.ts, 6),
            "address": self.address,
            "rssi": self.rssi,
            "name": self.name,
            "service_data": {k: v.hex() for k, v in self.service_data.items()},
            "manufacturer_data": {str(k): v.hex() for k, v in self.manufacturer_data.items()},
        }

    def to_json_line(self) -> str:
        return json.dumps(self.to_json_dict(), separators=(", ", ": "))


def _hex_map(value: Any, what: str) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected an object, got {type(value).__name__}")
    out: dict[str, bytes] = {}
    for key, hexstr in value.items():
        if not isinstance(hexstr, str):
            raise DecodeError(f"{what}[{key!r}]: expected a hex string")
        try:
            out[str(key)] = bytes.fromhex(hexstr)
        except ValueError:
            raise DecodeError(f"{what}[{key!r}]: not hex: {hexstr[:40]!r}") from None
    return out


def advert_from_json_dict(doc: Any, mono: float | None = None) -> Advert:
    """Parse one capture line's object. Raises :class:`DecodeError` naming the bad field."""
    if not isinstance(doc, dict):
        raise DecodeError(f"expected a JSON object, got {type(doc).__name__}")
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise DecodeError(f"ts: expected a number, got {ts!r}")
    address = doc.get("address")
    if not isinstance(address, str) or not _MAC_RE.fullmatch(address.upper()):
        raise DecodeError(f"address: expected a Bluetooth address, got {address!r}")
    rssi = doc.get("rssi", -127)
    if isinstance(rssi, bool) or not isinstance(rssi, int):
        raise DecodeError(f"rssi: expected an integer, got {rssi!r}")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise DecodeError(f"name: expected a string, got {name!r}")
    service_data = {
        k.lower(): v for k, v in _hex_map(doc.get("service_data"), "service_data").items()
    }
    for key in service_data:
        if not _UUID_RE.fullmatch(key):
            raise DecodeError(f"service_data: key {key!r} is not a 128-bit UUID")
    manufacturer: dict[int, bytes] = {}
    for key, data in _hex_map(doc.get("manufacturer_data"), "manufacturer_data").items():
        try:
            company = int(key)
        except ValueError:
            raise DecodeError(
                f"manufacturer_data: key {key!r} is not a decimal company id"
            ) from None
        if not 0 <= company <= 0xFFFF:
            raise DecodeError(f"manufacturer_data: company id {company} out of range")
        manufacturer[company] = data
    return Advert(
        address=address.upper(),
        rssi=rssi,
        ts=float(ts),
        mono=float(ts) if mono is None else mono,
        name=name,
        service_data=service_data,
        manufacturer_data=manufacturer,
    )


def advert_from_json_line(line: str, mono: float | None = None) -> Advert:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    return advert_from_json_dict(doc, mono)
