"""The rig for bench/faults.py: a private mosquitto on loopback, a subscriber that counts
events by id, the real agent as a subprocess (``python -m agent simulate``), tmpfs mounts.

Everything the rig starts is torn down when it exits, also on Ctrl-C and SIGTERM: agent
processes (by their own Popen handle), lock holders, brokers, mounts, the work directory.
Every wait has a deadline.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.sim.local_broker import LocalBroker  # noqa: E402
from agent.uplink.topics import event_topic  # noqa: E402
from tests.harness import release_client  # noqa: E402

HUB = "hub-faults"


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """``pred()`` once truthy, or its last (falsy) value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Subscriber:
    """A QoS 1 subscriber on the hub's event topic with a persistent session (fixed client
    id, clean_session off), started before any agent: it sees every event the broker took,
    also across a broker restart (the broker runs with persistence)."""

    def __init__(self, broker: LocalBroker, hub_id: str = HUB) -> None:
        self.count: collections.Counter[str] = collections.Counter()
        self.first: dict[str, float] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.garbled = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"fault-subscriber-{os.getpid()}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.username_pw_set(broker.username, broker.password)
        topic = event_topic(hub_id)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("subscriber could not subscribe within 10 s")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        try:
            doc = json.loads(msg.payload)
            key = str(doc["id"])
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.garbled += 1
            return
        with self._lock:
            self.count[key] += 1
            self.first.setdefault(key, now)
            self.docs.setdefault(key, doc)

    def received(self) -> set[str]:
        with self._lock:
            return set(self.count)

    def duplicates(self) -> int:
        with self._lock:
            return sum(n - 1 for n in self.count.values())

    def wait_ids(self, ids: set[str], timeout: float) -> bool:
        return bool(wait_for(lambda: ids <= self.received(), timeout))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)


class AgentRun:
    """One ``tec-agent simulate`` subprocess. ``accepted`` holds each event it printed (it
    prints an event once it is durably stored), with ``_t`` the monotonic time of the line."""

    def __init__(self, args: list[str], log: Path, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.started = time.monotonic()
        self._log = log.open("a")
        self._log.write(f"--- {' '.join(args)}\n")
        self._log.flush()
        self._log_path, self._log_from = log, self._log.tell()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     start_new_session=True)
        self.accepted: list[dict[str, Any]] = []
        self.partial_lines = 0
        self.last_words = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                self.partial_lines += 1      # cut by kill -9: not counted as accepted
                continue
            doc["_t"] = time.monotonic()
            self.accepted.append(doc)

    def _said(self, lines: int) -> str:
        """The last ``lines`` lines this run wrote on stderr (its final message, an error)."""
        with self._log_path.open() as f:
            f.seek(self._log_from)
            text = [ln for ln in f.read().splitlines() if ln.strip()]
        return " / ".join(ln.strip()[:200] for ln in text[-lines:])

    def ids(self) -> set[str]:
        return {d["id"] for d in list(self.accepted)}

    def wait_accepted(self, n: int, timeout: float) -> bool:
        return bool(wait_for(lambda: len(self.accepted) >= n or self.proc.poll() is not None,
                             timeout) and len(self.accepted) >= n)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` (then it is killed)."""
        try:
            rc: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        self.last_words = self._said(2)
        return rc


class Rig:
    """``with Rig() as rig:`` a work directory, and whatever is started through it."""

    def __init__(self, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tec-faults-"))
        self.keep = keep
        self.log = self.dir / "agent.log"
        self._brokers: list[LocalBroker] = []
        self._subs: list[Subscriber] = []
        self._runs: list[AgentRun] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._mounts: list[Path] = []
        self._old_term: Any = None

    def __enter__(self) -> Rig:
        self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for run in self._runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(10)
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for sub in self._subs:
            try:
                sub.close()
            except Exception:
                pass
        for broker in self._brokers:
            broker.close()
        for mnt in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
        self._runs, self._procs, self._subs, self._brokers, self._mounts = [], [], [], [], []

    # -- parts ---------------------------------------------------------------------------------
    def broker(self) -> LocalBroker:
        """A mosquitto with persistence (what it acknowledged survives its own restart)."""
        b = LocalBroker(workdir=self.dir / f"broker{len(self._brokers)}", persistence=True)
        self._brokers.append(b)
        b.start()
        return b

    def subscriber(self, broker: LocalBroker) -> Subscriber:
        sub = Subscriber(broker)
        self._subs.append(sub)
        return sub

    def config(self, broker: LocalBroker, store: Path, fast_reconnect: bool = True) -> Path:
        """An agent config: the store at ``store``; reconnect 0.1..1 s, or the shipped
        defaults (what a home gets) with ``fast_reconnect=False``."""
        text = (f'hub_id = "{HUB}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n')
        if fast_reconnect:
            text += "reconnect_min_s = 0.1\nreconnect_max_s = 1.0\n"
        text += (f'[store]\npath = "{store}"\n'
                 '[agent]\nassume_clock_synced = true\nlog_level = "WARNING"\n')
        path = self.dir / f"agent-{len(list(self.dir.glob('agent-*.toml')))}.toml"
        path.write_text(text)
        return path

    def simulate(self, config: Path, count: int, rate: float = 200.0,
                 timeout: float = 60.0) -> AgentRun:
        run = AgentRun(["simulate", "--config", str(config), "--scenario", "soak",
                        "--count", str(count), "--rate", str(rate), "--timeout", str(timeout)],
                       self.log, self.dir)
        self._runs.append(run)
        return run

    def drain(self, config: Path, timeout: float = 120.0) -> tuple[int | None, float]:
        """A clean run that sends nothing new: (exit code, seconds). 0 = store emptied."""
        run = self.simulate(config, 0, timeout=timeout)
        rc = run.wait(timeout + 30)
        return rc, round(time.monotonic() - run.started, 1)

    def status(self, config: Path) -> dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        res = subprocess.run([sys.executable, "-m", "agent", "status", "--config", str(config),
                              "--json"], capture_output=True, text=True, timeout=60, env=env)
        try:
            doc: dict[str, Any] = json.loads(res.stdout)
        except ValueError:
            return {"error": (res.stderr or res.stdout).strip()[-300:]}
        return doc

    def spawn(self, code: str, cwd: Path) -> subprocess.Popen[str]:
        """A helper Python process (e.g. a lock holder), killed at exit."""
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self._procs.append(proc)
        return proc

    def tmpfs(self, name: str, size: str) -> Path:
        mnt = self.dir / name
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       check=True, capture_output=True, timeout=30)
        self._mounts.append(mnt)
        return mnt


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
