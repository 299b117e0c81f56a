"""What each of our event types is called at the Alarm Receiving Centre.

One table, both DC-09 payloads: the Contact ID event code (``ADM-CID``) and the SIA event
code (``SIA-DCS``). The Contact ID codes are the ones the agent already uses elsewhere
(``drivers/gpio/kinds.py``, ``drivers/ble/bthome_mapping.py``, the serial escalation's
``drivers/serial/codes.py``; a unit test holds the tables to each other). An event that
carries ``data["contact_id"]`` (a driver that knows better) is sent with that code.

Event types not in the table go by their priority: an alarm as 100 (medical: the telecare
default), a warning as 300 (system trouble), anything else as 601 (manual test / misc).

A receiver that does not know a code answers ``DUH``; the message is then sent once more
with the generic code of its Contact ID class (1xx -> 100, 3xx -> 300, 6xx -> 602), which
every receiver knows, so the ARC at least hears that there is an alarm at this account.
The documentation of the table is ``docs/arc.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.model import Priority


@dataclass(frozen=True, slots=True)
class ArcCode:
    contact_id: int      # Contact ID event code, 3 digits
    sia: str             # SIA DCS two-letter event code
    label: str


ARC_CODES: dict[str, ArcCode] = {
    # alarms: a person needs help
    "pull_cord": ArcCode(101, "QA", "Personal emergency (pull cord)"),
    "button": ArcCode(101, "QA", "Personal emergency (button)"),
    "pendant": ArcCode(101, "QA", "Personal emergency (pendant)"),
    "fall": ArcCode(100, "MA", "Medical alarm: fall detected"),
    "inactivity": ArcCode(100, "MA", "Medical alarm: no activity"),
    "not_up": ArcCode(100, "MA", "Medical alarm: not up in the morning"),
    "not_returned": ArcCode(100, "MA", "Medical alarm: not returned home"),
    "night_exit": ArcCode(100, "MA", "Medical alarm: left home at night"),
    "night_out_of_bed": ArcCode(100, "MA", "Medical alarm: out of bed at night"),
    "chair_too_long": ArcCode(100, "MA", "Medical alarm: in chair too long"),
    "medical": ArcCode(100, "MA", "Medical alarm"),
    "smoke": ArcCode(111, "FA", "Smoke alarm"),
    "fire": ArcCode(110, "FA", "Fire alarm"),
    "heat": ArcCode(114, "KA", "Heat alarm"),
    "flood": ArcCode(154, "WA", "Water leakage"),
    "gas": ArcCode(151, "GA", "Gas detected"),
    "carbon_monoxide": ArcCode(162, "GA", "Carbon monoxide"),
    "panic": ArcCode(120, "PA", "Panic alarm"),
    "temperature_high": ArcCode(158, "KA", "High temperature"),
    "temperature_low": ArcCode(159, "ZA", "Low temperature"),
    # warnings a service may choose to send (priorities = ["alarm", "warning"])
    "cold_home": ArcCode(159, "ZA", "Low temperature (cold home)"),
    "battery_low": ArcCode(302, "YT", "Low battery"),
    "device_offline": ArcCode(381, "US", "Loss of supervision (device silent)"),
    "storage_failed": ArcCode(300, "YX", "System trouble: alarms cannot be stored"),
    # tests
    "test": ArcCode(601, "RX", "Manual test (commissioning)"),
    "periodic_test": ArcCode(602, "RP", "Periodic test"),
}

DEFAULT_BY_PRIORITY: dict[Priority, ArcCode] = {
    Priority.ALARM: ArcCode(100, "MA", "Medical alarm (unmapped type)"),
    Priority.WARNING: ArcCode(300, "YX", "System trouble (unmapped type)"),
}
_OTHER = ArcCode(601, "RX", "Test / miscellaneous")
# The generic code of each Contact ID class, sent when a receiver answers DUH.
GENERIC: dict[int, ArcCode] = {
    1: ArcCode(100, "MA", "Medical alarm"),
    3: ArcCode(300, "YX", "System trouble"),
    6: ArcCode(602, "RP", "Periodic test"),
}
_SIA_OF_CID = {c.contact_id: c.sia for c in ARC_CODES.values()}


def arc_code(event_type: str, priority: Priority, data: Mapping[str, Any] | None = None
             ) -> ArcCode:
    """The code an event is sent with."""
    spec = ARC_CODES.get(event_type) or DEFAULT_BY_PRIORITY.get(priority, _OTHER)
    override = (data or {}).get("contact_id")
    if isinstance(override, str) and override.isdigit():
        override = int(override)
    if isinstance(override, int) and not isinstance(override, bool) and 0 < override < 1000 \
            and override != spec.contact_id:
        generic = GENERIC.get(override // 100, spec)
        return ArcCode(override, _SIA_OF_CID.get(override, generic.sia), spec.label)
    return spec


def generic_of(code: ArcCode) -> ArcCode | None:
    """The fallback after a DUH, or None if ``code`` already is the generic one."""
    generic = GENERIC.get(code.contact_id // 100)
    if generic is None or generic.contact_id == code.contact_id:
        return None
    return generic
