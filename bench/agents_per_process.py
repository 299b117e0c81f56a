#!/usr/bin/env python3
"""Agents per process: how many :class:`Agent`\\ s one process holds before something fails.

Starts agents in steps in ONE process, all on one asyncio loop, each with its own store and
a MockFactory pull cord, against one mosquitto. After each step every new agent pulls its
cord and must get the alarm acknowledged by the broker, and every agent (old and new) must
still be online with its uplink alive; any ERROR log record or exception in a thread counts
as a failure too. Prints one JSON line: the largest N that passed, the N that failed and
why, descriptors/threads/RSS at the last good step.

    .venv/bin/python bench/agents_per_process.py [--max 1000] [--budget-s 600]

Not in ``bench/run`` (it takes minutes and grows until it breaks); run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpiozero.pins.mock import MockFactory  # noqa: E402

from agent.app import Agent, Hardware  # noqa: E402
from agent.sim.local_broker import LocalBroker  # noqa: E402
from drivers.gpio.config import GpioDevice  # noqa: E402
from tests.harness import make_config, with_gpio  # noqa: E402

ACK_TIMEOUT_S = 30.0


class Failures(logging.Handler):
    """The first ERROR (or worse) record and the first exception escaping a thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.first is None:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self.first = f"{record.name}: {text}"

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if self.first is None:
            self.first = (f"thread {args.thread.name if args.thread else '?'} died: "
                          f"{args.exc_type.__name__}: {args.exc_value}")


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def max_fd() -> int:
    """The highest open descriptor (``select()`` cannot watch one above 1,023)."""
    return max(int(name) for name in os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def steps(limit: int) -> list[int]:
    out = [1, 10]
    while out[-1] < limit:
        n = out[-1]
        out.append(n + (10 if n < 200 else 50 if n < 500 else 100))
    return [n for n in out if n <= limit] or [limit]


async def run(broker: LocalBroker, root: Path, limit: int, budget_s: float,
              failures: Failures) -> dict[str, object]:
    agents: list[tuple[Agent, MockFactory]] = []
    good: dict[str, object] = {"n": 0}
    failed_at: int | None = None
    reason = f"reached --max {limit}"
    start = time.monotonic()
    cord = GpioDevice(id="cord", kind="pull_cord", pin=27, bounce_s=0.0)
    try:
        for target in steps(limit):
            if time.monotonic() - start > budget_s:
                reason = f"time budget {budget_s:g} s spent"
                break
            new: list[tuple[Agent, MockFactory]] = []
            try:
                while len(agents) < target:
                    i = len(agents)
                    d = root / f"a{i}"
                    d.mkdir()
                    cfg = with_gpio(make_config(d, broker, hub_id=f"hub{i}"), (cord,))
                    cfg = replace(cfg, agent=replace(cfg.agent, shutdown_timeout_s=2.0))
                    factory = MockFactory()
                    agent = Agent(cfg, hardware=Hardware(pin_factory=factory))
                    await agent.start()
                    agents.append((agent, factory))
                    new.append((agent, factory))
                for agent, factory in new:
                    await asyncio.to_thread(factory.pin(27).drive_low)
                end = time.monotonic() + ACK_TIMEOUT_S
                while time.monotonic() < end and failures.first is None:
                    if all(a.uplink.acked >= 1 for a, _ in new):
                        break
                    await asyncio.sleep(0.05)
                late = [a.hub_id for a, _ in new if a.uplink.acked < 1]
                down = [a.hub_id for a, _ in agents
                        if not (a.uplink.alive() and a.state.online)]
            except Exception as exc:   # OSError (EMFILE), ValueError (select) ...
                failed_at, reason = target, f"{type(exc).__name__}: {exc}"
                break
            if failures.first is not None or late or down:
                failed_at = target
                good["max_fd_at_failure"] = max_fd()
                reason = failures.first or (
                    f"{len(late)} new agents' alarms not acknowledged within "
                    f"{ACK_TIMEOUT_S:g} s" if late else f"{len(down)} agents offline/not alive")
                break
            good = {"n": target, "fds": fds(), "threads": threading.active_count(),
                    "rss_mb": round(rss_mb(), 1), "elapsed_s": round(time.monotonic() - start, 1)}
            print(json.dumps({"step": target, **good}), file=sys.stderr, flush=True)
    finally:
        for agent, _ in reversed(agents):
            try:
                await asyncio.wait_for(agent.stop(), 10)
            except Exception:   # a broken agent must not hide the figure
                pass
    return {"good": good, "failed_at": failed_at, "reason": reason}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max", type=int, default=1000, help="stop growing at this many agents")
    ap.add_argument("--budget-s", type=float, default=600.0, help="stop growing after this")
    args = ap.parse_args()
    failures = Failures()
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger().addHandler(failures)
    threading.excepthook = failures.thread_hook
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(broker, Path(tmp), args.max, args.budget_s, failures))
    good = result["good"]
    assert isinstance(good, dict)
    print(json.dumps({"name": "agents_per_process", "value": good["n"], "unit": "agents",
                      "baseline": None, "ratio": None, "failed_at": result["failed_at"],
                      "reason": result["reason"],
                      **{k: v for k, v in good.items() if k != "n"}}))


if __name__ == "__main__":
    main()
