"""The support desk's fleet view: one line per hub from what the ingester's database (or a
short listen on the broker, stored the same way) knows.

State, in order of evidence:
- the hub's ``status`` topic (``online``/``offline`` and since when, the last will's reason);
- an ``offline`` status older than a live event from the hub (the event proves it is up:
  a status lost between broker nodes, or a will that fired on a broker the hub left);
- no status at all (RabbitMQ hands retained messages only to subscribers of the exact topic
  on the node that holds them): ``online`` if an event arrived within ``liveness_s``,
  else ``unknown``.

Device figures (``devices``, ``devices_offline``, ``battery_low``) are ``None`` (JSON null,
``unknown`` in the table) when they are not known: 0 devices would say the hub has none.
From a listen on the broker that is every hub no device state was heard from: the shipped
ACLs keep device state from the support account, and mosquitto grants the subscription and
delivers nothing, so "none heard" cannot be told from "not allowed".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.ingest.db import DeviceRow, HubRow
from agent.model import iso_utc

DEFAULT_LIVENESS_S = 900.0
DEFAULT_BATTERY_LOW_PCT = 20.0  # drivers/ble/config.py battery_low_pct's default


@dataclass(frozen=True, slots=True)
class HubView:
    hub_id: str
    state: str                      # online | offline | unknown
    since: str | None               # ISO 8601 UTC
    reason: str | None
    version: str | None
    last_event_ts: str | None
    last_event_type: str | None
    last_seen: str | None           # when the ingester last received an event from it
    backlog: dict[str, Any] | None  # from the hub's latest daily summary
    backlog_ts: str | None
    devices: int | None             # None: device state could not be read (not 0)
    devices_offline: tuple[str, ...] | None
    battery_low: tuple[str, ...] | None
    events: int
    duplicates: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "hub_id": self.hub_id, "state": self.state, "since": self.since,
            "reason": self.reason, "version": self.version,
            "last_event_ts": self.last_event_ts, "last_event_type": self.last_event_type,
            "last_seen": self.last_seen, "backlog": self.backlog, "backlog_ts": self.backlog_ts,
            "devices": self.devices,
            "devices_offline": None if self.devices_offline is None
            else list(self.devices_offline),
            "battery_low": None if self.battery_low is None else list(self.battery_low),
            "events": self.events,
            "duplicates": self.duplicates,
        }


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _state(h: HubRow, now: float, liveness_s: float) -> tuple[str, str | None, str | None]:
    seen = h.last_seen
    status_at = _epoch(h.status_ts)
    if h.state in ("online", "offline"):
        if h.state == "offline" and seen is not None and status_at is not None \
                and seen > status_at:
            return "online", iso_utc(seen), "events after its offline status"
        return h.state, h.status_ts, h.reason
    if seen is not None and now - seen <= liveness_s:
        return "online", None, f"no status; an event within {liveness_s:g} s"
    return "unknown", None, "no status" + ("" if seen is None else "; no recent event")


def build_views(hubs: list[HubRow], devices: list[DeviceRow], now: float,
                liveness_s: float = DEFAULT_LIVENESS_S,
                battery_low_pct: float = DEFAULT_BATTERY_LOW_PCT,
                none_is_unknown: bool = False) -> list[HubView]:
    """``none_is_unknown``: a hub without device rows has its device figures None (a
    listen on the broker, which may not be allowed to read device state), not 0."""
    by_hub: dict[str, list[DeviceRow]] = {}
    for d in devices:
        by_hub.setdefault(d.hub_id, []).append(d)
    views = []
    for h in hubs:
        state, since, reason = _state(h, now, liveness_s)
        devs = by_hub.get(h.hub_id, [])
        known = bool(devs) or not none_is_unknown
        views.append(HubView(
            hub_id=h.hub_id, state=state, since=since, reason=reason, version=h.version,
            last_event_ts=h.last_event_ts, last_event_type=h.last_event_type,
            last_seen=None if h.last_seen is None else iso_utc(h.last_seen),
            backlog=h.backlog, backlog_ts=h.backlog_ts, devices=len(devs) if known else None,
            devices_offline=tuple(d.device_id for d in devs if d.online is False)
            if known else None,
            battery_low=tuple(d.device_id for d in devs
                              if d.battery is not None and d.battery < battery_low_pct)
            if known else None,
            events=h.events, duplicates=h.duplicates,
        ))
    return views


def _devices(ids: tuple[str, ...] | None) -> str:
    return "unknown" if ids is None else ",".join(ids) or "-"


def render_table(views: list[HubView]) -> str:
    """Plain text, one line per hub, offline and unknown hubs first."""
    order = {"offline": 0, "unknown": 1, "online": 2}
    rows = [("HUB", "STATE", "SINCE", "VERSION", "LAST EVENT", "BACKLOG", "DEV OFFLINE",
             "BATTERY LOW")]
    for v in sorted(views, key=lambda v: (order.get(v.state, 3), v.hub_id)):
        state = v.state + (f" ({v.reason})" if v.reason and v.state != "online" else "")
        last = f"{v.last_event_type} {v.last_event_ts}" if v.last_event_ts else "-"
        backlog = "-" if not v.backlog else str(v.backlog.get("total", "?"))
        rows.append((v.hub_id, state, v.since or "-", v.version or "-", last, backlog,
                     _devices(v.devices_offline), _devices(v.battery_low)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    counts = {s: sum(1 for v in views if v.state == s) for s in ("online", "offline", "unknown")}
    lines.append(f"{len(views)} hubs: {counts['online']} online, {counts['offline']} offline, "
                 f"{counts['unknown']} unknown")
    return "\n".join(lines) + "\n"
