"""Value types that cross boundaries: readings from drivers, events to the store.

Both are frozen, slotted dataclasses. ``mono`` is ``time.monotonic()`` (for timers and
latency), ``wall`` is ``time.time()`` (a label only: a Pi has no RTC).
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any


class Priority(enum.IntEnum):
    """Delivery order: lower value is sent first and is never evicted before higher ones."""

    ALARM = 0
    WARNING = 1
    INFO = 2
    TELEMETRY = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {value!r}") from None


def new_id() -> str:
    """A unique event id (UUID4, hex). Stable across retries because it is stored."""
    return uuid.uuid4().hex


def _freeze(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


# An unpublished reading a driver emits for every battery level, battery-low flag or
# temperature it hears (data ``battery_pct``, ``low_flag``, ``temperature_c``): the input of
# the device-condition rules (``agent/conditions.py``), never an activity or a walk-test hit.
MEASUREMENT = "measurement"


@dataclass(frozen=True, slots=True)
class Reading:
    """Something a driver observed: a pin edge, a decoded advert, a serial frame.

    ``type`` and ``priority`` say what the reading means when it is passed through as
    an event (``publish=True``); raw streams (accelerometer samples) set ``publish=False``
    and are only seen by detectors.
    """

    device_id: str
    type: str
    priority: Priority = Priority.TELEMETRY
    data: Mapping[str, Any] = field(default_factory=dict)
    mono: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)
    publish: bool = True
    id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _freeze(self.data))


@dataclass(frozen=True, slots=True)
class Event:
    """An event as stored and published. ``seq`` is assigned by the store on commit."""

    type: str
    priority: Priority
    device_id: str
    data: Mapping[str, Any] = field(default_factory=dict)
    wall: float = field(default_factory=time.time)
    mono: float = field(default_factory=time.monotonic)
    clock_synced: bool = False
    id: str = field(default_factory=new_id)
    seq: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _freeze(self.data))

    @classmethod
    def from_reading(cls, reading: Reading, clock_synced: bool = False) -> Event:
        return cls(
            type=reading.type,
            priority=reading.priority,
            device_id=reading.device_id,
            data=reading.data,
            wall=reading.wall,
            mono=reading.mono,
            clock_synced=clock_synced,
            id=reading.id,
        )

    def to_json_dict(self, hub_id: str) -> dict[str, Any]:
        """The published form. Field names are a contract (see README, Event JSON)."""
        return {
            "id": self.id,
            "hub_id": hub_id,
            "seq": self.seq,
            "type": self.type,
            "priority": self.priority.label,
            "device_id": self.device_id,
            "ts": iso_utc(self.wall),
            "clock_synced": self.clock_synced,
            "data": dict(self.data),
        }


def iso_utc(wall: float) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix."""
    dt = datetime.fromtimestamp(wall, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
