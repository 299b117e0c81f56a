"""A last durable place for alarms the database refused.

When a commit fails (a dying card, a full disk with nothing left to free) the agent keeps
the refused alarms and warnings in memory and retries; a crash, a power cut or a shutdown
in that state would lose them. The spill file is allocated in full when the store opens
(``events.db.spill``, 256 KB of zeros, fsync'd), so writing into it later needs no new
blocks: the refused rows are written over it in place and fsync'd. The next open imports
them into the database as pending events, with the seqs they were given.

Layout: a sequence of records ``<length:u32><crc32:u32><json>``, ended by a zero length.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.store.space import file_size, preallocate

log = logging.getLogger(__name__)

SPILL_BYTES = 256 * 1024
_HEAD = struct.Struct("<II")


def encode_records(records: Iterable[dict[str, Any]], capacity: int) -> tuple[bytes, int]:
    """The bytes to write and how many records fit (a zero length ends the list)."""
    out = bytearray()
    n = 0
    for rec in records:
        body = json.dumps(rec, separators=(",", ":")).encode()
        if len(out) + _HEAD.size * 2 + len(body) > capacity:
            break
        out += _HEAD.pack(len(body), zlib.crc32(body)) + body
        n += 1
    out += _HEAD.pack(0, 0)
    return bytes(out), n


def decode_records(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    """Records up to the end marker, and how many were damaged (skipping stops there)."""
    records: list[dict[str, Any]] = []
    pos = 0
    while pos + _HEAD.size <= len(raw):
        length, crc = _HEAD.unpack_from(raw, pos)
        if length == 0:
            return records, 0
        body = raw[pos + _HEAD.size: pos + _HEAD.size + length]
        if len(body) != length or zlib.crc32(body) != crc:
            return records, 1
        try:
            rec = json.loads(body)
        except ValueError:
            return records, 1
        if isinstance(rec, dict):
            records.append(rec)
        pos += _HEAD.size + length
    return records, 0


class Spill:
    def __init__(self, path: Path, size: int = SPILL_BYTES, mode: int = 0o600) -> None:
        self.path = path
        self.size = size
        self._mode = mode
        self.holding = 0              # records currently written

    def allocate(self) -> None:
        """Make sure the file exists at full size (blocks really allocated)."""
        if file_size(self.path) >= self.size:
            return
        try:
            preallocate(self.path, self.size, self._mode)
        except OSError as exc:
            log.error("cannot allocate the alarm spill file %s: %s", self.path, exc)

    def read(self) -> list[dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("cannot read the alarm spill file %s: %s", self.path, exc)
            return []
        records, damaged = decode_records(raw)
        if damaged:
            log.error("alarm spill file %s is damaged after %d records", self.path, len(records))
        return records

    def write(self, records: list[dict[str, Any]]) -> bool:
        """Replace the spilled records (in place, fsync'd). False if nothing could be written."""
        data, n = encode_records(records, self.size)
        if n < len(records):
            log.critical("alarm spill file full: %d of %d refused events written",
                         n, len(records))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, self._mode)
            try:
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.critical("cannot write the alarm spill file %s: %s", self.path, exc)
            return False
        self.holding = n
        return True

    def clear(self) -> None:
        if self.holding or self.read():
            self.write([])
