"""Serial telecare-unit benchmarks: how fast a Contact ID frame is made durable and ACKed.

- ``serial_ack_p50_ms`` / ``serial_ack_p99_ms``: frame written on a pty (the unit's end) ->
  ACK read back, through the real agent, which ACKs only after the event is committed to
  SQLite. Baseline: the same pty round trip to a pyserial reader that ACKs at once (what
  the line and a thread cost without durability). The unit needs the ACK within 4 s and we
  promise 1 s.
- ``serial_frame_to_broker_p50_ms``: frame on the pty -> the event at an MQTT subscriber on a
  loopback mosquitto. Baseline: raw paho QoS 1 publish -> receipt in the same run.

Run through ``bench/run`` (or ``bench/run serial``).
"""

from __future__ import annotations

import json
import os
import select
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import serial

from agent.app import Hardware
from agent.sim.local_broker import LocalBroker
from drivers.serial.contact_id import ACK, DC4
from tests.harness import AgentRunner, make_config, wait_until

N = int(os.environ.get("BENCH_SERIAL_N", "300"))
FRAME = b"5011 181234110100015" + bytes([DC4])


def emit(name: str, value: float, unit: str, baseline: float | None) -> None:
    ratio = round(value / baseline, 3) if baseline else None
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                      "baseline": None if baseline is None else round(baseline, 3),
                      "ratio": ratio}), flush=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def read_ack(fd: int, timeout: float = 5.0) -> None:
    if not select.select([fd], [], [], timeout)[0]:
        raise RuntimeError("no reply from the hub")
    if os.read(fd, 1) != bytes([ACK]):
        raise RuntimeError("hub did not ACK")


def pty_pair() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(master)
    return master, slave, os.ttyname(slave)


def baseline_ack(n: int) -> list[float]:
    """The bare line: a pyserial thread that ACKs each frame the moment it has it."""
    master, slave, path = pty_pair()
    port = serial.Serial(path, 9600, timeout=0.1)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if port.read_until(bytes([DC4])).endswith(bytes([DC4])):
                port.write(bytes([ACK]))

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        os.write(master, FRAME)
        read_ack(master)
        out.append((time.perf_counter() - t0) * 1000)
    stop.set()
    t.join(1)
    port.close()
    os.close(master)
    os.close(slave)
    return out


def baseline_publish(broker: LocalBroker, n: int) -> list[float]:
    from bench.core_bench import baseline_latency

    return baseline_latency(broker, n)


def agent_ack(broker: LocalBroker, n: int, workdir: Path) -> tuple[list[float], list[float]]:
    master, slave, path = pty_pair()
    cfg = make_config(workdir, broker, f'[[serial.units]]\nid = "unit"\nport = "{path}"\n')
    sub = broker_subscriber(broker)
    acks, deliveries = [], []
    with AgentRunner(cfg, Hardware()) as runner:
        wait_until(lambda: runner.agent.state.online, 10)
        wait_until(lambda: _serial(runner).devices()[0].details["port_open"], 10)
        for _ in range(n):
            got = len(sub.events())
            t0 = time.perf_counter()
            os.write(master, FRAME)
            read_ack(master)
            acks.append((time.perf_counter() - t0) * 1000)
            wait_until(lambda got=got: len(sub.events()) > got, 10, interval=0.0005)
            deliveries.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.002)
    sub.close()
    os.close(master)
    os.close(slave)
    return acks, deliveries


def _serial(runner: AgentRunner):
    return next(c for c in runner.agent.components if c.name == "serial")


def broker_subscriber(broker: LocalBroker):
    from tests.harness import Collector

    return Collector(broker, "tec/v1/hub-test/event")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(workdir=Path(tmp) / "broker")
        broker.start()
        try:
            base_ack = baseline_ack(N)
            base_pub = baseline_publish(broker, min(N, 200))
            acks, deliveries = agent_ack(broker, N, Path(tmp))
        finally:
            broker.close()
    emit("serial_ack_p50_ms", pct(acks, 50), "ms", pct(base_ack, 50))
    emit("serial_ack_p99_ms", pct(acks, 99), "ms", pct(base_ack, 99))
    emit("serial_frame_to_broker_p50_ms", pct(deliveries, 50), "ms", pct(base_pub, 50))


if __name__ == "__main__":
    main()
