"""Summaries of a hub's local store, per local day and over a whole period.

Used by the daily ``summary`` event (one day, with live figures from the running agent)
and by ``tec-agent report`` (several days, from the store alone: figures only the running
agent could measure, such as broker offline minutes and battery levels, come from the
``summary`` events it stored for those days).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from agent.model import Priority
from agent.report.period import day_bounds
from agent.report.records import Record, last_before, read_records, records_from
from agent.report.summary import SUPERVISION_TYPES, DeviceFacts, Summary, summarise
from agent.store.sqlite_store import backlog_of

SUMMARY_TYPE = "summary"


def backlog_dict(db: sqlite3.Connection, now: float) -> dict[str, Any]:
    """Pending events per priority, their total and the age of the oldest."""
    b = backlog_of(db)
    oldest = min(b.oldest_wall.values()) if b.oldest_wall else None
    doc: dict[str, Any] = {p.label: b.counts.get(p.label, 0) for p in Priority}
    doc["total"] = b.total
    doc["oldest_age_s"] = None if oldest is None else round(max(0.0, now - oldest), 1)
    return doc


def summarise_day(
    db: sqlite3.Connection,
    day: date,
    tz: ZoneInfo,
    *,
    now: float,
    devices: Sequence[DeviceFacts] = (),
    offline_minutes: float | None = None,
    backlog: Mapping[str, Any] | None = None,
) -> Summary:
    start, end = day_bounds(day, tz)
    records = [r for r in read_records(db, start, end) if r.type != SUMMARY_TYPE]
    return summarise(
        records, start, end, label=day.isoformat(), timezone=str(tz.key), now=now,
        devices=devices, prior_supervision=last_before(db, SUPERVISION_TYPES, start),
        offline_minutes=offline_minutes, backlog=backlog, known_from=_known_from(db, end),
    )


def _known_from(db: sqlite3.Connection, end: float) -> float:
    """Uptime is counted from when the store's records begin (an empty store: nothing)."""
    first = records_from(db)
    return end if first is None else first


@dataclass(frozen=True, slots=True)
class Report:
    hub_id: str
    generated: float
    timezone: str
    days: tuple[Summary, ...]
    total: Summary
    offline_days_known: int
    # Alarms sent to the Alarm Receiving Centre (agent/arc/): None when the hub has no ARC
    # path. {"acked", "pending", "refused", "latency_ms": {count, median, p95, max}}.
    arc: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        from agent.model import iso_utc

        total = self.total.to_dict() | {"offline_days_known": self.offline_days_known}
        if self.arc is not None:
            total["arc_delivery"] = self.arc
        return {
            "hub_id": self.hub_id,
            "generated": iso_utc(self.generated),
            "timezone": self.timezone,
            "days": [d.to_dict() for d in self.days],
            "total": total,
        }


def _sent_summaries(db: sqlite3.Connection, start: float, end: float) -> dict[str, Record]:
    """The stored ``summary`` events by the day they describe (sent shortly after it)."""
    out: dict[str, Record] = {}
    for rec in read_records(db, start, end + 3 * 86400):
        if rec.type == SUMMARY_TYPE and isinstance(rec.data.get("date"), str):
            out[rec.data["date"]] = rec
    return out


def _remembered_facts(devices: Sequence[DeviceFacts], sent: Record | None) -> list[DeviceFacts]:
    """Configured devices, with battery and signal as the day's summary event recorded them,
    then any device that summary listed and the config no longer names (it was there)."""
    if sent is None:
        return list(devices)
    known = {d.get("device_id"): d for d in sent.data.get("devices") or []
             if isinstance(d, dict) and isinstance(d.get("device_id"), str)}
    out = []
    for dev in devices:
        rec = known.pop(dev.device_id, None) or {}
        out.append(replace(
            dev,
            as_of=dev.as_of if dev.battery_pct is not None else sent.wall,
            battery_pct=(dev.battery_pct if dev.battery_pct is not None
                         else _float(rec.get("battery_pct"))),
            rssi=dev.rssi if dev.rssi is not None else _int(rec.get("rssi")),
        ))
    for dev_id, rec in known.items():
        kind = rec.get("kind")
        out.append(DeviceFacts(str(dev_id), kind if isinstance(kind, str) else "",
                               _float(rec.get("battery_pct")), _int(rec.get("rssi")), sent.wall))
    return out


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def build_report(
    db: sqlite3.Connection,
    *,
    hub_id: str,
    tz: ZoneInfo,
    days: Sequence[date],
    now: float,
    devices: Sequence[DeviceFacts] = (),
) -> Report:
    """Per-day summaries for ``days`` (oldest first) and one over the whole period."""
    first_start, _ = day_bounds(days[0], tz)
    _, last_end = day_bounds(days[-1], tz)
    sent = _sent_summaries(db, first_start, last_end)
    per_day = []
    known_offline = []
    latest_sent: Record | None = None
    for day in days:
        rec = sent.get(day.isoformat())
        latest_sent = rec or latest_sent
        offline = rec.data.get("offline_minutes") if rec is not None else None
        offline = float(offline) if isinstance(offline, (int, float)) else None
        if offline is not None:
            known_offline.append(offline)
        per_day.append(summarise_day(db, day, tz, now=now,
                                     devices=_remembered_facts(devices, rec or latest_sent),
                                     offline_minutes=offline))
    backlog = backlog_dict(db, now)
    records = [r for r in read_records(db, first_start, last_end) if r.type != SUMMARY_TYPE]
    label = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
    total = summarise(
        records, first_start, last_end, label=label, timezone=str(tz.key), now=now,
        devices=_remembered_facts(devices, latest_sent),
        prior_supervision=last_before(db, SUPERVISION_TYPES, first_start),
        offline_minutes=sum(known_offline) if known_offline else None, backlog=backlog,
        known_from=_known_from(db, last_end),
    )
    return Report(hub_id, now, str(tz.key), tuple(per_day), total, len(known_offline),
                  _arc_delivery(db, first_start, last_end))


def _arc_delivery(db: sqlite3.Connection, start: float, end: float) -> dict[str, Any] | None:
    """ARC acknowledgements of the period's alarms (event on the hub -> the receiver's ACK)."""
    from agent.report.summary import LatencyStats
    from agent.store.arc_delivery import arc_summary, read_latencies

    counts = arc_summary(db, start, end)
    if counts is None:
        return None
    latencies = read_latencies(db, start, end)
    # Acknowledged with no latency: sent again after a restart (the hub's monotonic time of
    # the alarm is gone).
    return {**counts, "latency_ms": LatencyStats.of(latencies).to_dict(),
            "latency_unknown": max(0, counts.get("acked", 0) - len(latencies))}


def configured_devices(config: Any) -> list[DeviceFacts]:
    """Every device the config names, with its kind, in config order."""
    out: list[DeviceFacts] = []
    for dev in getattr(config.gpio, "devices", ()):
        if dev.kind not in ("led", "buzzer"):
            out.append(DeviceFacts(dev.id, dev.kind))
    for dev in getattr(getattr(config, "ble", None), "devices", ()):
        out.append(DeviceFacts(dev.id, getattr(dev, "kind", "ble")))
    for unit in getattr(getattr(config, "serial", None), "units", ()):
        out.append(DeviceFacts(unit.id, "telecare_unit"))
    return out
