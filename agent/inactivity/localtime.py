"""The home's local time of day, DST-correct, for windows and daily deadlines.

Rules measure durations on the monotonic clock; only *where in the day* an interval lies
comes from the wall clock. An interval of monotonic length ``dt`` ending now is placed at
``[wall - dt, wall]`` and split wherever a window edge, an hour boundary or a UTC-offset
change falls inside it, so each piece has one local time-of-day regime. Window membership
is decided by the local clock reading, which is what a carer means by "07:00-22:00": on
the 25-hour autumn night the 01:00-02:00 hour happens twice and counts twice.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.inactivity.config import hhmm_to_minutes

_DAY_MIN = 24 * 60


@dataclass(frozen=True, slots=True)
class Window:
    """A daily window of local clock time, ``[start, end)`` in minutes; start == end is all day."""

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        return cls(hhmm_to_minutes(start), hhmm_to_minutes(end))

    @property
    def all_day(self) -> bool:
        return self.start_min == self.end_min

    def contains(self, minute_of_day: float) -> bool:
        if self.all_day:
            return True
        if self.start_min < self.end_min:
            return self.start_min <= minute_of_day < self.end_min
        return minute_of_day >= self.start_min or minute_of_day < self.end_min

    def edges(self) -> tuple[int, ...]:
        return () if self.all_day else (self.start_min, self.end_min)

    def text(self) -> str:
        def f(m: int) -> str:
            return f"{m // 60:02d}:{m % 60:02d}"
        return f"{f(self.start_min)}-{f(self.end_min)}"


class LocalClock:
    """Conversions between wall time (epoch seconds) and the home's local clock.

    ``minutes`` are the minutes of the day at which something changes (window edges,
    deadlines, hour boundaries); their exact instants are cached per local date.
    """

    def __init__(self, tz: str | ZoneInfo, minutes: Iterable[int] = ()) -> None:
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self._minutes = sorted({int(m) % _DAY_MIN for m in minutes})
        self._day_cache: dict[date, list[float]] = {}

    # -- single instants -----------------------------------------------------------------
    def local(self, wall: float) -> datetime:
        return datetime.fromtimestamp(wall, self.tz)

    def minute_of_day(self, wall: float) -> float:
        dt = self.local(wall)
        return dt.hour * 60 + dt.minute + (dt.second + dt.microsecond / 1e6) / 60.0

    def local_date(self, wall: float) -> date:
        return self.local(wall).date()

    def instants(self, day: date, minute: int) -> list[float]:
        """Wall instants at which the local clock reads ``day`` + ``minute``, crossing upward.

        One instant normally; two in an autumn fold (the time happens twice); in a spring
        gap (the time never shows) the instant the clock jumps over it.
        """
        naive = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        t0 = naive.replace(tzinfo=self.tz, fold=0).timestamp()
        t1 = naive.replace(tzinfo=self.tz, fold=1).timestamp()
        valid = [t for t in sorted({t0, t1}) if self._naive(t) == naive]
        if valid:
            return valid
        lo, hi = int(min(t0, t1)), int(max(t0, t1)) + 1   # a gap: find where the clock jumps
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._naive(mid) >= naive:
                hi = mid
            else:
                lo = mid
        return [float(hi)]

    def _naive(self, wall: float) -> datetime:
        return datetime.fromtimestamp(wall, self.tz).replace(tzinfo=None)

    def at(self, day: date, minute: int) -> float:
        """The first instant the local clock reaches ``day`` + ``minute``."""
        return self.instants(day, minute)[0]

    def next_at(self, wall: float, minute: int) -> float:
        """The first instant strictly after ``wall`` at which the clock reaches ``minute``."""
        day = self.local_date(wall)
        for k in range(3):
            for t in self.instants(day + timedelta(days=k), minute):
                if t > wall:
                    return t
        raise AssertionError("unreachable: a time of day recurs within three days")

    # -- splitting intervals --------------------------------------------------------------
    def _day_points(self, day: date) -> list[float]:
        pts = self._day_cache.get(day)
        if pts is None:
            s: set[float] = set()
            for m in self._minutes:
                s.update(self.instants(day, m))
            start = self.at(day, 0)
            end = self.at(day + timedelta(days=1), 0)
            s.update(self.offset_changes(start, end))
            pts = sorted(s)
            if len(self._day_cache) > 64:
                self._day_cache.clear()
            self._day_cache[day] = pts
        return pts

    def offset_changes(self, a: float, b: float) -> list[float]:
        """Instants in ``(a, b]`` where the UTC offset changes (DST transitions)."""
        out: list[float] = []
        step = 3600.0
        t = a
        off = self.local(a).utcoffset()
        while t < b:
            nt = min(b, t + step)
            noff = self.local(nt).utcoffset()
            if noff != off:
                lo, hi = int(t), int(nt) + 1
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.local(mid).utcoffset() == off:
                        lo = mid
                    else:
                        hi = mid
                out.append(float(hi))
                off = noff
            t = nt
        return out

    def split_points(self, a: float, b: float) -> list[float]:
        """Instants strictly inside ``(a, b)`` where a registered minute or the offset changes."""
        if b <= a:
            return []
        d0 = self.local_date(a) - timedelta(days=1)
        d1 = self.local_date(b) + timedelta(days=1)
        if (d1 - d0).days > 400:   # a nonsense interval (clock far off): do not loop for ages
            return []
        out: list[float] = []
        day = d0
        while day <= d1:
            pts = self._day_points(day)
            i = bisect.bisect_right(pts, a)
            j = bisect.bisect_left(pts, b)
            out.extend(pts[i:j])
            day += timedelta(days=1)
        return sorted(set(out))

    def next_point(self, wall: float) -> float | None:
        """The next registered instant strictly after ``wall`` (None if nothing is registered)."""
        if not self._minutes:
            return None
        day = self.local_date(wall)
        for k in range(3):
            pts = self._day_points(day + timedelta(days=k))
            i = bisect.bisect_right(pts, wall)
            if i < len(pts):
                return pts[i]
        return None
