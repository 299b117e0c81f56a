"""Outcome figures over a period, computed from stored events (pure: no I/O, no clock).

The same computation feeds the daily ``summary`` event and ``tec-agent report``, so a
support visit sees exactly what the monitoring platform was told. The field names of
:meth:`Summary.to_dict` are the ``summary`` event's ``data`` contract:

``date`` (local day, ISO), ``start``/``end`` (ISO UTC), ``timezone``, ``partial``,
``clock_synced``; ``alarms_total``, ``alarms_by_type`` {type: n} (every alarm-priority
event: pull_cord, pendant, fall, inactivity...); ``cancelled_alarms``,
``cancelled_by_type`` (alarms named by ``alarm_cancelled`` plus wearer-cancelled falls);
``falls``, ``falls_cancelled``, ``falls_recovered`` (``fall_recovered`` warnings: falls the
wearer got up from without help; also in ``warnings_by_type``); ``inactivity_alerts``,
``inactivity_by_type``, ``inactivity_prewarnings``; ``test_alarms``; ``warnings_by_type``;
``alarm_latency_ms`` {count, median, p95, max} (hub timestamp to broker PUBACK, synchronised
clock only);
``undelivered_alarms``; ``delivered_alarms``; ``alarm_latency_unknown`` {reason: n} (delivered
alarms left out of the latency, and why); ``records_from`` (ISO UTC: device uptime covers only
the part of the period the store has records for; null: all of it); ``devices``
[{device_id, kind, uptime_pct, offline_minutes, offline_events, battery_pct, battery_low,
rssi}]; ``offline_minutes`` (hub not connected to the broker; null when unknown);
``backlog`` {alarm, warning, info, telemetry, total, oldest_age_s}. The daily event adds
``agent_running_minutes``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.model import Priority, iso_utc
from agent.report.records import Record

INACTIVITY_TYPES = frozenset(
    {"inactivity", "not_up", "night_out_of_bed", "chair_too_long", "night_exit", "not_returned"}
)
OFFLINE, ONLINE = "device_offline", "device_online"
SUPERVISION_TYPES = (OFFLINE, ONLINE)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What is known about a device apart from its events (config, live inventory)."""

    device_id: str
    kind: str = ""
    battery_pct: float | None = None
    rssi: int | None = None
    as_of: float | None = None       # wall time the battery/signal were known (None: now)


