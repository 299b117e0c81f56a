"""Contact ID event codes <-> our event types and priorities (both directions).

Inbound, a code maps to a reading type and priority; a *restore* (qualifier 3) of any code
is information, never an alarm: its type gets a ``_restore`` suffix. Codes not listed map
by their Contact ID class (1xx alarms, 3xx troubles, 6xx tests) so nothing is dropped.

Outbound (escalation), an event type maps to the code the monitoring centre expects; an
event that carries ``data["contact_id"]`` uses that.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import Priority


@dataclass(frozen=True, slots=True)
class CodeSpec:
    type: str
    priority: Priority
    label: str


INBOUND: dict[int, CodeSpec] = {
    100: CodeSpec("medical", Priority.ALARM, "Medical alarm"),
    101: CodeSpec("pendant", Priority.ALARM, "Personal emergency"),
    102: CodeSpec("fail_to_report", Priority.ALARM, "Failure to report in"),
    110: CodeSpec("fire", Priority.ALARM, "Fire alarm"),
    111: CodeSpec("smoke", Priority.ALARM, "Smoke alarm"),
    113: CodeSpec("flood", Priority.ALARM, "Water flow / flood"),
    114: CodeSpec("heat", Priority.ALARM, "Excessive heat"),
    120: CodeSpec("panic", Priority.ALARM, "Panic alarm"),
    121: CodeSpec("duress", Priority.ALARM, "Duress"),
    122: CodeSpec("panic", Priority.ALARM, "Silent panic"),
    151: CodeSpec("gas", Priority.ALARM, "Gas detected"),
    154: CodeSpec("flood", Priority.ALARM, "Water leakage"),
    158: CodeSpec("temperature_high", Priority.ALARM, "High temperature"),
    159: CodeSpec("temperature_low", Priority.ALARM, "Low temperature"),
    162: CodeSpec("carbon_monoxide", Priority.ALARM, "Carbon monoxide"),
    301: CodeSpec("ac_loss", Priority.WARNING, "AC power loss"),
    302: CodeSpec("battery_low", Priority.WARNING, "Low system battery"),
    311: CodeSpec("battery_missing", Priority.WARNING, "Battery missing or dead"),
    350: CodeSpec("communication_trouble", Priority.WARNING, "Communication trouble"),
    351: CodeSpec("line_fault", Priority.WARNING, "Telephone line fault"),
    381: CodeSpec("supervision_loss", Priority.WARNING, "Loss of supervision (RF)"),
    383: CodeSpec("tamper", Priority.WARNING, "Sensor tamper"),
    384: CodeSpec("battery_low", Priority.WARNING, "RF transmitter low battery"),
    401: CodeSpec("open_close", Priority.INFO, "Open/close by user"),
    601: CodeSpec("test", Priority.INFO, "Manual test"),
    602: CodeSpec("test", Priority.INFO, "Periodic test"),
}

_CLASS_FALLBACK = {
    1: CodeSpec("alarm", Priority.ALARM, "Alarm"),
    2: CodeSpec("supervisory", Priority.WARNING, "Supervisory"),
    3: CodeSpec("trouble", Priority.WARNING, "Trouble"),
    4: CodeSpec("open_close", Priority.INFO, "Open/close"),
    5: CodeSpec("bypass", Priority.INFO, "Bypass / disable"),
    6: CodeSpec("test", Priority.INFO, "Test / miscellaneous"),
}
_UNKNOWN = CodeSpec("contact_id", Priority.INFO, "Unknown Contact ID event")


def inbound(event_code: str, qualifier: str) -> CodeSpec:
    """The reading type and priority for a received Contact ID event."""
    spec = _UNKNOWN
    if event_code.isdigit():
        number = int(event_code)
        spec = INBOUND.get(number) or _CLASS_FALLBACK.get(number // 100, _UNKNOWN)
    elif event_code[:1].isdigit():
        spec = _CLASS_FALLBACK.get(int(event_code[0]), _UNKNOWN)
    if qualifier == "3":
        return CodeSpec(f"{spec.type}_restore", Priority.INFO, f"{spec.label} restored")
    return spec


# Our alarm types -> Contact ID code, for frames sent to the unit.
OUTBOUND: dict[str, int] = {
    "pull_cord": 101,
    "button": 101,
    "pendant": 101,
    "fall": 100,
    "inactivity": 100,
    "not_up": 100,
    "not_returned": 100,
    "night_exit": 100,
    "night_out_of_bed": 100,
    "chair_too_long": 100,
    "medical": 100,
    "smoke": 111,
    "fire": 110,
    "flood": 154,
    "gas": 151,
    "carbon_monoxide": 162,
    "panic": 120,
}
OUTBOUND_DEFAULT = 100


def outbound(event_type: str, contact_id: object = None) -> str:
    """The 3-digit Contact ID event code for one of our alarms."""
    if isinstance(contact_id, int) and 0 < contact_id < 1000:
        return f"{contact_id:03d}"
    if isinstance(contact_id, str) and len(contact_id) == 3 and contact_id.isdigit():
        return contact_id
    return f"{OUTBOUND.get(event_type, OUTBOUND_DEFAULT):03d}"
