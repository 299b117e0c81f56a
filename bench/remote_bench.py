"""Remote management benchmarks: what checking and answering a signed message costs.

- ``remote_check_us``: parse + Ed25519 verification + hub/expiry/replay checks of one signed
  command. Baseline: only the two ``json.loads`` every message needs anyway.
- ``remote_cmd_rtt_p50_ms``: support signs ``status``, publishes, the running agent checks,
  runs it and answers; time until the answer is back at the support client (loopback
  mosquitto). Baseline: a bare MQTT request/echo round trip between two paho clients.
- ``remote_config_accept_p50_ms``: a signed merge from publish to ``accepted``, with
  ``rollback_after_s`` = 0.2. Baseline: the 200 ms trial itself (the floor by design).

Run through ``bench/run`` (or ``bench/run remote``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import parse_config_text
from agent.remote import envelope as env
from agent.remote.client import BrokerUrl, SupportClient, request, sign
from agent.remote.keys import KeyStore, generate_keypair, load_private_key
from agent.remote.verifier import ReplayGuard, Topic, Verifier
from agent.sim.local_broker import LocalBroker
from tests.harness import AgentRunner, wait_until

N = int(os.environ.get("BENCH_REMOTE_N", "200"))


def emit(name: str, value: float, unit: str, baseline: float | None) -> None:
    ratio = round(value / baseline, 3) if baseline else None
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                      "baseline": None if baseline is None else round(baseline, 3),
                      "ratio": ratio}), flush=True)


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_check(tmp: Path) -> None:
    key_path, pub = generate_keypair("desk", tmp / "keys")
    key = load_private_key(key_path)
    meta: dict[str, str] = {}
    v = Verifier("hub-1", KeyStore(tmp / "keys"), ReplayGuard(meta.get, meta.__setitem__),
                 1 << 20, 300)
    now = time.time()
    msgs = [sign(key, env.build_payload("cmd", "hub-1", "desk", i + 1, now, 300,
                                        {"name": "status", "args": {}})) for i in range(N * 5)]
    t0 = time.perf_counter()
    for raw in msgs:
        v.check(raw, Topic("cmd", "status"), now, True)
    checked = (time.perf_counter() - t0) / len(msgs) * 1e6
    t0 = time.perf_counter()
    for raw in msgs:
        json.loads(json.loads(raw)["payload"])
    parsed = (time.perf_counter() - t0) / len(msgs) * 1e6
    emit("remote_check_us", checked, "us", parsed)


def echo_rtt(broker: LocalBroker) -> float:
    got = threading.Event()
    a = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-a")
    b = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-b")
    for c in (a, b):
        c.username_pw_set(broker.username, broker.password)
        c.connect(broker.host, broker.port, 30)
        c.loop_start()
    b.on_message = lambda c, u, m: b.publish("bench/pong", m.payload, qos=1)
    a.on_message = lambda c, u, m: got.set()
    a.subscribe("bench/pong", qos=1)[1]
    b.subscribe("bench/ping", qos=1)
    time.sleep(0.3)  # subscriptions settle (a bench, not a test)
    times = []
    for _ in range(N):
        got.clear()
        t0 = time.perf_counter()
        a.publish("bench/ping", b"x" * 200, qos=1)
        got.wait(5)
        times.append((time.perf_counter() - t0) * 1e3)
    for c in (a, b):
        c.disconnect()
        c.loop_stop()
    return p50(times)


def bench_agent(tmp: Path) -> None:
    key_path, pub = generate_keypair("desk", tmp / "trusted")
    key = load_private_key(key_path)
    with LocalBroker(workdir=tmp / "broker") as broker:
        baseline = echo_rtt(broker)
        text = f'''hub_id = "hub-1"
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{broker.username}"
password_file = "{broker.password_file}"
[store]
path = "{tmp / 'events.db'}"
[agent]
assume_clock_synced = true
[remote]
enabled = true
keys_dir = "{tmp / 'trusted'}"
config_path = "{tmp / 'agent.toml'}"
rollback_after_s = 0.2
'''
        (tmp / "agent.toml").write_text(text)
        with AgentRunner(parse_config_text(text)) as runner:
            wait_until(lambda: runner.agent.state.online, what="online")
            client = SupportClient(BrokerUrl(broker.host, broker.port, broker.username, False),
                                   broker.password)
            client.connect()
            times = []
            for _ in range(N):
                t0 = time.perf_counter()
                doc = request(client, key, "desk", "hub-1", "cmd", {"name": "status", "args": {}},
                              300, 10)
                times.append((time.perf_counter() - t0) * 1e3)
                assert doc["status"] == "ok", doc
            emit("remote_cmd_rtt_p50_ms", p50(times), "ms", baseline)
            times = []
            for i in range(10):
                t0 = time.perf_counter()
                doc = request(client, key, "desk", "hub-1", "config",
                              {"mode": "merge",
                               "config": {"store": {"keep_history_days": 100 + i}}},
                              300, 10)
                times.append((time.perf_counter() - t0) * 1e3)
                assert doc["status"] == "accepted", doc
            emit("remote_config_accept_p50_ms", p50(times), "ms", 200.0)
            client.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tec-remote-bench-") as d:
        bench_check(Path(d) / "check")
        bench_agent(Path(d) / "agent")


if __name__ == "__main__":
    main()