@dataclass(frozen=True, slots=True)
class DeviceStats:
    device_id: str
    kind: str
    uptime_pct: float | None         # share of the period not marked offline by supervision
    offline_minutes: float
    offline_events: int
    battery_pct: float | None
    battery_low: bool
    rssi: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "uptime_pct": _round(self.uptime_pct, 2),
            "offline_minutes": _round(self.offline_minutes, 1),
            "offline_events": self.offline_events,
            "battery_pct": _round(self.battery_pct, 1),
            "battery_low": self.battery_low,
            "rssi": self.rssi,
        }


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Alarm delivery latency: event stamped on the hub -> broker acknowledgement (PUBACK)."""

    count: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> LatencyStats:
        if not values_ms:
            return cls()
        ordered = sorted(values_ms)
        rank = max(0, math.ceil(0.95 * len(ordered)) - 1)   # nearest-rank percentile
        return cls(len(ordered), statistics.median(ordered), ordered[rank], ordered[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "median": _round(self.median_ms, 1),
                "p95": _round(self.p95_ms, 1), "max": _round(self.max_ms, 1)}


@dataclass(frozen=True, slots=True)
class Summary:
    label: str                                  # "2025-11-24", or "2025-11-18..2025-11-24"
    start: float
    end: float
    timezone: str
    partial: bool                               # the period is still in progress
    clock_synced: bool                          # every event stamped with a synchronised clock
    alarms_by_type: Mapping[str, int]
    cancelled_by_type: Mapping[str, int]
    falls: int
    falls_cancelled: int
    inactivity_by_type: Mapping[str, int]
    inactivity_prewarnings: int
    test_alarms: int
    warnings_by_type: Mapping[str, int]
    latency: LatencyStats
    undelivered_alarms: int
    devices: tuple[DeviceStats, ...]
    offline_minutes: float | None               # hub not connected to the broker
    backlog: Mapping[str, Any] | None = None    # pending events at the time of computing
    extra: Mapping[str, Any] = field(default_factory=dict)
    delivered_alarms: int = 0                   # acknowledged by the broker
    latency_unknown: Mapping[str, int] = field(default_factory=dict)  # reason -> delivered
    records_from: float | None = None           # uptime counted from here (None: period start)
    falls_recovered: int = 0                    # fall_recovered warnings: no help needed

    @property
    def alarms(self) -> int:
        return sum(self.alarms_by_type.values())

    @property
    def cancelled_alarms(self) -> int:
        return sum(self.cancelled_by_type.values())

    @property
    def inactivity_alerts(self) -> int:
        return sum(self.inactivity_by_type.values())

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "date": self.label,
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "timezone": self.timezone,
            "partial": self.partial,
            "clock_synced": self.clock_synced,
            "alarms_total": self.alarms,
            "alarms_by_type": dict(sorted(self.alarms_by_type.items())),
            "cancelled_alarms": self.cancelled_alarms,
            "cancelled_by_type": dict(sorted(self.cancelled_by_type.items())),
            "falls": self.falls,
            "falls_cancelled": self.falls_cancelled,
            "falls_recovered": self.falls_recovered,
            "inactivity_alerts": self.inactivity_alerts,
            "inactivity_by_type": dict(sorted(self.inactivity_by_type.items())),
            "inactivity_prewarnings": self.inactivity_prewarnings,
            "test_alarms": self.test_alarms,
            "warnings_by_type": dict(sorted(self.warnings_by_type.items())),
            "alarm_latency_ms": self.latency.to_dict(),
            "undelivered_alarms": self.undelivered_alarms,
            "delivered_alarms": self.delivered_alarms,
            "alarm_latency_unknown": dict(sorted(self.latency_unknown.items())),
            "records_from": iso_utc(self.records_from) if self.records_from is not None else None,
            "devices": [d.to_dict() for d in self.devices],
            "offline_minutes": _round(self.offline_minutes, 1),
            "backlog": dict(self.backlog) if self.backlog is not None else None,
        }
        doc.update(self.extra)
        return doc


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _offline_seconds(
    transitions: Sequence[Record], initially_offline: bool, start: float, end: float
) -> tuple[float, int]:
    """Seconds offline within ``[start, end)`` and how many times the device went offline."""
    offline_since = start if initially_offline else None
    total = 0.0
    went_offline = 0
    for rec in transitions:
        t = min(max(rec.wall, start), end)
        if rec.type == OFFLINE and offline_since is None:
            offline_since = t
            went_offline += 1
        elif rec.type == ONLINE and offline_since is not None:
            total += t - offline_since
            offline_since = None
    if offline_since is not None:
        total += end - offline_since
    return total, went_offline


def _latest_battery(fact: DeviceFacts, from_events: tuple[float, float] | None) -> float | None:
    """The newer of what the inventory said and what the period's events said."""
    if from_events is None:
        return fact.battery_pct
    if fact.battery_pct is None or (fact.as_of is not None and fact.as_of < from_events[0]):
        return from_events[1]
    return fact.battery_pct


@dataclass
class _Tally:
    """What :func:`summarise` counts in one pass over the period's records."""

    alarms: Counter[str] = field(default_factory=Counter)
    alarm_types: dict[str, str] = field(default_factory=dict)
    cancelled: Counter[str] = field(default_factory=Counter)
    cancelled_ids: set[str] = field(default_factory=set)
    inactivity: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    falls: int = 0
    falls_cancelled: int = 0
    falls_recovered: int = 0
    prewarnings: int = 0
    tests: int = 0
    undelivered: int = 0
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)
    latency_unknown: Counter[str] = field(default_factory=Counter)
    synced: bool = True
    transitions: dict[str, list[Record]] = field(default_factory=dict)
    battery: dict[str, tuple[float, float]] = field(default_factory=dict)  # device -> (wall, pct)
    battery_low: set[str] = field(default_factory=set)
    seen_devices: list[str] = field(default_factory=list)

    def add(self, rec: Record) -> None:
        self.synced = self.synced and rec.clock_synced
        if rec.priority == Priority.ALARM:
            self._alarm(rec)
        elif rec.priority == Priority.WARNING:
            self.warnings[rec.type] += 1
            if rec.type == "inactivity_prewarning":
                self.prewarnings += 1
            elif rec.type == "fall_recovered":
                self.falls_recovered += 1
        if rec.type == "alarm_cancelled":
            self._cancellation(rec)
        elif rec.type == "fall_cancelled":
            self.falls_cancelled += 1
            self.cancelled["fall"] += 1
        elif rec.type == "test":
            self.tests += 1
        self._device(rec)

    def _alarm(self, rec: Record) -> None:
        self.alarms[rec.type] += 1
        self.alarm_types[rec.id] = rec.type
        if rec.type in INACTIVITY_TYPES:
            self.inactivity[rec.type] += 1
        if rec.type == "fall":
            self.falls += 1
        if rec.acked_wall is None:
            self.undelivered += 1
            return
        self.delivered += 1
        # Both stamps come from the hub's wall clock; an event stamped before NTP
        # synchronised could span a clock step, so its latency is left out: it was
        # delivered all the same, and the report says why its latency is unknown.
        if not rec.clock_synced:
            self.latency_unknown["clock not synchronised"] += 1
        elif rec.acked_wall < rec.wall:
            self.latency_unknown["clock stepped back"] += 1
        else:
            self.latencies.append((rec.acked_wall - rec.wall) * 1000.0)

    def _cancellation(self, rec: Record) -> None:
        ids = rec.data.get("cancelled_ids") or []
        types = rec.data.get("cancelled_types") or []
        for i, eid in enumerate(ids):
            if eid in self.cancelled_ids:
                continue
            self.cancelled_ids.add(eid)
            kind = self.alarm_types.get(eid) or (types[i] if i < len(types) else "unknown")
            self.cancelled[str(kind)] += 1

    def _device(self, rec: Record) -> None:
        if rec.type in SUPERVISION_TYPES:
            self.transitions.setdefault(rec.device_id, []).append(rec)
        pct = rec.data.get("battery_pct")
        if isinstance(pct, (int, float)) and not isinstance(pct, bool):
            self.battery[rec.device_id] = (rec.wall, float(pct))
        if rec.type == "battery_low":
            self.battery_low.add(rec.device_id)
        if rec.type in SUPERVISION_TYPES or rec.type == "battery_low":
            self.seen_devices.append(rec.device_id)


