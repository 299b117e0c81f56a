"""The timing logic of one wired input, as a pure state machine (no pins, no threads, no clock).

Raw edges go in with the monotonic time they happened; :class:`Signal` values come out.
The driver calls :meth:`InputChannel.due` when :meth:`InputChannel.next_deadline` passes.
Keeping this pure lets the tests walk through bounce, settle, hold and storm timelines
exactly, without sleeping.

Stages, in order:

1. **Debounce** (lockout and reconcile): the first edge after a quiet spell is taken at once
   (an alarm costs no latency); edges in the next ``bounce_s`` are ignored; when the lockout
   ends, the latest raw state is taken if it differs from what was reported.
2. **Bounce storm**: ``storm_events`` debounced changes within ``storm_window_s`` mean a
   flapping contact. One ``storm`` signal is raised and the input is muted until it has
   been quiet for ``storm_window_s``; then its settled state is reported if it changed.
3. **Mode**: ``plain`` reports each change; ``settle`` reports a change only after it held
   for ``settle_s`` (pressure mats shift as people move); ``hold`` tells a short press
   (released before ``hold_s``) from a long press (held ``hold_s``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

ASSERTED = "asserted"
DEASSERTED = "deasserted"
SHORT_PRESS = "short_press"
LONG_PRESS = "long_press"
STORM = "storm"
STORM_OVER = "storm_over"


@dataclass(frozen=True, slots=True)
class Signal:
    """Something worth reporting. ``mono``/``wall`` say when it happened (the edge time)."""

    name: str
    mono: float
    wall: float
    data: dict[str, Any] = field(default_factory=dict)


class InputChannel:
    """Debounce, storm limiting and settle/hold timing for one input."""

    def __init__(
        self,
        *,
        mode: str = "plain",
        bounce_s: float = 0.05,
        settle_s: float = 0.0,
        hold_s: float = 3.0,
        storm_events: int = 20,
        storm_window_s: float = 10.0,
        report_initial: bool = False,
    ) -> None:
        if mode not in ("plain", "settle", "hold"):
            raise ValueError(f"unknown input mode {mode!r}")
        self.mode = mode
        self.bounce_s = bounce_s
        self.settle_s = settle_s
        self.hold_s = hold_s
        self.storm_events = storm_events
        self.storm_window_s = storm_window_s
        self.report_initial = report_initial
        self.raw = False            # latest raw (semantic) state seen
        self.debounced = False      # state after debounce
        self.reported = False       # state last reported (after settle)
        self.in_storm = False
        self.edges = 0              # raw edges seen (diagnostics)
        self.suppressed = 0         # raw edges ignored while in a storm
        self._wall_offset = 0.0     # wall - mono of the latest edge, to stamp timer signals
        self._lockout_until: float | None = None
        self._changes: collections.deque[float] = collections.deque()
        self._last_raw_edge = 0.0
        self._settle_at: float | None = None
        self._settle_origin: tuple[float, float] = (0.0, 0.0)
        self._settle_initial = False
        self._hold_at: float | None = None
        self._press_origin: tuple[float, float] = (0.0, 0.0)

    # -- inputs ------------------------------------------------------------------------------
    def start(self, raw: bool, mono: float, wall: float) -> list[Signal]:
        """The state read when the device was opened. Reports only what cannot wait."""
        self.raw = self.debounced = raw
        self._wall_offset = wall - mono
        if self.mode == "settle":
            self.reported = False
            if raw and self.report_initial:
                return self._begin_settle(mono, wall, initial=True)
            self.reported = raw
            return []
        self.reported = raw
        if self.mode == "hold":
            # A button held down at start-up is not a press: wait for a release first.
            self._hold_at = None
            return []
        if raw and self.report_initial:
            return [Signal(ASSERTED, mono, wall, {"at_start": True})]
        return []

    def edge(self, raw: bool, mono: float, wall: float) -> list[Signal]:
        """A raw edge: the input now reads ``raw`` (asserted or not) since ``mono``."""
        self.edges += 1
        self._wall_offset = wall - mono
        self.raw = raw
        self._last_raw_edge = mono
        if self.in_storm:
            self.suppressed += 1
            return []
        if self._lockout_until is not None and mono < self._lockout_until:
            return []
        if raw == self.debounced:
            return []
        return self._accept(raw, mono, wall)

    def due(self, now: float) -> list[Signal]:
        """Run every timer that is due at ``now``."""
        out: list[Signal] = []
        wall = now + self._wall_offset
        if self.in_storm:
            if now >= self._last_raw_edge + self.storm_window_s:
                self.in_storm = False
                self._changes.clear()
                self._lockout_until = None
                out.append(Signal(STORM_OVER, now, wall, {"suppressed": self.suppressed}))
                self.suppressed = 0
                if self.raw != self.debounced:
                    out.extend(self._accept(self.raw, now, wall))
            return out
        if self._lockout_until is not None and now >= self._lockout_until:
            self._lockout_until = None
            if self.raw != self.debounced:
                out.extend(self._accept(self.raw, now, wall))
        if self._settle_at is not None and now >= self._settle_at:
            self._settle_at = None
            if self.debounced != self.reported:
                self.reported = self.debounced
                o_mono, o_wall = self._settle_origin
                name = ASSERTED if self.reported else DEASSERTED
                data: dict[str, Any] = {"settle_s": self.settle_s}
                if self._settle_initial:
                    data["at_start"] = True
                out.append(Signal(name, o_mono, o_wall, data))
        if self._hold_at is not None and now >= self._hold_at:
            self._hold_at = None
            p_mono, p_wall = self._press_origin
            out.append(Signal(LONG_PRESS, p_mono + self.hold_s, p_wall + self.hold_s,
                              {"held_s": self.hold_s}))
        return out

    def next_deadline(self) -> float | None:
        if self.in_storm:
            return self._last_raw_edge + self.storm_window_s
        times = [t for t in (self._lockout_until, self._settle_at, self._hold_at) if t is not None]
        return min(times) if times else None

    # -- stages ------------------------------------------------------------------------------
    def _accept(self, raw: bool, mono: float, wall: float) -> list[Signal]:
        """A debounced change. Count it for storm detection, then apply the mode."""
        self.debounced = raw
        if self.bounce_s > 0:
            self._lockout_until = mono + self.bounce_s
        self._changes.append(mono)
        while self._changes and self._changes[0] <= mono - self.storm_window_s:
            self._changes.popleft()
        if len(self._changes) >= self.storm_events:
            self.in_storm = True
            self.suppressed = 0
            # The change that tipped it into a storm is not reported: forget it, so the
            # settled state is compared with what listeners last heard when the storm ends.
            self.debounced = self.reported
            count = len(self._changes)
            self._settle_at = None
            self._hold_at = None
            self._lockout_until = None
            return [Signal(STORM, mono, wall,
                           {"changes": count, "window_s": self.storm_window_s})]
        if self.mode == "settle":
            if raw == self.reported:
                self._settle_at = None      # back where we were: nothing to report
                return []
            return self._begin_settle(mono, wall)
        if self.mode == "hold":
            self.reported = raw
            if raw:
                self._hold_at = mono + self.hold_s
                self._press_origin = (mono, wall)
                return []
            if self._hold_at is not None:
                self._hold_at = None
                return [Signal(SHORT_PRESS, mono, wall,
                               {"pressed_s": round(mono - self._press_origin[0], 3)})]
            return []                       # release after a long press (or a start-up hold)
        self.reported = raw
        return [Signal(ASSERTED if raw else DEASSERTED, mono, wall)]

    def _begin_settle(self, mono: float, wall: float, initial: bool = False) -> list[Signal]:
        self._settle_origin = (mono, wall)
        self._settle_initial = initial
        if self.settle_s <= 0:
            self.reported = self.debounced
            data = {"settle_s": 0.0, "at_start": True} if initial else {"settle_s": 0.0}
            return [Signal(ASSERTED if self.reported else DEASSERTED, mono, wall, data)]
        self._settle_at = mono + self.settle_s
        return []
