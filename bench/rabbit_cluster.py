#!/usr/bin/env python3
"""A fleet on a 3-node RabbitMQ cluster (MQTT 3.1.1), the hubs' node killed (-9) mid-run.

    PYTHONPATH=. .venv/bin/python bench/rabbit_cluster.py [--hubs 200] [--minutes 3]
        [--kill-at 60] [--restart-after S] [--db URL] [--mirror]

1. Starts three RabbitMQ 3.10 nodes on loopback in a temporary directory
   (:class:`agent.sim.rabbit_cluster.RabbitCluster`: own node names, ports, Mnesia and log
   directories, one cookie, a private epmd) and joins them; a first-alive TCP load balancer
   in front (what a service runs: HAProxy or a cloud LB).
2. Checks what the issue saw on a cluster, before any hub connects: a retained message is
   handed to an exact-topic subscriber on the node it was published to, and on the others
   (``retained_same_node``, ``retained_other_node``); ``x-expires`` of an MQTT session queue.
3. Runs ``tec-agent simulate --hubs N --protocol 3.1.1 --broker <load balancer>
   --ingest-broker <node 2> --group ''`` (one ingester, plain subscription with a persistent
   session: RabbitMQ 3.10 has no ``$share``). Once the hubs are up, counts on which node the
   hubs' session queues live (node 1: the balancer sends every hub there first), and
   ``--kill-at`` seconds into the load kills node 1 with SIGKILL; with ``--restart-after``
   starts it again that much later.
4. Prints one JSON line: the simulator's result (``hubs, accepted, ingested, duplicates,
   lost, ...``), ``duplicates_pct`` (of accepted), the checks above, hub connections made
   through the balancer per node, the broker's ``NOT_FOUND`` refusals logged by the nodes,
   the hubs' "connection lost" lines and subscription retries. Exit 1 if an accepted event
   was lost or duplicates reached 1 % of accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "packaging" / "brokers"))

from agent.remote.client import BrokerUrl
from agent.sim.rabbit_cluster import FirstAlive, RabbitCluster


def retained_checks(cluster: RabbitCluster) -> dict[str, Any]:
    """A retained status published on node 1, asked for on node 1 and on node 2."""
    from check_broker import Probe

    pw = cluster.password
    topic = "tec/v1/tec-check-ret/status"

    def url(i: int) -> BrokerUrl:
        return BrokerUrl("127.0.0.1", cluster.nodes[i].mqtt_port, cluster.username, False)

    pub = Probe(url(0), pw, "3.1.1", "tec-check-ret-pub")
    pub.connect()
    pub.publish(topic, b'{"state":"online"}', retain=True)
    out: dict[str, Any] = {}
    for name, i in (("retained_same_node", 0), ("retained_other_node", 1)):
        sub = Probe(url(i), pw, "3.1.1", f"tec-check-ret-{i}")
        sub.connect()
        sub.subscribe(topic)
        out[name] = sub.wait(lambda sub=sub: bool(sub.got), 3.0)
        sub.close()
    pub.publish(topic, b"", retain=True)
    pub.close()
    return out


def queues_by_node(cluster: RabbitCluster, alive: int, prefix: str) -> dict[str, int]:
    out = cluster.ctl(alive, "list_queues", "name", "pid", "--quiet", "--no-table-headers")
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(prefix):
            m = re.search(r"<([^.>]+)\.", parts[1])
            node = m.group(1) if m else parts[1]
            counts[node] = counts.get(node, 0) + 1
    return counts


def queue_expiry(cluster: RabbitCluster, alive: int, prefix: str) -> int | None:
    out = cluster.ctl(alive, "list_queues", "name", "arguments", "--quiet",
                      "--no-table-headers")
    for line in out.splitlines():
        if line.startswith(prefix):
            m = re.search(r"x-expires.*?(\d+)", line)
            if m:
                return int(m.group(1))
    return None


def node_log_count(cluster: RabbitCluster, pattern: str) -> int:
    n = 0
    for node in cluster.nodes:
        for f in (node.dir / "log").glob("*.log"):
            n += f.read_text(errors="replace").count(pattern)
    return n


def kill_mid_run(cluster: RabbitCluster, lb: FirstAlive, args: argparse.Namespace,
                 report: dict[str, Any]) -> dict[int, int]:
    """Once the hubs are up: where the sessions live, then kill -9 node 1 ``--kill-at``
    seconds into the load (and start it again ``--restart-after`` later). Returns the
    balancer's connection counts at the kill."""
    load_t0 = time.monotonic()
    report["hub_queues_by_node"] = queues_by_node(cluster, 1, "mqtt-subscription-tec-agent")
    report["ingest_queues_by_node"] = queues_by_node(cluster, 1,
                                                     "mqtt-subscription-tec-sim-ingest")
    report["session_queue_x_expires_ms"] = queue_expiry(cluster, 1,
                                                        "mqtt-subscription-tec-agent")
    left = load_t0 + args.kill_at - time.monotonic()
    if left > 0:
        time.sleep(left)
    connects_before = dict(lb.forwarded)
    cluster.kill(0)
    report["killed"] = cluster.nodes[0].name
    report["killed_at_s"] = round(time.monotonic() - load_t0, 1)
    if args.restart_after is not None:
        left = load_t0 + args.kill_at + args.restart_after - time.monotonic()
        if left > 0:
            time.sleep(left)
        cluster.start_node(0)
        report["restarted_at_s"] = round(time.monotonic() - load_t0, 1)
    return connects_before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hubs", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--kill-at", type=float, default=60.0,
                    help="seconds into the load to kill -9 the hubs' node (default 60)")
    ap.add_argument("--restart-after", type=float,
                    help="start the killed node again this many seconds later (default: not)")
    ap.add_argument("--db", help="the ingester's database (default SQLite in the temp dir)")
    ap.add_argument("--mirror", action="store_true",
                    help="classic queue mirroring policy on mqtt-subscription-* (ha-mode all)")
    ap.add_argument("--keep", metavar="DIR",
                    help="run in DIR and keep it (node logs, the simulator's stderr)")
    args = ap.parse_args()

    # SIGTERM unwinds through the finally below: the nodes, epmd and the simulator go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mirror = '{"ha-mode":"all","ha-sync-mode":"automatic"}' if args.mirror else None
    cluster = RabbitCluster(3, workdir=args.keep, mirror_policy=mirror)
    t0 = time.monotonic()
    cluster.start()
    report: dict[str, Any] = {"cluster_start_s": round(time.monotonic() - t0, 1)}
    lb = FirstAlive([n.mqtt_port for n in cluster.nodes]).start()
    proc: subprocess.Popen[str] | None = None
    try:
        report.update(retained_checks(cluster))
        cmd = [sys.executable, "-m", "agent", "simulate", "--hubs", str(args.hubs),
               "--minutes", str(args.minutes), "--protocol", "3.1.1", "--group", "",
               "--broker", f"mqtt://{cluster.username}@127.0.0.1:{lb.port}",
               "--ingest-broker", f"mqtt://{cluster.username}@127.0.0.1:"
                                  f"{cluster.nodes[1].mqtt_port}",
               "--password-file", str(cluster.password_file)]
        if args.db:
            cmd += ["--db", args.db]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None and proc.stderr is not None
        stderr_lines: list[str] = []
        started = threading.Event()

        def read_stderr() -> None:
            assert proc is not None and proc.stderr is not None
            for line in proc.stderr:
                stderr_lines.append(line)
                if "hubs started in" in line:
                    started.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        while not started.wait(1.0):
            if proc.poll() is not None:
                break
        connects_before = kill_mid_run(cluster, lb, args, report) if started.is_set() else None
        stdout = proc.stdout.read()     # stderr is the reader thread's alone
        proc.wait()
        reader.join(10)
        report["exit"] = proc.returncode
        ports = {n.mqtt_port: n.name for n in cluster.nodes}
        report["hub_connects_by_node"] = {ports[p]: c for p, c in lb.forwarded.items()}
        if connects_before is not None:
            report["hub_reconnects_after_kill"] = sum(lb.forwarded.values()) - sum(
                connects_before.values())
        report["node_log_not_found"] = node_log_count(cluster, "NOT_FOUND")
        err = "".join(stderr_lines)
        (cluster.dir / "simulate.log").write_text(err)
        report["hub_connection_lost_lines"] = err.count("MQTT connection lost")
        report["hub_subscription_retry_lines"] = err.count("MQTT subscription")
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        extra = [ln for ln in stderr_lines if ln.startswith("{")]
        if not lines:
            print(err[-3000:], file=sys.stderr)
            print(json.dumps(report))
            return 1
        result = json.loads(lines[-1])
        if extra:
            x = json.loads(extra[-1])
            report.update({k: x[k] for k in ("alarms", "telemetry", "undrained_hubs", "load_s")
                           if k in x})
        dup_pct = 100.0 * result["duplicates"] / max(1, result["accepted"])
        out = {**result, "duplicates_pct": round(dup_pct, 2), **report}
        print(json.dumps(out))
        return 0 if result["lost"] == 0 and dup_pct < 1.0 and proc.returncode == 0 else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)     # the simulator stops its ingester on the way
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        lb.close()
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
