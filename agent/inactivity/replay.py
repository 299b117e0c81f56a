"""Replay a recorded home's event log through the real detector, time-compressed.

The log format is that of ``shared/data/ambient`` (``ts,sensor_id,kind,value,activity``,
local time without offset). Each row becomes the :class:`Reading` a driver would emit;
a :class:`ManualClock` is moved from one reading or due time to the next (no real waits),
and ``InactivityDetector.poll`` runs exactly when the engine asks, as the agent's timer
task would. Nothing here decides anything: the rules are the agent's own.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.clock import ManualClock
from agent.errors import ConfigError
from agent.inactivity.detector import InactivityDetector
from agent.inactivity.engine import EngineOptions
from agent.inactivity.household import Household
from agent.inactivity.routine import Routine
from agent.inactivity.sensors import DeviceMap, SensorInfo
from agent.model import Event, Priority, Reading
from agent.offline import OfflineContext

_MONO0 = 1000.0


@dataclass(frozen=True, slots=True)
class LogEvent:
    wall: float
    sensor_id: str
    kind: str
    value: str
    activity: str


@dataclass(frozen=True, slots=True)
class Labelled:
    start: float
    end: float
    activity: str


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def local_to_wall(text: str, tz: ZoneInfo) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=0).timestamp()


def load_events(path: str | Path, tz: ZoneInfo) -> tuple[list[LogEvent], int]:
    """Rows sorted by time (stable), and how many were out of order in the file."""
    p = Path(path)
    out: list[LogEvent] = []
    try:
        with _open_text(p) as fh:
            reader = csv.DictReader(fh)
            missing = {"ts", "sensor_id", "kind", "value"} - set(reader.fieldnames or ())
            if missing:
                raise ConfigError(f"{p}: missing columns {', '.join(sorted(missing))}")
            for n, row in enumerate(reader, start=2):
                try:
                    wall = local_to_wall(row["ts"], tz)
                except (TypeError, ValueError):
                    raise ConfigError(f"{p}:{n}: bad timestamp {row.get('ts')!r}") from None
                out.append(LogEvent(wall, row["sensor_id"], row["kind"],
                                    (row["value"] or "").upper(), row.get("activity") or ""))
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    disorder = sum(1 for a, b in itertools.pairwise(out) if b.wall < a.wall)
    out.sort(key=lambda e: e.wall)
    return out, disorder


def load_labels(path: str | Path, tz: ZoneInfo) -> list[Labelled]:
    p = Path(path)
    out = []
    with _open_text(p) as fh:
        for row in csv.DictReader(fh):
            out.append(Labelled(local_to_wall(row["start"], tz),
                                local_to_wall(row["end"], tz) + 1.0,
                                row["activity"]))
    return out


def to_reading(ev: LogEvent, info: SensorInfo | None, mono: float) -> Reading | None:
    """The reading a driver would have emitted for this row."""
    room, role = (info.room, info.role) if info else ("", "")
    kind = info.kind if info else ev.kind
    on = ev.value in ("ON", "OPEN")
    data = {"room": room, "role": role, "source": "replay"}
    if kind == "motion":
        rtype, prio, publish = ("motion", Priority.TELEMETRY, True) if on else (
            "motion_clear", Priority.TELEMETRY, False)
    elif kind == "door":
        rtype, prio, publish = ("door_open" if on else "door_close"), Priority.INFO, True
    elif kind in ("bed_mat", "chair_mat"):
        mat = "bed" if kind == "bed_mat" else "chair"
        rtype, prio, publish = f"{mat}_{'occupied' if on else 'vacated'}", Priority.INFO, True
    elif info is not None:
        rtype, prio, publish = "telemetry", Priority.TELEMETRY, True
        data["state"] = "on" if on else "off"
    else:
        return None
    return Reading(ev.sensor_id, rtype, prio, data, mono=mono, wall=ev.wall, publish=publish)


class ReplayContext(OfflineContext):
    """The offline context, recording what the detector does during a replay."""

    def __init__(self, clock: ManualClock, hub_id: str = "replay") -> None:
        super().__init__(clock, hub_id)

    @property
    def prewarning_changes(self) -> list[tuple[float, bool]]:
        return [(wall, active) for wall, _source, active in self.prewarning_log]


@dataclass
class ReplayResult:
    events: list[Event]
    prewarnings: int
    routine: Routine | None
    away_intervals: list[tuple[float, float]] = field(default_factory=list)
    bins: dict[Any, Any] = field(default_factory=dict)
    household: Household | None = None
    ready_on: date | None = None
    places: dict[Any, Any] = field(default_factory=dict)


def replay(
    log: Sequence[LogEvent],
    config: Any,
    devices: DeviceMap,
    *,
    end_wall: float | None = None,
    routine: Routine | None = None,
    options: EngineOptions | None = None,
    drop: Callable[[LogEvent], bool] | None = None,
) -> ReplayResult:
    """Run ``log`` (minus rows ``drop`` selects) through a fresh detector."""
    if not log:
        return ReplayResult([], 0, routine)
    wall0 = log[0].wall
    clock = ManualClock(mono=_MONO0, wall=wall0, synced=True)
    ctx = ReplayContext(clock, getattr(config, "hub_id", "replay"))
    det = InactivityDetector(config, None, clock, devices, boot_id=None, options=options)
    det.attach(ctx)
    assert det.engine is not None
    if routine is not None:
        det.engine.set_routine(routine)
    engine = det.engine
    away: list[tuple[float, float]] = []
    away_since: float | None = None

    def run_until(wall: float) -> None:
        nonlocal away_since
        target = _MONO0 + (wall - wall0)
        while True:
            due = det.next_wakeup()
            now = clock.monotonic()
            if due is None or due >= target:
                break
            clock.advance(max(due, now + 1e-3) - now)
            det.poll()
            away_since = _track(engine.home.away, away_since, clock.wall(), away)
        if target > clock.monotonic():
            clock.advance(target - clock.monotonic())

    for ev in log:
        if drop is not None and drop(ev):
            continue
        run_until(ev.wall)
        reading = to_reading(ev, devices.get(ev.sensor_id), clock.monotonic())
        if reading is not None:
            ctx.emit_reading(reading)
        away_since = _track(engine.home.away, away_since, clock.wall(), away)
    run_until(end_wall if end_wall is not None else log[-1].wall)
    det.poll()
    if away_since is not None:
        away.append((away_since, clock.wall()))
    bins = dict(engine.recorder.bins) if engine.recorder is not None else {}
    places = dict(engine.recorder.places) if engine.recorder is not None else {}
    prewarnings = sum(1 for e in ctx.events if e.type.endswith("_prewarning"))
    return ReplayResult(ctx.events, prewarnings, engine.routine, away, bins,
                        engine.learning.household, engine.ready_on, places)


def _track(away: bool, since: float | None, wall: float,
           out: list[tuple[float, float]]) -> float | None:
    if away and since is None:
        return wall
    if not away and since is not None:
        out.append((since, wall))
        return None
    return since


def overlap_s(a: Iterable[tuple[float, float]], b: Iterable[tuple[float, float]]) -> float:
    bl = sorted(b)
    total = 0.0
    for s, e in a:
        for bs, be in bl:
            if be <= s:
                continue
            if bs >= e:
                break
            total += min(e, be) - max(s, bs)
    return total
