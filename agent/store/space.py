"""Disk space for the store: the reserve file, the WAL's size, what the card has left.

A Pi's SD card fills up (logs, a forgotten capture, a small card). The store keeps a
*reserve* file beside the database, given up when the disk is full so that alarms can
still be written, and made again (re-armed) once space has returned. The WAL counts
against the store's budget like the database itself: it is where every write lands first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

WAL_LIMIT_MIN = 64 * 1024
WAL_LIMIT_MAX = 4 * 1024 * 1024


def wal_limit(max_bytes: int, reserve_bytes: int) -> int:
    """How large the WAL may grow before a checkpoint folds it back (and how large it is
    left after one): half the reserve *that is armed now*, a sixteenth of the budget at
    most, between 64 KB and 4 MB. A checkpoint copies the WAL into the database, which on a
    full disk may have to grow by as much: releasing the reserve must always leave room for
    that, or the WAL can never be folded back and the card stays full for good. Without an
    armed reserve the WAL is kept at the minimum. (A larger WAL means fewer checkpoints, so
    fewer writes to the card: at 20 telemetry events/s, 1.29 MB per 1,000 events with a
    2 MB WAL, 1.70 MB with 512 KB.)"""
    limit = min(max_bytes // 16, reserve_bytes // 2)
    return max(WAL_LIMIT_MIN, min(WAL_LIMIT_MAX, limit))


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def disk_free(directory: Path) -> int | None:
    """Bytes an unprivileged process may still write in ``directory`` (None if unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def reserve_size(configured: int, directory: Path, held: int) -> int:
    """The reserve to keep: as configured, but at most a quarter of what the disk has free
    (counting a reserve already held), so a small or nearly full card still gets one."""
    free = disk_free(directory)
    if free is None:
        return configured
    return max(0, min(configured, (free + held) // 4))


def preallocate(path: Path, size: int, mode: int) -> None:
    """Grow ``path`` (created with ``mode`` if missing) with zeros to ``size`` bytes and
    fsync, so its blocks are really allocated: writing into them later needs no free space.
    Bytes already there are kept. Raises ``OSError`` (e.g. the disk is full)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        left = size - os.lseek(fd, 0, os.SEEK_END)
        while left > 0:
            left -= os.write(fd, b"\0" * min(left, 65536))
        os.fsync(fd)
    finally:
        os.close(fd)


class Reserve:
    """A file of ``size`` zero bytes, written (and fsync'd) so that its blocks are really
    allocated; deleting it frees them for the database."""

    def __init__(self, path: Path, size: int, mode: int = 0o600) -> None:
        self.path = path
        self.size = size
        self._mode = mode

    @property
    def armed(self) -> bool:
        return self.size <= 0 or file_size(self.path) >= self.size

    def arm(self) -> bool:
        """Create the reserve if it is missing. False (and nothing left behind) if the disk
        cannot hold it now."""
        if self.armed:
            return True
        try:
            preallocate(self.path, self.size, self._mode)
            return True
        except OSError as exc:
            log.warning("cannot create the store's reserve file %s: %s", self.path, exc)
            self.release(quiet=True)
            return False

    def release(self, quiet: bool = False) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("cannot release the store's reserve file %s: %s", self.path, exc)
            return False
        if not quiet:
            log.critical("disk full: released the %d-byte reserve to store alarms", self.size)
        return True
