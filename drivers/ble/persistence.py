"""What BLE supervision remembers across restarts, in the agent's SQLite database.

A sleepy BTHome sensor is declared offline after 25 h of silence. Without memory a hub that
restarts (power cut, update) would start that clock again from zero: a sensor that died an
hour before the restart would be reported a day late, one already reported offline would
be reported again, and the installer's check would say "not seen yet" for a sensor seen
this morning. So per configured device we keep when it was last heard (monotonic time with
the boot id, and wall time with the clock's sync state), its battery, signal and whether
it was online, in the component's own state (``ctx.component_state("ble")``: the
``ble_supervision`` table beside the event store's, kept by ``agent/store``).

Writes are few, to spare the SD card: a device's record is written when it goes online or
offline or its battery changes, otherwise at most every :data:`SAVE_EVERY_S`, and all of
them when the driver stops. A crash loses at most that much "last heard" precision, never
an event (events are in the event store).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from agent.clock import downtime_s
from agent.errors import StoreError
from agent.ports import ComponentState

log = logging.getLogger(__name__)

SAVE_EVERY_S = 900.0


class SupervisionStore:
    """Per device id, its saved record in the BLE component's state (``ctx.component_state
    ("ble")``). Errors are logged and swallowed: supervision carries on from memory when
    the disk misbehaves."""

    def __init__(self, state: ComponentState) -> None:
        self.state = state
        self.ok = True

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            saved = self.state.items()
        except StoreError as exc:
            log.error("BLE supervision: cannot read saved state: %s", exc)
            return {}
        out: dict[str, dict[str, Any]] = {}
        for device_id, doc in saved.items():
            if isinstance(doc, dict):
                out[device_id] = doc
            else:
                log.warning("BLE supervision: saved state of %s is unreadable, ignored",
                            device_id)
        return out

    def save(self, records: Mapping[str, Mapping[str, Any]]) -> bool:
        if not records:
            return True
        try:
            self.state.write({k: dict(v) for k, v in records.items()})
            return True
        except StoreError as exc:
            log.error("BLE supervision: cannot save state: %s (carrying on without)", exc)
            return False


def seconds_since_seen(record: Mapping[str, Any], mono: float, wall: float, synced: bool,
                       boot_id: str | None) -> float | None:
    """How long ago the saved record's device was last heard, None if unknown (no sighting,
    or a reboot without two synchronised wall clocks to compare)."""
    if record.get("seen_wall") is None and record.get("seen_mono") is None:
        return None
    return downtime_s({"saved_mono": record.get("seen_mono"),
                       "saved_wall": record.get("seen_wall"),
                       "saved_synced": record.get("seen_synced"),
                       "boot_id": record.get("boot_id")}, mono, wall, synced, boot_id)
