"""A broker that misbehaves on purpose, speaking MQTT 5 bytes on a real TCP socket.

mosquitto cannot be made to do what issue 20 saw other brokers do (accept then drop at once,
drop a protocol-5 connection before any CONNACK, close the connection on a refused
SUBSCRIBE, send DISCONNECT with a reason string), so these tests talk to this small peer
instead. It parses just enough of the protocol: fixed header, CONNECT, PUBLISH (QoS 1 is
acknowledged), SUBSCRIBE, PINGREQ, DISCONNECT.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _props(reason_string: str) -> bytes:
    props = b""
    if reason_string:
        raw = reason_string.encode()
        props = b"\x1f" + len(raw).to_bytes(2, "big") + raw
    return _varint(len(props)) + props


def connack(reason: int = 0, reason_string: str = "", session_present: bool = False) -> bytes:
    return packet(0x20, bytes([int(session_present), reason]) + _props(reason_string))


def disconnect(reason: int, reason_string: str = "") -> bytes:
    return packet(0xE0, bytes([reason]) + _props(reason_string))


@dataclass
class Conn:
    """What one connection did."""

    opened: float
    closed: float | None = None
    subscribed: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)


class MisbehavingBroker:
    """``on_connect(conn_no) -> bytes | None``: what to answer a CONNECT with (None: close
    the connection); ``after_connack(conn_no) -> bytes | None``: sent right after it, then
    the connection is closed if it is not None; ``refuse_subscribe(topic) -> bool``: close
    the connection on a SUBSCRIBE to that topic."""

    def __init__(self, on_connect: Callable[[int], bytes | None] = lambda n: connack(),
                 after_connack: Callable[[int], bytes | None] = lambda n: None,
                 refuse_subscribe: Callable[[str], bool] = lambda t: False,
                 puback_delay_s: float = 0.0) -> None:
        self.on_connect = on_connect
        self.after_connack = after_connack
        self.refuse_subscribe = refuse_subscribe
        # RabbitMQ acknowledges a QoS 1 PUBLISH once its queues confirmed it, later than it
        # reads the next packet: a SUBSCRIBE behind it that closes the connection goes first.
        self.puback_delay_s = puback_delay_s
        self.conns: list[Conn] = []
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)
        self._srv.close()

    def __enter__(self) -> MisbehavingBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._srv.accept()
            except TimeoutError:
                continue
            conn = Conn(time.monotonic())
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(sock, conn, len(self.conns)),
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _read(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                if self._stop.is_set():
                    raise ConnectionError("stopping") from None
                continue
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def _packet(self, sock: socket.socket) -> tuple[int, bytes]:
        head = self._read(sock, 1)[0]
        length, mult = 0, 1
        while True:
            b = self._read(sock, 1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return head, self._read(sock, length)

    def _puback(self, sock: socket.socket, ack: bytes) -> None:
        if not self.puback_delay_s:
            sock.sendall(ack)
            return

        def send() -> None:
            with contextlib.suppress(OSError):   # closed meanwhile: the PUBACK is lost
                sock.sendall(ack)

        timer = threading.Timer(self.puback_delay_s, send)
        timer.daemon = True
        timer.start()

    def _serve(self, sock: socket.socket, conn: Conn, n: int) -> None:
        sock.settimeout(0.2)
        try:
            with sock:
                head, _ = self._packet(sock)
                if head >> 4 != 1:
                    return
                answer = self.on_connect(n)
                if answer is None:
                    return
                sock.sendall(answer)
                after = self.after_connack(n)
                if after is not None:
                    sock.sendall(after)
                    return
                while not self._stop.is_set():
                    head, body = self._packet(sock)
                    kind = head >> 4
                    if kind == 3:          # PUBLISH
                        tlen = int.from_bytes(body[:2], "big")
                        conn.published.append(body[2:2 + tlen].decode())
                        if (head >> 1) & 3:
                            mid = body[2 + tlen:4 + tlen]
                            self._puback(sock, packet(0x40, mid + b"\x00\x00"))
                    elif kind == 8:        # SUBSCRIBE
                        mid = body[:2]
                        plen, i = 0, 2     # properties length (one byte is enough here)
                        plen = body[i]
                        i += 1 + plen
                        tlen = int.from_bytes(body[i:i + 2], "big")
                        topic = body[i + 2:i + 2 + tlen].decode()
                        conn.subscribed.append(topic)
                        if self.refuse_subscribe(topic):
                            return
                        sock.sendall(packet(0x90, mid + b"\x00\x01"))
                    elif kind == 12:       # PINGREQ
                        sock.sendall(packet(0xD0, b""))
                    elif kind == 14:       # DISCONNECT
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            conn.closed = time.monotonic()
