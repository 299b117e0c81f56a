"""One receiver's connection, TCP or UDP, on the asyncio loop: send a frame, wait for the
answer that belongs to it.

TCP: one connection kept open and reused (a receiver answers each frame on it; opening a
connection per alarm costs a handshake on a slow mobile link), reopened after any error.
UDP: a connected datagram endpoint; each answer is one datagram. Exchanges are serialised
per receiver (a lock): supervision NULLs and alarms take turns, never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agent.arc.config import ArcReceiver

log = logging.getLogger(__name__)
MAX_ANSWER = 4096


class LinkError(ConnectionError):
    """No answer: connection refused or lost, or the timeout passed."""


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable, ...
        self.error = exc
        self.queue.put_nowait(b"")


class Link:
    def __init__(self, receiver: ArcReceiver) -> None:
        self.receiver = receiver
        self.label = f"{receiver.protocol}://{receiver.host}:{receiver.port}"
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._proto: _Datagrams | None = None
        self.generation = 0            # counts connections (TCP) / endpoints (UDP) opened
        # Answers read while waiting for another one (an alarm sent early whose ACK a
        # supervision NULL's exchange read first): kept for the exchange they belong to.
        self._stash: list[bytes] = []

    def ready(self) -> bool:
        """Open and idle: :meth:`write_now` may send at once."""
        if self._lock.locked():
            return False
        if self.receiver.protocol == "udp":
            return self._udp is not None and not self._udp.is_closing()
        return self._writer is not None and not self._writer.is_closing()

    def write_now(self, frame: bytes) -> int:
        """Loop only, synchronous: hand ``frame`` to the open connection now (the kernel sends
        it while the caller goes on, e.g. into an fsync). Returns the connection's
        generation, for :meth:`exchange`'s ``sent_on``. Only when :meth:`ready`."""
        if self._udp is not None:
            self._udp.sendto(frame)
        elif self._writer is not None:
            self._writer.write(frame)
        return self.generation

    async def exchange(self, frame: bytes, timeout: float,
                       accept: Callable[[bytes], bool], sent_on: int | None = None) -> bytes:
        """Send ``frame``; return the first answer ``accept`` takes (others, such as a late
        answer to an earlier frame, are skipped) within ``timeout`` s of sending. With
        ``sent_on`` (from :meth:`write_now`): the frame already went out on that connection;
        it is only sent again if the connection has changed since. Raises
        :class:`LinkError`."""
        async with self._lock:
            deadline = time.monotonic() + timeout
            for i, raw in enumerate(self._stash):
                if sent_on == self.generation and accept(raw):
                    del self._stash[i]
                    return raw
            try:
                if self.receiver.protocol == "udp":
                    return await self._udp_exchange(frame, deadline, accept, sent_on)
                return await self._tcp_exchange(frame, deadline, accept, sent_on)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError) as exc:
                await self._drop()
                what = "no answer" if isinstance(exc, TimeoutError) else str(exc) or type(
                    exc).__name__
                raise LinkError(f"{self.label}: {what}") from None

    async def _tcp_exchange(self, frame: bytes, deadline: float,
                            accept: Callable[[bytes], bool], sent_on: int | None) -> bytes:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.receiver.host, self.receiver.port),
                max(0.01, deadline - time.monotonic()))
            self.generation += 1
        assert self._reader is not None and self._writer is not None
        if sent_on != self.generation:
            self._writer.write(frame)
        await asyncio.wait_for(self._writer.drain(), max(0.01, deadline - time.monotonic()))
        while True:
            raw = await asyncio.wait_for(self._reader.readuntil(b"\r"),
                                         max(0.01, deadline - time.monotonic()))
            if accept(raw):
                return raw
            self._keep(raw)

    async def _udp_exchange(self, frame: bytes, deadline: float,
                            accept: Callable[[bytes], bool], sent_on: int | None) -> bytes:
        if self._udp is None or self._udp.is_closing():
            loop = asyncio.get_running_loop()
            transport, proto = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(self.receiver.host, self.receiver.port))
            self._udp, self._proto = transport, proto
            self.generation += 1
        assert self._udp is not None and self._proto is not None
        if sent_on != self.generation:
            self._udp.sendto(frame)
        while True:
            raw = await asyncio.wait_for(self._proto.queue.get(),
                                         max(0.01, deadline - time.monotonic()))
            if not raw and self._proto.error is not None:
                raise self._proto.error
            if accept(raw):
                return raw
            self._keep(raw)

    def _keep(self, raw: bytes) -> None:
        log.debug("%s: an answer that is not for this frame, kept: %r", self.label, raw[:80])
        self._stash = [*self._stash[-7:], raw]

    async def _drop(self) -> None:
        self._stash.clear()
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        udp, self._udp, self._proto = self._udp, None, None
        if udp is not None:
            udp.close()
            await asyncio.sleep(0)   # the transport closes its socket on the next loop turn

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
