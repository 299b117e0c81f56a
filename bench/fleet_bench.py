#!/usr/bin/env python3
"""Fleet: hubs one core holds (``fleet_hubs_per_core``), from ``tec-agent simulate --hubs``.

N real agents in one process against one mosquitto and one ``tec-agent ingest`` on a
private PostgreSQL, for M minutes of motion (Poisson, mean 60 s per hub) and one alarm per
hub. The figure is N x load seconds / CPU seconds the hubs' process spent during the load
(the start-up of the agents is not in it). No baseline: nothing comparable runs in the same
run (bench/agents_per_process.py is the capacity test). BENCH_FLEET_HUBS (default 200),
BENCH_FLEET_MINUTES (default 1). Also prints the simulator's extra figures (telemetry,
stored_not_accepted, start-up seconds, ...).

Faults (issue 20's measurements), each passed on to ``simulate``: BENCH_FLEET_RESTART_AT
(seconds: mosquitto restarted), BENCH_FLEET_KILL_INGESTER_AT (seconds: the first ingester
killed with -9), BENCH_FLEET_INGESTERS (default 1), BENCH_FLEET_GROUP (default: simulate's).
A failed run (lost > 0 exits 1) still prints its figures, with ``"failed": true``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.sim.local_postgres import LocalPostgres

HUBS = int(os.environ.get("BENCH_FLEET_HUBS", "200"))
MINUTES = float(os.environ.get("BENCH_FLEET_MINUTES", "1"))
FAULTS = (("BENCH_FLEET_RESTART_AT", "--restart-broker-at"),
          ("BENCH_FLEET_KILL_INGESTER_AT", "--kill-ingester-at"),
          ("BENCH_FLEET_INGESTERS", "--ingesters"), ("BENCH_FLEET_GROUP", "--group"))
# BENCH_FLEET_NO_RECEIPTS=1: the ingesters send no receipts (the counterfactual).


def main() -> None:
    with LocalPostgres() as pg:
        url = pg.create_database("bench_fleet")
        faults = [a for env, flag in FAULTS if env in os.environ
                  for a in (flag, os.environ[env])]
        if os.environ.get("BENCH_FLEET_NO_RECEIPTS"):
            faults.append("--no-receipts")
        res = subprocess.run([sys.executable, "-m", "agent", "simulate", "--hubs", str(HUBS),
                              "--minutes", str(MINUTES), "--local-broker", "--db", url,
                              *faults],
                             capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = res.stdout.strip().splitlines()
    extras = [ln for ln in res.stderr.splitlines() if ln.startswith("{")]
    if res.returncode not in (0, 1) or not lines or not extras:
        sys.exit(f"fleet simulation failed ({res.returncode}): {res.stderr[-2000:]}")
    result = json.loads(lines[-1])
    extra = json.loads(extras[-1])
    print(json.dumps({"name": "fleet_hubs_per_core", "value": extra["hubs_per_core"],
                      "unit": "hubs/core", "baseline": None, "ratio": None, **result,
                      **{k: extra.get(k) for k in (
                          "load_s", "load_cpu_s", "start_s", "alarms", "telemetry",
                          "telemetry_ingested", "stored_not_accepted", "undrained_hubs",
                          "rss_mb", "resent", "receipted", "receipt_lag_ms_p50",
                          "receipt_lag_ms_p99", "receipt_lag_ms_max", "elapsed_s")},
                      "faults": faults, "failed": res.returncode != 0}))
    if res.returncode != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
