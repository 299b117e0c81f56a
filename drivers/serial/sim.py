"""A simulated telecare unit on the far end of a pty pair (demos, the simulated home, benches).

It behaves like the real thing on the line: a heartbeat every ``heartbeat_s``, Contact ID
frames that wait for the hub's ACK (resending on NAK or silence, as a Sur-Gard receiver
does), and an ACK for every frame the hub escalates to it. The hub's driver opens
:attr:`SimulatedUnit.path` like any serial device.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
import time
import tty

from drivers.serial.contact_id import ACK, ContactIdFrame, Heartbeat, LineSplitter, encode

log = logging.getLogger(__name__)


class SimulatedUnit:
    def __init__(self, unit_id: str = "telecare-unit", heartbeat_s: float = 30.0,
                 account: str = "1234") -> None:
        self.unit_id = unit_id
        self.account = account
        self.heartbeat_s = heartbeat_s
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        self.path = os.ttyname(self._slave)
        self.received: list[bytes] = []          # frames the hub sent us (escalations)
        self._replies: queue.Queue[bool] = queue.Queue()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"sim-unit-{unit_id}", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name=f"sim-unit-hb-{unit_id}",
                             daemon=True),
        ]
        for t in self._threads:
            t.start()

    def frame(self, event_code: str, qualifier: str = "1", zone: int = 1) -> bytes:
        return encode(ContactIdFrame(account=self.account, qualifier=qualifier,
                                     event_code=event_code, group="01", zone=f"{zone:03d}"))

    def send(self, data: bytes, timeout_s: float = 4.0, tries: int = 4) -> bool:
        """Blocking: write ``data`` and wait for the hub's ACK, resending like a receiver.
        Gives up (False) as soon as the unit is closing: the pty may be gone."""
        with self._send_lock:
            for _ in range(tries):
                if self._stop.is_set():
                    return False
                while not self._replies.empty():
                    self._replies.get_nowait()
                try:
                    os.write(self._master, data)
                except OSError:       # closed under us
                    return False
                deadline = time.monotonic() + timeout_s
                while not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        if self._replies.get(timeout=min(0.1, left)):
                            return True
                        break             # NAK: send again
                    except queue.Empty:
                        pass
            return False

    def close(self) -> None:
        """Stop both threads, then close the pty. The threads see the stop within 0.1 s; the
        descriptors are closed only after they ended (a thread writing to a closed, or worse
        a reused, descriptor was the ``Bad file descriptor`` at exit)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_loop(self) -> None:
        splitter = LineSplitter()
        while not self._stop.is_set():
            try:
                ready = select.select([self._master], [], [], 0.1)[0]
                data = os.read(self._master, 256) if ready else b""
            except OSError:
                return
            for token in splitter.feed(data, time.monotonic()):
                if token.kind in ("ack", "nak"):
                    self._replies.put(token.kind == "ack")
                elif token.kind == "frame":
                    self.received.append(token.body)
                    log.info("simulated unit %s: received %r, ACK", self.unit_id, token.body)
                    try:
                        os.write(self._master, bytes([ACK]))
                    except OSError:
                        return

    def _heartbeat_loop(self) -> None:
        beat = encode(Heartbeat())
        # The hub may not have the port open yet (opening flushes input): insist at first.
        tries = 5
        while not self._stop.is_set():
            ok = self.send(beat, timeout_s=1.0, tries=tries)
            tries = 1
            if not ok:
                log.debug("simulated unit %s: heartbeat not acknowledged", self.unit_id)
            self._stop.wait(self.heartbeat_s)
