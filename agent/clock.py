"""Clocks. Timers use the monotonic clock; wall time is only a label on events.

A Raspberry Pi has no RTC: until NTP syncs, wall time may be years off, so every event
says whether the clock was synchronised when it was stamped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
# Anything before this is certainly an unsynchronised Pi clock (fake-hwclock or 1970).
_EARLIEST_PLAUSIBLE = 1_735_689_600.0  # 2025-01-01T00:00:00Z


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def synced(self) -> bool: ...


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (x86_64/aarch64/armhf layouts all start like this).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


_TIMESYNCD_MARKER = "/run/systemd/timesync/synchronized"


def kernel_clock_synced() -> bool | None:
    """Whether NTP has disciplined the clock; None if unknown.

    systemd-timesyncd (Raspberry Pi OS) touches a marker file once synchronised; otherwise
    ask the kernel with a read-only adjtimex (blocked under ProtectClock=, hence the marker).
    """
    import os

    if os.path.exists(_TIMESYNCD_MARKER):
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


class SystemClock:
    """The real clocks, with the sync state cached for ``cache_s`` seconds."""

    def __init__(self, assume_synced: bool | None = None, cache_s: float = 30.0) -> None:
        self._assume = assume_synced
        self._cache_s = cache_s
        self._cached: tuple[float, bool] | None = None

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def synced(self) -> bool:
        if self._assume is not None:
            return self._assume
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._cache_s:
            return self._cached[1]
        kernel = kernel_clock_synced()
        value = bool(kernel) and time.time() > _EARLIEST_PLAUSIBLE
        self._cached = (now, value)
        return value


class ManualClock:
    """A clock tests move by hand. Never sleeps."""

    def __init__(self, mono: float = 1000.0, wall: float = 1_764_000_000.0, synced: bool = True):
        self._mono = mono
        self._wall = wall
        self._synced = synced

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def synced(self) -> bool:
        return self._synced

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds

    def step_wall(self, seconds: float) -> None:
        """A wall-clock step (NTP arriving late) without monotonic time passing."""
        self._wall += seconds

    def set_synced(self, synced: bool) -> None:
        self._synced = synced


# -- how long ago, across restarts ---------------------------------------------------------
def read_boot_id() -> str | None:
    """The kernel's id for this boot: monotonic times compare only within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def downtime_s(saved: Mapping[str, Any], mono: float, wall: float, synced: bool,
               boot_id: str | None) -> float | None:
    """How long ago ``saved`` was taken, or None if that cannot be known.

    Within one boot the monotonic clock answers exactly (wall steps do not matter). Across
    a reboot only two synchronised wall clocks can, and only for a plausible gap.
    """
    s_mono, s_wall = saved.get("saved_mono"), saved.get("saved_wall")
    if boot_id is not None and saved.get("boot_id") == boot_id and s_mono is not None:
        gap = mono - float(s_mono)
        return gap if gap >= 0 else None
    if synced and saved.get("saved_synced") and s_wall is not None:
        gap = wall - float(s_wall)
        if 0 <= gap <= 7 * 86400:
            return gap
    return None