def _device_stats(tally: _Tally, devices: Sequence[DeviceFacts],
                  prior_supervision: Sequence[Record], watched_from: float,
                  effective_end: float) -> list[DeviceStats]:
    """Every configured device, then every other device the records name, in that order."""
    facts = {d.device_id: d for d in devices}
    prior = {r.device_id: r for r in prior_supervision}
    ids = list(facts) + [d for d in dict.fromkeys(tally.seen_devices) if d not in facts]
    span = effective_end - watched_from
    stats = []
    for dev_id in ids:
        fact = facts.get(dev_id, DeviceFacts(dev_id))
        initially_offline = dev_id in prior and prior[dev_id].type == OFFLINE
        off_s, went = _offline_seconds(tally.transitions.get(dev_id, []), initially_offline,
                                       watched_from, effective_end)
        stats.append(DeviceStats(
            device_id=dev_id,
            kind=fact.kind,
            uptime_pct=100.0 * (1.0 - off_s / span) if span > 0 else None,
            offline_minutes=off_s / 60.0,
            offline_events=went,
            battery_pct=_latest_battery(fact, tally.battery.get(dev_id)),
            battery_low=dev_id in tally.battery_low,
            rssi=fact.rssi,
        ))
    return stats


def summarise(
    records: Iterable[Record],
    start: float,
    end: float,
    *,
    label: str,
    timezone: str,
    now: float | None = None,
    devices: Sequence[DeviceFacts] = (),
    prior_supervision: Sequence[Record] = (),
    offline_minutes: float | None = None,
    backlog: Mapping[str, Any] | None = None,
    known_from: float | None = None,
) -> Summary:
    """Figures for events stamped in ``[start, end)``.

    ``devices`` lists the configured devices (always reported, even when silent);
    ``prior_supervision`` holds each device's last ``device_offline``/``device_online``
    before ``start``; ``now`` (if inside the period) cuts the period short for uptime.
    ``known_from``: when the store's records begin (None: before ``start``). Uptime is
    counted from there: before it nothing was watched, so nothing is known (a device is
    not "100 % up" on days before the hub was installed); wholly before it, uptime is None.
    """
    effective_end = end if now is None else max(start, min(end, now))
    watched_from = start if known_from is None else min(max(start, known_from), effective_end)
    tally = _Tally()
    for rec in records:
        tally.add(rec)
    stats = _device_stats(tally, devices, prior_supervision, watched_from, effective_end)
    return Summary(
        label=label, start=start, end=end, timezone=timezone,
        partial=now is not None and now < end, clock_synced=tally.synced,
        alarms_by_type=dict(tally.alarms), cancelled_by_type=dict(tally.cancelled),
        falls=tally.falls, falls_cancelled=tally.falls_cancelled,
        inactivity_by_type=dict(tally.inactivity), inactivity_prewarnings=tally.prewarnings,
        test_alarms=tally.tests, warnings_by_type=dict(tally.warnings),
        latency=LatencyStats.of(tally.latencies), undelivered_alarms=tally.undelivered,
        devices=tuple(stats), offline_minutes=offline_minutes, backlog=backlog,
        delivered_alarms=tally.delivered, latency_unknown=dict(tally.latency_unknown),
        records_from=watched_from if watched_from > start else None,
        falls_recovered=tally.falls_recovered,
    )
