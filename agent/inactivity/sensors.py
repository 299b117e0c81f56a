"""What a reading says about the person: activity, presence on a mat, the front door.

Readings are classified by their contract ``type`` first (see notes/contracts.md), so a
BLE motion sensor and a wired PIR mean the same; the device map adds room, role and kind
for devices whose readings carry no such type (a toilet flush, a microwave in a replayed
log). Telemetry (temperature, battery) is never activity.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.model import Reading

EXIT_ROLE = "main_entrance_door"
BED_ROLES = ("bed_pressure_mat", "bed_mat", "bed")
CHAIR_ROLES = ("seat_pressure_mat", "chair_pressure_mat", "chair_mat", "seat_mat", "chair")
KINDS = ("motion", "door", "bed_mat", "chair_mat", "other")

_GPIO_KINDS = {"pir": "motion", "door": "door", "bed_mat": "bed_mat", "chair_mat": "chair_mat"}
_MAT_TYPES = {
    "bed_occupied": ("bed", True),
    "bed_vacated": ("bed", False),
    "chair_occupied": ("chair", True),
    "chair_vacated": ("chair", False),
}
# The person touched something: activity, and proof of being at home (not the pendant,
# which works in the garden).
_INTERACTION = ("pull_cord", "button", "cancel", "test")


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """One activity sensor of the home, as the rules see it."""

    device_id: str
    kind: str          # one of KINDS
    room: str = ""
    role: str = ""


DeviceMap = Mapping[str, SensorInfo]


@dataclass(frozen=True, slots=True)
class Observation:
    """A reading, reduced to what the rules need."""

    device_id: str
    type: str
    room: str = ""
    activity: bool = True        # resets stillness
    inside: bool = False         # evidence that the person is at home right now
    exit_door: bool = False      # the front door moved
    mat: str | None = None       # "bed" or "chair"
    occupied: bool | None = None
    cancel: bool = False
    momentary: bool = False      # a mat that pulses (see HomeState.mat_momentary)
    short_stay: bool = False     # vacated after a pulse-like stay, mat not yet classified


def mat_kind_for_role(role: str) -> str | None:
    r = role.lower()
    if r in BED_ROLES:
        return "bed_mat"
    if r in CHAIR_ROLES:
        return "chair_mat"
    return None


def classify(
    reading: Reading, devices: DeviceMap, exit_doors: Iterable[str] = ()
) -> Observation | None:
    """The observation a reading makes, or None if it says nothing about the person."""
    info = devices.get(reading.device_id)
    data = reading.data
    room = str(data.get("room") or (info.room if info else ""))
    role = str(data.get("role") or (info.role if info else ""))
    t = reading.type
    dev = reading.device_id
    if t == "motion":
        return Observation(dev, t, room, inside=True)
    if t == "motion_clear":
        return Observation(dev, t, room)
    if t in ("door_open", "door_close"):
        is_exit = role == EXIT_ROLE or dev in exit_doors
        return Observation(dev, t, room, inside=not is_exit, exit_door=is_exit)
    if t in _MAT_TYPES:
        mat, occupied = _MAT_TYPES[t]
        return Observation(dev, t, room, inside=True, mat=mat, occupied=occupied)
    if t in _INTERACTION:
        return Observation(dev, t, room, inside=True, cancel=(t == "cancel"))
    if t == "pendant":
        return Observation(dev, t, room)
    if info is not None and info.kind == "other":
        # A replayed or generic activity sensor (toilet flush, appliance, cupboard).
        state = data.get("state")
        return Observation(dev, t, room, inside=(state != "off"))
    return None


def device_map_from_sensor_json(path: str | Path) -> dict[str, SensorInfo]:
    """The ``{"sensors": {id: {room, kind, role}}}`` map of a recorded home."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot read sensor map: {exc}") from None
    return device_map_from_dict(doc, str(p))


def device_map_from_dict(doc: Any, source: str = "sensor map") -> dict[str, SensorInfo]:
    sensors = doc.get("sensors") if isinstance(doc, dict) else None
    if not isinstance(sensors, dict) or not sensors:
        raise ConfigError(f"{source}: expected an object with a non-empty 'sensors' table")
    out: dict[str, SensorInfo] = {}
    problems = []
    for dev_id, entry in sensors.items():
        if not isinstance(entry, dict):
            problems.append(f"{source}: sensors.{dev_id}: expected an object")
            continue
        kind = str(entry.get("kind", "other"))
        role = str(entry.get("role", ""))
        mat = mat_kind_for_role(role)
        if mat is not None:
            kind = mat
        elif kind not in ("motion", "door"):
            kind = "other"
        out[str(dev_id)] = SensorInfo(str(dev_id), kind, str(entry.get("room", "")), role)
    if problems:
        raise ConfigError(problems)
    return out


def device_map_from_config(config: Any) -> dict[str, SensorInfo]:
    """Activity sensors from the agent config (GPIO kinds; BLE and serial devices by role).

    Sections are read duck-typed (``config.<section>.devices`` with ``id``, ``kind``,
    ``room``, ``role``) so a driver section added later is picked up without changes here.
    """
    out: dict[str, SensorInfo] = {}
    for section in ("gpio", "ble", "serial"):
        sec = getattr(config, section, None)
        for dev in getattr(sec, "devices", ()) or ():
            dev_id = getattr(dev, "id", None)
            if not dev_id:
                continue
            role = str(getattr(dev, "role", "") or "")
            room = str(getattr(dev, "room", "") or "")
            raw_kind = str(getattr(dev, "kind", "") or "")
            kind = _GPIO_KINDS.get(raw_kind) if section == "gpio" else None
            mat = mat_kind_for_role(role)
            if kind is None and mat is not None:
                kind = mat
            if kind is None and section != "gpio" and role == EXIT_ROLE:
                kind = "door"
            if kind is None and section != "gpio" and role.lower() in ("motion", "pir"):
                kind = "motion"
            if kind is None:
                continue
            out[dev_id] = SensorInfo(dev_id, kind, room, role)
    return out
