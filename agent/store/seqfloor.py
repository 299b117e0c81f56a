"""The store's memory outside the database: how far ``seq`` has gone.

A database can lose its newest transactions without an error: a deleted or damaged WAL is
ignored by SQLite, a zero-length file opens as an empty database. This small file beside
the store (``events.db.seq``) remembers two numbers the database cannot vouch for itself:

- ``reserved``: the highest ``seq`` that may have been handed out, written (fsync) *before*
  any seq above the previous reservation is used, in blocks, so an alarm sent to the broker
  before its commit (the early send) never has its seq issued again after a crash;
- ``committed``: the highest ``seq`` whose transaction has committed, written after each
  commit without an fsync (it may lag after a power cut, never lead the database).

On open, a database whose newest seq is below ``committed`` has lost committed events,
and the next seq is placed above both numbers, so ``seq`` never goes backwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MAGIC = b"TSEQ"
_FORMAT = "<4sQQI"          # magic, reserved, committed, crc32 of the rest
_SIZE = struct.calcsize(_FORMAT)
RESERVE_BLOCK = 1000        # seqs reserved per fsync


@dataclass(frozen=True, slots=True)
class Floor:
    reserved: int
    committed: int


def _pack(floor: Floor) -> bytes:
    head = struct.pack("<4sQQ", _MAGIC, floor.reserved, floor.committed)
    return head + struct.pack("<I", zlib.crc32(head))


def _unpack(raw: bytes) -> Floor | None:
    if len(raw) < _SIZE:
        return None
    magic, reserved, committed, crc = struct.unpack(_FORMAT, raw[:_SIZE])
    if magic != _MAGIC or zlib.crc32(raw[: _SIZE - 4]) != crc:
        return None
    return Floor(reserved, committed)


class SeqFloor:
    """Reads and writes the sidecar. One record, rewritten in place (a 28-byte write
    within one sector: torn writes are detected by the CRC and treated as unknown)."""

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        self.path = path
        self._mode = mode
        self._fd: int | None = None
        self.floor = Floor(0, 0)

    def read(self) -> Floor | None:
        """The recorded floor, or None if there is no (readable) sidecar."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read the store's seq record %s: %s", self.path, exc)
            return None
        floor = _unpack(raw)
        if floor is None:
            log.error("the store's seq record %s is damaged; ignoring it", self.path)
        return floor

    def open(self, floor: Floor) -> None:
        """Start writing, beginning with ``floor`` (fsync'd)."""
        self.close()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self._mode)
        self.floor = floor
        self._write(sync=True)

    def reserve(self, upto: int) -> None:
        """Durably reserve seqs up to ``upto`` (and a block beyond) before they are used."""
        if upto <= self.floor.reserved:
            return
        self.floor = Floor(upto + RESERVE_BLOCK, self.floor.committed)
        self._write(sync=True)

    def committed(self, seq: int) -> None:
        if seq <= self.floor.committed:
            return
        self.floor = Floor(max(self.floor.reserved, seq), seq)
        self._write(sync=False)

    def release(self, last_issued: int) -> None:
        """On a clean close: nothing above ``last_issued`` went out, so the next open may
        continue from there without a gap."""
        self.floor = Floor(max(last_issued, self.floor.committed), self.floor.committed)
        self._write(sync=True)

    def _write(self, sync: bool) -> None:
        if self._fd is None:
            return
        try:
            os.pwrite(self._fd, _pack(self.floor), 0)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            # Without the record a lost WAL goes unnoticed and a seq may repeat after a
            # crash; the events themselves are still safe in the database.
            log.error("cannot write the store's seq record %s: %s", self.path, exc)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
