"""Opt-in (``TEC_RABBIT_TESTS=1``; skipped without Debian's ``rabbitmq-server``): a small
fleet on a 3-node RabbitMQ cluster (MQTT 3.1.1), the node holding the hubs' sessions killed
(-9) mid-run, through ``bench/rabbit_cluster.py``. About two minutes: the nodes take ~40 s
to start and join."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sim.rabbit_cluster import find_rabbitmq

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    find_rabbitmq() is None or os.environ.get("TEC_RABBIT_TESTS") != "1",
    reason="opt-in: TEC_RABBIT_TESTS=1 and rabbitmq-server installed")


def test_killing_the_hubs_node_loses_nothing_and_does_not_loop() -> None:
    hubs = 10
    res = subprocess.run([sys.executable, "bench/rabbit_cluster.py", "--hubs", str(hubs),
                          "--minutes", "1", "--kill-at", "20"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, res.stderr[-3000:]
    doc = json.loads(lines[-1])
    assert res.returncode == 0, doc
    assert doc["lost"] == 0 and doc["duplicates_pct"] < 1.0, doc
    assert doc["hub_queues_by_node"] == {doc["killed"]: hubs}, doc   # the sessions' node
    assert doc["retained_same_node"] is True and doc["retained_other_node"] is False
    assert doc["session_queue_x_expires_ms"] == 1209600000              # subscription_ttl
    # One reconnect each after the kill, then one per refused subscription retry (30 s,
    # then 60 s): at most 3 each within the 40 s left (the old 1 s backoff: about 9 a minute).
    assert doc["hub_reconnects_after_kill"] <= 3 * hubs, doc
