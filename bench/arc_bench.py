"""ARC path benchmark: alarm latency to the Alarm Receiving Centre over SIA DC-09.

``arc_alarm_latency_p50_ms`` / ``arc_alarm_latency_p99_ms``: MockFactory edge on a pull cord
-> pysiaalarm's event callback (the receiver, TCP on loopback), through the whole agent (store
commit, ARC queue, DC-09 framing, ACK). Baseline, same run, same receiver: a bare TCP socket
sending one ready-made DC-09 frame and waiting for the same callback. Alternated in rounds
(the machine may be shared); figures are over all samples. Run through ``bench/run``.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.app import Hardware
from agent.arc import dc09
from agent.sim.local_broker import LocalBroker
from bench.core_bench import emit, pct
from drivers.gpio.config import GpioDevice
from tests.arc_receiver import ACCOUNT, ArcReceiver
from tests.harness import AgentRunner, make_config, wait_until, with_gpio


class Callbacks:
    """The receiver's callbacks; ``wait_next`` blocks (on a condition, no polling) until
    one more arrived."""

    def __init__(self, receiver: ArcReceiver) -> None:
        self.receiver = receiver

    def count(self) -> int:
        return self.receiver.alarm_count

    def wait_next(self, before: int, timeout: float = 5.0) -> None:
        if not self.receiver.wait_alarms(before + 1, timeout):
            raise TimeoutError("no callback at the receiver")


def baseline(receiver: ArcReceiver, n: int) -> list[float]:
    """A bare socket: one DC-09 frame (made before the clock starts) -> the callback."""
    cb = Callbacks(receiver)
    out = []
    with socket.create_connection(("127.0.0.1", receiver.port)) as s:
        for i in range(n):
            frame = dc09.encode(dc09.adm_cid(i % 9999 + 1, ACCOUNT, 101, zone=1, receiver="0"),
                                datetime.now(UTC))
            before = cb.count()
            t0 = time.perf_counter()
            s.sendall(frame)
            cb.wait_next(before)
            out.append((time.perf_counter() - t0) * 1000)
            s.recv(1024)                                   # the ACK
            time.sleep(0.005)
    return out


def agent(receiver: ArcReceiver, broker: LocalBroker, n: int) -> list[float]:
    from gpiozero.pins.mock import MockFactory

    cb = Callbacks(receiver)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        factory = MockFactory()
        cord = GpioDevice(id="cord", kind="pull_cord", pin=27, bounce_s=0.0)
        cfg = make_config(Path(tmp), broker, hub_id="bench", extra=(
            f'[arc]\naccount = "{ACCOUNT}"\nsupervision_s = 0\n[[arc.receivers]]\n'
            f'host = "127.0.0.1"\nport = {receiver.port}\n'))
        cfg = with_gpio(cfg, (cord,))
        cfg = replace(cfg, gpio=replace(cfg.gpio, storm_events=10000))
        with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
            wait_until(lambda: runner.agent.state.online, 10)
            tx = next(c for c in runner.agent.components if c.name == "arc").transmitter
            pin = factory.pin(27)
            for _ in range(n):
                before = cb.count()
                t0 = time.perf_counter()
                pin.drive_low()
                cb.wait_next(before)
                out.append((time.perf_counter() - t0) * 1000)
                pin.drive_high()
                # One alarm at a time: the next edge once the ACK is recorded (not while the
                # previous alarm's commit is still in its fsync).
                wait_until(lambda: runner.call(lambda: tx.backlog == 0 and tx.current is None),
                           5, interval=0.002)
                time.sleep(0.01)
    return out


def main() -> None:
    n = int(os.environ.get("BENCH_ARC_N", "1000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    receiver = ArcReceiver("tcp").start()
    base: list[float] = []
    lat: list[float] = []
    try:
        with LocalBroker() as broker:
            for _ in range(rounds):
                base += baseline(receiver, n // rounds)
                lat += agent(receiver, broker, n // rounds)
    finally:
        receiver.close()
    emit("arc_alarm_latency_p50_ms", statistics.median(lat), "ms", statistics.median(base))
    emit("arc_alarm_latency_p99_ms", pct(lat, 99), "ms", pct(base, 99))


if __name__ == "__main__":
    main()
