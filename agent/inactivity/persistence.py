"""What the inactivity rules remember across restarts, in the detector's own state
(:meth:`agent.ports.AgentContext.component_state`, ``"inactivity"``).

- ``snapshot``: the engine snapshot (last activity, mats, away, countdowns) with the
  monotonic time, wall time, boot id and clock sync state at which it was taken, so the
  next start can tell how long it was down;
- ``routine``: the learned routine;
- ``stillness/<day>/<hour>``: per local day and hour, the longest stillness and how much of
  the hour was observed, as ``[max_still_s, observed_s]`` (the learned routine's input; a
  few KB per month);
- ``stillness/<day>/<hour>/<room>``: the same per room of the last activity (the per-room
  thresholds' input).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from datetime import date
from typing import Any, cast

from agent.inactivity.household import HouseholdRecorder
from agent.inactivity.routine import HourStat, Routine
from agent.ports import ComponentState
from agent.store.component_state import STILLNESS_PREFIX, Json, SqliteComponentState

log = logging.getLogger(__name__)


class InactivityStore:
    """Typed access to the detector's state."""

    def __init__(self, state: ComponentState | sqlite3.Connection) -> None:
        """``state``: the detector's state from the port; a bare connection (tests, the
        benchmark) is opened as the same state the agent would give."""
        self.state: ComponentState = (SqliteComponentState(state, "inactivity")
                                      if isinstance(state, sqlite3.Connection) else state)

    def load_snapshot(self) -> dict[str, Any] | None:
        snap = self.state.get("snapshot")
        return snap if isinstance(snap, dict) else None

    def load_routine(self) -> Routine | None:
        doc = self.state.get("routine")
        if not isinstance(doc, dict):
            return None
        try:
            return Routine.from_dict(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("stored learned routine is unreadable (%s); relearning", exc)
            return None

    def load_household(self) -> HouseholdRecorder | None:
        doc = self.state.get("household")
        if not isinstance(doc, dict):
            return None
        try:
            return HouseholdRecorder.from_dict(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("stored household records are unreadable (%s); relearning", exc)
            return None

    def load_bins(self) -> dict[tuple[date, int], HourStat]:
        return bins_of(self.state.items(STILLNESS_PREFIX))

    def load_places(self) -> dict[tuple[date, int, str], HourStat]:
        return place_bins_of(self.state.items(STILLNESS_PREFIX))

    def save(
        self,
        snapshot: dict[str, Any] | None = None,
        routine: Routine | None = None,
        household: HouseholdRecorder | None = None,
        bins: Mapping[tuple[date, int], HourStat] | None = None,
        prune_before: date | None = None,
        places: Mapping[tuple[date, int, str], HourStat] | None = None,
    ) -> None:
        """Write what is given in one transaction. Raises StoreError."""
        put: dict[str, Json] = {}
        if snapshot is not None:
            put["snapshot"] = snapshot
        if routine is not None:
            put["routine"] = cast(Json, routine.as_dict())
        if household is not None:
            put["household"] = cast(Json, household.as_dict())
        for (day, hour), st in (bins or {}).items():
            put[f"{STILLNESS_PREFIX}{day.isoformat()}/{hour:02d}"] = [st.max_still_s,
                                                                     st.observed_s]
        for (day, hour, place), st in (places or {}).items():
            put[f"{STILLNESS_PREFIX}{day.isoformat()}/{hour:02d}/{place}"] = [st.max_still_s,
                                                                              st.observed_s]
        drop = ((STILLNESS_PREFIX, f"{STILLNESS_PREFIX}{prune_before.isoformat()}")
                if prune_before is not None else None)
        if put or drop:
            self.state.write(put, drop=drop)


def bins_of(items: Mapping[str, Json]) -> dict[tuple[date, int], HourStat]:
    """``stillness/<day>/<hour>`` items as the recorder's bins (unreadable ones skipped)."""
    out: dict[tuple[date, int], HourStat] = {}
    for key, value in items.items():
        try:
            parts = key[len(STILLNESS_PREFIX):].split("/")
            if len(parts) != 2:
                continue        # a per-room sample (place_bins_of)
            day, hour = parts
            if not isinstance(value, list) or len(value) != 2:
                continue
            mx, obs = value
            if not isinstance(mx, int | float) or not isinstance(obs, int | float):
                continue
            out[(date.fromisoformat(day), int(hour))] = HourStat(float(mx), float(obs))
        except (TypeError, ValueError):
            continue
    return out


def place_bins_of(items: Mapping[str, Json]) -> dict[tuple[date, int, str], HourStat]:
    """``stillness/<day>/<hour>/<room>`` items as the recorder's per-room bins."""
    out: dict[tuple[date, int, str], HourStat] = {}
    for key, value in items.items():
        try:
            parts = key[len(STILLNESS_PREFIX):].split("/", 2)
            if len(parts) != 3 or not parts[2]:
                continue
            if not isinstance(value, list) or len(value) != 2:
                continue
            mx, obs = value
            if not isinstance(mx, int | float) or not isinstance(obs, int | float):
                continue
            out[(date.fromisoformat(parts[0]), int(parts[1]), parts[2])] = HourStat(
                float(mx), float(obs))
        except (TypeError, ValueError):
            continue
    return out
