"""What the ingester stores, parsed from one MQTT message: pure, bytes in, a record out.

The topic's hub id is authoritative (the broker's ACL lets a hub write only under its own
id); an event whose ``hub_id`` field disagrees with its topic is not stored as that hub's
event but kept as :class:`Rejected`, with its reason, so nothing that arrived vanishes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.uplink import topics

# The daily summary event (agent/report/build.py SUMMARY_TYPE) carries the hub's backlog.
SUMMARY_TYPE = "summary"
MAX_FIELD = 256  # ids, types and device ids longer than this are not a hub's


@dataclass(frozen=True, slots=True)
class EventRecord:
    hub_id: str
    id: str
    seq: int | None
    type: str
    priority: str
    device_id: str | None
    ts: str
    clock_synced: bool
    data: str           # the event's ``data`` object as compact JSON text
    received_at: float  # wall clock of the ingester when the message arrived

    @property
    def is_alarm(self) -> bool:
        return self.priority == "alarm"

    def backlog(self) -> dict[str, Any] | None:
        """The hub's backlog from a daily summary event, else None."""
        if self.type != SUMMARY_TYPE:
            return None
        value = json.loads(self.data).get("backlog")
        return value if isinstance(value, dict) else None

    def notice(self) -> dict[str, Any]:
        """The short form handed to alarm consumers (NOTIFY payload, callback)."""
        return {"hub_id": self.hub_id, "id": self.id, "type": self.type,
                "priority": self.priority, "device_id": self.device_id, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class StatusRecord:
    hub_id: str
    state: str
    ts: str
    version: str | None
    reason: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    hub_id: str
    device_id: str
    doc: str            # the retained device document as compact JSON text
    online: bool | None
    battery: float | None
    received_at: float


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    payload: bytes
    reason: str
    received_at: float


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    """A full config support pushed to a hub (``config/set``), kept so that any ingester can
    hand it to the hub when the hub asks (``config/request``). The ingester does not verify
    the signature (the hub does); it reads the version from the signed payload."""

    hub_id: str
    version: int
    payload: bytes      # the wire message exactly as support signed it
    received_at: float


@dataclass(frozen=True, slots=True)
class ConfigRequest:
    """A hub, on connecting, asks for its desired config if newer than ``version``."""

    hub_id: str
    version: int
    received_at: float


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not stored (a merge on ``config/set``: it rides the hub's session, not desired state)."""

    topic: str


Record = EventRecord | StatusRecord | DeviceRecord | DesiredConfig | ConfigRequest | Ignored \
    | Rejected


def _text(doc: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise ValueError(f"field {key!r} missing or not a short string")
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def parse(topic: str, payload: bytes, received_at: float, prefix: str = "") -> Record:
    """One message of the tenant ``prefix`` as the record to store."""
    where = topics.split(topic, prefix)
    if where is None:
        return Rejected(topic, payload, "topic outside tec/v1", received_at)
    hub_id, rest = where
    if rest == "config/set" and not payload:
        return Ignored(topic)   # the retained desired config cleared
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if rest == "event":
            return _event(hub_id, doc, received_at)
        if rest == "status":
            return _status(hub_id, doc, received_at)
        if rest.startswith("device/") and rest.count("/") == 1:
            return _device(hub_id, rest.split("/", 1)[1], doc, received_at)
        if rest == "config/set":
            return _desired(topic, hub_id, doc, payload, received_at)
        if rest == "config/request":
            version = doc.get("version", 0)
            if not isinstance(version, int) or isinstance(version, bool):
                raise ValueError("field 'version' is not an integer")
            return ConfigRequest(hub_id, version, received_at)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Rejected(topic, payload, f"malformed: {exc}"[:200], received_at)
    return Rejected(topic, payload, "not an event, status or device topic", received_at)


def _event(hub_id: str, doc: dict[str, Any], received_at: float) -> EventRecord:
    if doc.get("hub_id") != hub_id:
        raise ValueError(f"hub_id {str(doc.get('hub_id'))[:64]!r} differs from the topic's")
    seq = doc.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise ValueError("field 'seq' is not an integer")
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise ValueError("field 'data' is not an object")
    return EventRecord(
        hub_id=hub_id, id=_text(doc, "id") or "", seq=seq, type=_text(doc, "type") or "",
        priority=_text(doc, "priority") or "", device_id=_text(doc, "device_id", False),
        ts=_text(doc, "ts") or "", clock_synced=bool(doc.get("clock_synced")),
        data=_compact(data), received_at=received_at,
    )


def _desired(topic: str, hub_id: str, doc: dict[str, Any], payload: bytes,
             received_at: float) -> DesiredConfig | Ignored:
    inner = doc.get("payload")
    if not isinstance(inner, str):
        raise ValueError("not a signed message (no 'payload')")
    body = json.loads(inner)
    if not isinstance(body, dict) or body.get("kind") != "config":
        raise ValueError("not a signed config")
    if body.get("hub_id") != hub_id:
        raise ValueError(f"hub_id {str(body.get('hub_id'))[:64]!r} differs from the topic's")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("field 'version' is not an integer")
    if body.get("mode") != "full":
        return Ignored(topic)
    return DesiredConfig(hub_id, version, payload, received_at)


def _status(hub_id: str, doc: dict[str, Any], received_at: float) -> StatusRecord:
    state = _text(doc, "state") or ""
    reason = doc.get("reason")
    version = doc.get("version")
    return StatusRecord(hub_id, state, _text(doc, "ts") or "",
                        version if isinstance(version, str) else None,
                        reason if isinstance(reason, str) else None, received_at)


def _device(hub_id: str, device_id: str, doc: dict[str, Any], received_at: float) -> DeviceRecord:
    online = doc.get("online")
    battery = doc.get("battery")
    return DeviceRecord(
        hub_id, device_id, _compact(doc), online if isinstance(online, bool) else None,
        float(battery) if isinstance(battery, int | float) and not isinstance(battery, bool)
        else None, received_at,
    )
