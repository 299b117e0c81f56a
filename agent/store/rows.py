"""Checking a stored event row before it leaves the hub.

A worn SD card can hand back a row whose payload is no longer the JSON that was committed.
Such a row must never be published on the alarm topic as it is: :func:`check_row` says
what is wrong, and :func:`damaged_row_data` keeps what can still be read so the hub can
report it as a ``store_damaged_row`` warning.
"""

from __future__ import annotations

import json
from typing import Any

from agent.model import Priority

_EXCERPT = 120


def check_row(seq: Any, event_id: Any, prio: Any, payload: Any) -> str | None:
    """None if the row is sound, else why not. The payload must be the JSON object the
    store serialised for this very row (same seq, id and priority)."""
    if not isinstance(payload, bytes | str):
        return f"payload is {type(payload).__name__}, not text"
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"payload is not valid JSON ({exc})"
    if not isinstance(doc, dict):
        return "payload is not a JSON object"
    if doc.get("seq") != seq:
        return f"payload seq {doc.get('seq')!r} does not match the row's {seq!r}"
    if doc.get("id") != event_id:
        return "payload id does not match the row's"
    try:
        if doc.get("priority") != Priority(prio).label:
            return f"payload priority {doc.get('priority')!r} does not match the row's"
    except ValueError:
        return f"row priority {prio!r} is unknown"
    for key in ("type", "device_id", "ts"):
        if not isinstance(doc.get(key), str):
            return f"payload {key} is missing"
    return None


def _text(value: Any, limit: int = 64) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, int | float) or value is None:
        return value
    return repr(value)[:limit]


def damaged_row_data(seq: Any, event_id: Any, prio: Any, etype: Any, device_id: Any,
                     wall: Any, payload: Any, reason: str) -> dict[str, Any]:
    """What could be read of a damaged row, as a warning's ``data``."""
    try:
        label = Priority(prio).label
    except (ValueError, TypeError):
        label = _text(prio)
    size = len(payload) if isinstance(payload, bytes | str) else None
    return {
        "seq": _text(seq), "event_id": _text(event_id), "priority": label,
        "event_type": _text(etype), "event_device_id": _text(device_id),
        "wall": _text(wall), "reason": reason[:200], "payload_bytes": size,
        "payload_excerpt": _text(payload, _EXCERPT),
    }
