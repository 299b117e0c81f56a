"""pysiaalarm (Home Assistant's SIA DC-09 receiver) as the ARC in tests, on its own loop
thread: a receiver nobody here wrote."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from pysiaalarm import SIAAccount
from pysiaalarm.aio import SIAClient
from pysiaalarm.aio.server import SIAServerUDP
from pysiaalarm.utils import CommunicationsProtocol, Counter

ACCOUNT = "1234"
KEY_TEXT = "0123456789ABCDEF"          # pysiaalarm takes the key's ASCII bytes as the AES key
KEY_HEX = KEY_TEXT.encode().hex()      # ... which our key_file holds in hex


class _UdpServer(SIAServerUDP):
    """pysiaalarm's UDP protocol, taking the transport as given: on Python 3.11 the loop's
    datagram transport is not a subclass of ``asyncio.DatagramTransport`` and pysiaalarm's
    ``connection_made`` asserts that it is (fixed in CPython 3.12)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ArcReceiver:
    """``start()``/``stop()`` may be called again (same port): a receiver going away and
    coming back. ``events`` holds every event pysiaalarm accepted (ACKed), NULLs included."""

    def __init__(self, protocol: str = "tcp", encrypted: bool = False,
                 account: str = ACCOUNT, port: int | None = None) -> None:
        self.protocol = protocol
        self.port = port or free_port(socket.SOCK_DGRAM if protocol == "udp"
                                      else socket.SOCK_STREAM)
        self.account = SIAAccount(account, KEY_TEXT if encrypted else None)
        self.events: list[Any] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.alarm_count = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="arc-receiver",
                                        daemon=True)
        self._thread.start()
        self._client: Any = None
        self._udp: tuple[Any, Any] | None = None

    async def _on_event(self, event: Any) -> None:
        with self._changed:
            self.events.append(event)
            if event.message_type.value != "NULL":
                self.alarm_count += 1
            self._changed.notify_all()

    def wait_alarms(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` non-NULL events arrived (no polling: benchmarks)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.alarm_count >= n, timeout)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> ArcReceiver:
        async def _start() -> None:
            if self.protocol == "udp":
                server = _UdpServer({self.account.account_id: self.account}, self._on_event,
                                    Counter())
                transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: server, local_addr=("127.0.0.1", self.port))
                self._udp = (server, transport)
                return
            self._client = SIAClient("127.0.0.1", self.port, [self.account], self._on_event,
                                     protocol=CommunicationsProtocol.TCP)
            await self._client.async_start()
        self._run(_start())
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._run(self._client.async_stop())
            self._client = None
        if self._udp is not None:
            server, transport = self._udp
            server.shutdown_flag = True

            async def _close() -> None:
                transport.close()
                await asyncio.sleep(0.01)   # the socket closes on the next loop turn
            self._run(_close())
            self._udp = None

    def alarms(self) -> list[Any]:
        with self._lock:
            return [e for e in self.events if e.message_type.value != "NULL"]

    def nulls(self) -> int:
        with self._lock:
            return sum(1 for e in self.events if e.message_type.value == "NULL")

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
