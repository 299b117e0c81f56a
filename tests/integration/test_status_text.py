"""systemd's StatusText follows the agent (issue 21): sent through a real NOTIFY_SOCKET
datagram socket, current after an alarm is delivered, and rate limited."""

from __future__ import annotations

import socket
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import STATUS_EVERY_S, Hardware
from drivers.gpio.config import GpioDevice
from tests.harness import AgentRunner, make_config, wait_until, with_gpio

CORD = GpioDevice(id="cord-1", kind="pull_cord", pin=27, room="bathroom")


class NotifySocket:
    """What systemd's notify socket would receive, with the monotonic time of arrival."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.received.append((time.monotonic(), line))

    def statuses(self) -> list[tuple[float, str]]:
        return [(t, m.removeprefix("STATUS=")) for t, m in list(self.received)
                if m.startswith("STATUS=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_status_text_is_current_after_delivery_and_rate_limited(
        tmp_path: Path, mqtt_broker, monkeypatch: pytest.MonkeyPatch) -> None:
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    factory = MockFactory()
    cfg = with_gpio(make_config(tmp_path, mqtt_broker), (CORD,))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
            wait_until(lambda: any(m == "READY=1" for _, m in notify.received), what="READY")
            wait_until(lambda: notify.statuses() and notify.statuses()[-1][1].startswith("online"),
                       timeout=STATUS_EVERY_S + 5, what="StatusText online")
            pin = factory.pin(27)
            for _ in range(5):                      # a burst of alarms: coalesced updates
                pin.drive_low()
                time.sleep(0.05)
                pin.drive_high()
                time.sleep(0.3)
            wait_until(lambda: runner.agent.state.backlog == 0, what="all acknowledged")
            last = wait_until(
                lambda: (s := notify.statuses()[-1][1]).startswith("online; 0 pending")
                and "last alarm delivered" in s and s,
                timeout=STATUS_EVERY_S + 5, what="StatusText current after delivery")
            assert "alarm pending" not in last
            mqtt_broker.stop()
            wait_until(lambda: notify.statuses()[-1][1].startswith("offline"),
                       timeout=STATUS_EVERY_S + 10, what="StatusText offline")
            mqtt_broker.start()
    finally:
        notify.close()
    times = [t for t, _ in notify.statuses()]
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps and min(gaps) >= STATUS_EVERY_S - 0.05, gaps
    texts = [s for _, s in notify.statuses()]
    assert all(a != b for a, b in pairwise(texts)), texts   # only changes are sent
