"""Local calendar days in the home's time zone (DST-correct: a day may be 23 or 25 hours)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def day_bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    """Wall-clock seconds of local midnight starting ``day`` and the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.timestamp(), end.timestamp()


def day_of(wall: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(wall, tz).date()


def recent_days(n: int, now_wall: float, tz: ZoneInfo) -> list[date]:
    """The ``n`` local days ending with today (today last; it is still in progress)."""
    today = day_of(now_wall, tz)
    return [today - timedelta(days=i) for i in range(n - 1, -1, -1)]
