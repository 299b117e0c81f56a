"""``tec-agent simulate --hubs N``: a fleet of real agents against one broker and the ingester.

N :class:`~agent.app.Agent` s run in this one process on one asyncio loop (the transport needs
no thread per connection; bench/agents_per_process.py holds 2,000), each with its own store
in a temporary directory and a MockFactory PIR and pull cord. The ingester runs as its own
process(es) (``tec-agent ingest``), so the figures per hub are the hubs' own.

Load per hub: PIR motion at random (Poisson, mean ``motion_every_s``, 60 s; the pin held
high ``PIR_HOLD_S`` as a PIR module does: one ``motion`` telemetry event per trigger that
is not inside a hold), the front door opened and closed at random (Poisson, mean
``door_every_s``, 10 min: two info events) and one pull-cord alarm at a uniformly random
moment of the run (far more alarms than a real home raises, so that the latency
percentiles rest on N samples). The motion rate is above the daily mean of each real home
in ``shared/data/ambient`` (PIR activations a day: Ordonez B 88, one per 977 s; CASAS 1,019,
one per 85 s; Kasteren B 494, one per 175 s; Kasteren A has no PIR), below their busiest
hours (one per 13 s in CASAS, one per 7 s in Kasteren B); the door rate is far above their
front doors (8-10 openings a day), so the info load errs high.

``accepted``: events other than telemetry the hubs committed to their stores (telemetry may
be coalesced or dropped under pressure by design; it is counted apart, ``telemetry``);
``ingested``: those found in the ingester's database once the hubs' outboxes are empty;
``lost`` = accepted - ingested (must be 0); ``duplicates``: copies the database recognised
and did not store again (the ingesters' counters). ``alarm_p50_ms``/``alarm_p99_ms``: hub
clock at the alarm's creation to the database's ``stored_at`` (one machine, one clock).
``rss_per_hub_mb``: this process's resident memory over N; ``cpu_s_per_hub``: this
process's CPU seconds (user + system) from the first agent's start to the end of the drain,
over N.

Faults for the measurements: ``restart_broker_at_s`` (a local broker with persistence is
stopped and started again), ``kill_ingester_at_s`` (the first of ``ingesters`` is killed
with SIGKILL and restarted 5 s later under the same client id, as a supervisor would).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import parse_config_text
from agent.model import Event, Priority

log = logging.getLogger(__name__)

RESULT_KEYS = ("hubs", "accepted", "ingested", "duplicates", "lost", "alarm_p50_ms",
               "alarm_p99_ms", "rss_per_hub_mb", "cpu_s_per_hub")
PIR_PIN, CORD_PIN, DOOR_PIN = 17, 27, 22
# A PIR module holds its output high for a few seconds after each trigger (HC-SR501:
# 2.5 s to minutes, set by a trimmer), and gpiozero's MotionSensor samples the pin (10 Hz
# here): a pulse that is high for microseconds was never seen (0 telemetry in issue 20's
# runs). A new trigger while held extends the hold, as on the module.
PIR_HOLD_S = 3.0


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    host: str
    port: int
    username: str
    password_file: str
    protocol: str = "5"     # "3.1.1" for a broker without MQTT 5 (RabbitMQ 3.10)


@dataclass
class FleetOptions:
    hubs: int
    minutes: float
    workdir: Path
    db_url: str
    ingesters: int = 1
    group: str = "tec-ingest"       # the ingesters' shared subscription group ('' for none)
    receipts: bool = True           # the ingesters send receipts (hubs: mqtt.receipts auto)
    remote: bool = True          # hubs with remote management on (subscriptions, sessions)
    plan: list[tuple[float, int, str]] | None = None   # a fixed load instead of the random one
    motion_every_s: float = 60.0
    door_every_s: float = 600.0
    restart_broker_at_s: float | None = None
    kill_ingester_at_s: float | None = None
    drain_timeout_s: float = 300.0
    seed: int = 1


@dataclass
class _Hub:
    agent: Any
    factory: Any
    accepted: set[str] = field(default_factory=set)
    telemetry: int = 0
    alarms: set[str] = field(default_factory=set)
    pir_until: float = 0.0       # monotonic end of the PIR's current hold (0: low)


def hub_config_text(i: int, root: Path, broker: BrokerAccess,
                    keys_dir: Path | None = None) -> str:
    """One hub's config; with ``keys_dir``, remote management on (the hub subscribes to its
    config and command topics, so it has a persistent session on the broker, and asks for
    its desired config on every connect), as a service's hubs run."""
    remote = (f'[remote]\nenabled = true\nkeys_dir = "{keys_dir}"\n'
              f'config_path = "{root / f"h{i}" / "pushed.toml"}"\n') if keys_dir else ""
    return (f'hub_id = "sim-{i:05d}"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'protocol = "{broker.protocol}"\n'
            f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n'
            f'[store]\npath = "{root / f"h{i}" / "events.db"}"\n'
            '[agent]\nassume_clock_synced = true\nshutdown_timeout_s = 2.0\n'
            '[gpio]\npin_factory = "mock"\n'
            f'[[gpio.devices]]\nid = "pir"\nkind = "pir"\npin = {PIR_PIN}\nbounce_s = 0.0\n'
            f'[[gpio.devices]]\nid = "cord"\nkind = "pull_cord"\npin = {CORD_PIN}\n'
            'bounce_s = 0.0\n'
            f'[[gpio.devices]]\nid = "front-door"\nkind = "door"\npin = {DOOR_PIN}\n'
            'bounce_s = 0.0\n' + remote)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


TELEMETRY_WAIT_S = 15.0     # drain: how long telemetry may trail the other events


def _receipt_lags(hubs: Sequence[_Hub]) -> dict[str, float | None]:
    lags = [x * 1000.0 for h in hubs if h.agent.uplink for x in h.agent.uplink.receipt_lags_s]
    p50, p99 = _percentile(lags, 0.50), _percentile(lags, 0.99)
    return {"receipt_lag_ms_p50": None if p50 is None else round(p50, 1),
            "receipt_lag_ms_p99": None if p99 is None else round(p99, 1),
            "receipt_lag_ms_max": round(max(lags), 1) if lags else None}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


class Ingesters:
    """``tec-agent ingest`` processes of one group, each with its own client id."""

    def __init__(self, broker: BrokerAccess, db_url: str, count: int, logdir: Path,
                 group: str = "tec-ingest", receipts: bool = True) -> None:
        self.broker, self.db_url, self.logdir, self.group = broker, db_url, logdir, group
        self.receipts = receipts
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.stats: list[dict[str, int]] = []

    def _log(self, n: int) -> Path:
        return self.logdir / f"ingest-{n}.log"

    def start(self, n: int, timeout: float = 30.0) -> None:
        log_path = self._log(n)
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as err:
            self.procs[n] = subprocess.Popen(
                [sys.executable, "-m", "agent", "ingest", "--broker",
                 f"mqtt://{self.broker.username}@{self.broker.host}:{self.broker.port}",
                 "--password-file", self.broker.password_file, "--db", self.db_url,
                 "--client-id", f"tec-sim-ingest-{n}", "--log-level", "INFO",
                 "--protocol", self.broker.protocol, "--group", self.group,
                 *([] if self.receipts else ["--no-receipts"])],
                stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs[n]
            assert proc is not None
            if proc.poll() is not None:
                raise RuntimeError(f"ingester {n} exited: "
                                   f"{log_path.read_bytes()[offset:].decode(errors='replace')}")
            if self._subscribed(n, offset):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ingester {n} did not subscribe within {timeout:g} s")
            time.sleep(0.1)

    def _subscribed(self, n: int, offset: int) -> bool:
        # The ingest CLI logs "ingesting ..." (INFO) once its subscriptions are granted.
        return b"ingesting" in self._log(n).read_bytes()[offset:]

    def start_all(self) -> None:
        for n in range(len(self.procs)):
            self.start(n)

    def kill(self, n: int) -> None:
        proc = self.procs[n]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
            self.procs[n] = None

    def stop_all(self) -> None:
        import json

        for n, proc in enumerate(self.procs):
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
            if lines:
                try:
                    self.stats.append(json.loads(lines[-1]))
                except ValueError:
                    log.warning("ingester %d printed no counters: %s", n, lines[-1][:200])
            self.procs[n] = None


def plan_load(hubs: int, opts: FleetOptions) -> list[tuple[float, int, str]]:
    """(seconds into the load, hub index, "motion" | "door" | "alarm"), in time order."""
    if opts.plan is not None:
        return sorted(opts.plan)
    rng = random.Random(opts.seed)
    duration = opts.minutes * 60.0
    plan: list[tuple[float, int, str]] = []
    for i in range(hubs):
        for what, every in (("motion", opts.motion_every_s), ("door", opts.door_every_s)):
            t = rng.expovariate(1.0 / every)
            while t < duration:
                plan.append((t, i, what))
                t += rng.expovariate(1.0 / every)
        plan.append((rng.uniform(0.05, 0.9) * duration, i, "alarm"))
    plan.sort()
    return plan


async def _drive(hubs: list[_Hub], opts: FleetOptions, pins: concurrent.futures.Executor,
                 faults: list[tuple[float, Callable[[], None]]]) -> None:
    """The planned load for ``opts.minutes``, faults at their time; returns once every
    pulse has been driven (they run on ``pins``, a thread, behind the plan's clock)."""
    loop = asyncio.get_running_loop()
    duration = opts.minutes * 60.0
    start = time.monotonic()
    plan = plan_load(len(hubs), opts)
    plan += [(at, -1, f"fault{k}") for k, (at, _) in enumerate(faults)]
    plan.sort()

    holds: list[asyncio.TimerHandle] = []
    # A fault runs beside the load, never in its way: awaiting it here paused every hub's
    # events for as long as it took (a killed ingester's 5 s, a broker's restart), so no
    # event was ever raised while the ingester was away, and faults planned close together
    # ran one after the other instead of overlapping.
    running: list[asyncio.Future[None]] = []

    def pir_release(h: _Hub) -> None:
        if h.pir_until and time.monotonic() >= h.pir_until:
            h.pir_until = 0.0
            loop.run_in_executor(pins, h.factory.pin(PIR_PIN).drive_low)

    def pulse(factory: Any, pin: int, active_low: bool) -> None:
        p = factory.pin(pin)
        if active_low:
            p.drive_low()
            p.drive_high()
        else:
            p.drive_high()
            p.drive_low()

    for at, i, what in plan:
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if what.startswith("fault"):
            running.append(loop.run_in_executor(None, faults[int(what[5:])][1]))
            continue
        h = hubs[i]
        if what == "motion":
            if not h.pir_until:
                loop.run_in_executor(pins, h.factory.pin(PIR_PIN).drive_high)
            h.pir_until = time.monotonic() + PIR_HOLD_S
            holds.append(loop.call_later(PIR_HOLD_S, pir_release, h))
        elif what == "door":
            loop.run_in_executor(pins, pulse, h.factory, DOOR_PIN, False)
        else:
            loop.run_in_executor(pins, pulse, h.factory, CORD_PIN, True)
    left = start + duration - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)
    for handle in holds:        # PIRs still held stay high: nothing more to report
        handle.cancel()
    await asyncio.gather(*running)   # a fault still running (a slow restart) ends first
    # The pin thread may run behind (a loaded machine, a fault): the load is over when its
    # last pulse is. Counting before that left late events out of ``accepted`` although
    # they were stored and ingested (3 in the 1,000-hub broker-restart run).
    await loop.run_in_executor(pins, lambda: None)


def _faults(opts: FleetOptions, ingesters: Ingesters,
            restart_broker: Callable[[], None] | None) -> list[tuple[float, Callable[[], None]]]:
    """The faults asked for, as (seconds into the load, action)."""
    faults: list[tuple[float, Callable[[], None]]] = []
    if opts.restart_broker_at_s is not None and restart_broker is not None:
        faults.append((opts.restart_broker_at_s, restart_broker))
    if opts.kill_ingester_at_s is not None:
        def kill_and_restart() -> None:
            ingesters.kill(0)
            time.sleep(5.0)
            ingesters.start(0)
        faults.append((opts.kill_ingester_at_s, kill_and_restart))
    return faults


def _alarm_latencies_ms(hubs: list[_Hub],
                        rows: dict[tuple[str, str], tuple[str, str, float]]) -> list[float]:
    """Hub clock at an alarm's creation to the database's ``stored_at``, per stored alarm."""
    latencies = []
    for h in hubs:
        for eid in h.alarms:
            row = rows.get((h.agent.hub_id, eid))
            if row is not None:
                created = datetime.fromisoformat(row[1].replace("Z", "+00:00")).timestamp()
                latencies.append((row[2] - created) * 1000.0)
    return latencies


async def run_fleet(opts: FleetOptions, broker: BrokerAccess,
                    restart_broker: Callable[[], None] | None = None,
                    ingest_broker: BrokerAccess | None = None) -> dict[str, Any]:
    """Run the fleet; the ingesters connect to ``ingest_broker`` (default ``broker``: on a
    cluster, another node than the hubs')."""
    from gpiozero.pins.mock import MockFactory

    from agent.app import Agent, Hardware
    from agent.ingest.db import open_db

    root = opts.workdir
    root.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    ingesters = Ingesters(ingest_broker or broker, opts.db_url, opts.ingesters, root,
                          opts.group, opts.receipts)
    ingesters.start_all()
    keys_dir = None
    if opts.remote:
        from agent.remote.keys import generate_keypair

        keys_dir = root / "remote-keys"
        generate_keypair("fleet-support", keys_dir)
    hubs: list[_Hub] = []
    cpu0 = _cpu_s()
    t0 = time.monotonic()
    pins = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fleet-pins")
    try:
        for i in range(opts.hubs):
            (root / f"h{i}").mkdir(parents=True, exist_ok=True)
            cfg = parse_config_text(hub_config_text(i, root, broker, keys_dir), f"hub {i}")
            factory = MockFactory()
            agent = Agent(cfg, hardware=Hardware(pin_factory=factory))
            hub = _Hub(agent, factory)

            def note(ev: Event, hub: _Hub = hub) -> None:
                if ev.priority == Priority.TELEMETRY:
                    hub.telemetry += 1
                else:
                    hub.accepted.add(ev.id)
                    if ev.priority == Priority.ALARM:
                        hub.alarms.add(ev.id)

            agent.subscribe_events(note)
            await agent.start()
            # The door's contact is pulled up (open) until driven: close it, so that each
            # pulse is an opening and a closing (two events; the first was only a closing).
            await loop.run_in_executor(pins, factory.pin(DOOR_PIN).drive_low)
            hubs.append(hub)
        started = time.monotonic()
        log.info("%d hubs started in %.1f s", len(hubs), started - t0)
        faults = _faults(opts, ingesters, restart_broker)
        load_cpu0, load_t0 = _cpu_s(), time.monotonic()
        await _drive(hubs, opts, pins, faults)
        load_cpu, load_s = _cpu_s() - load_cpu0, time.monotonic() - load_t0
        # Drain: every hub's outbox empty (all acknowledged by the broker) ...
        deadline = time.monotonic() + opts.drain_timeout_s
        await asyncio.sleep(0)      # the last pulses' readings reach the agents' intake
        # Telemetry waits up to telemetry_commit_s in a hub's intake (group commit) before
        # it is stored and counts in the backlog: without this wait the last readings were
        # counted by the event hook after the database had been read (1 of 104 telemetry
        # readings in a 100-hub minute, 3-10 in the 1,000-hub runs), not lost.
        await asyncio.sleep(max(h.agent.config.store.telemetry_commit_s for h in hubs) + 0.5
                            if hubs else 0)
        while any(h.agent.state.backlog for h in hubs) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        undrained = sum(1 for h in hubs if h.agent.state.backlog)
        # ... and every accepted event in the database (accepted read again each round:
        # an event stored meanwhile is counted, never found in the database unaccounted).
        reader = open_db(opts.db_url)
        try:
            rows: dict[tuple[str, str], tuple[str, str, float]] = {}
            all_in_since: float | None = None
            while True:
                accepted = {(h.agent.hub_id, eid) for h in hubs for eid in h.accepted}
                rows = {(r[0], r[1]): (r[2], r[3], r[4]) for r in reader.event_rows("sim-")}
                # Telemetry too, for a while: it may be evicted under storage pressure, and
                # without receipts (--no-receipts) a broker may have dropped some.
                tele = sum(h.telemetry - h.agent.store.evicted[Priority.TELEMETRY.label]
                           for h in hubs)
                tele_in = sum(1 for r in rows.values() if r[0] == "telemetry")
                now = time.monotonic()
                if accepted <= rows.keys():
                    all_in_since = now if all_in_since is None else all_in_since
                    if tele_in >= tele or now - all_in_since > TELEMETRY_WAIT_S:
                        break
                if now > deadline:
                    break
                await asyncio.sleep(1.0)
        finally:
            reader.close()
        cpu = _cpu_s() - cpu0
        rss = _rss_mb()
        elapsed = time.monotonic() - t0
    finally:
        for h in reversed(hubs):
            try:
                await asyncio.wait_for(h.agent.stop(), 10)
            except Exception:
                log.exception("hub %s did not stop cleanly", h.agent.hub_id)
        pins.shutdown(wait=True)
        ingesters.stop_all()
    found = accepted & rows.keys()
    latencies = _alarm_latencies_ms(hubs, rows)
    p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
    n = max(1, len(hubs))
    result = {
        "hubs": len(hubs), "accepted": len(accepted), "ingested": len(found),
        "duplicates": sum(s.get("duplicates", 0) for s in ingesters.stats),
        "lost": len(accepted) - len(found),
        "alarm_p50_ms": None if p50 is None else round(p50, 1),
        "alarm_p99_ms": None if p99 is None else round(p99, 1),
        "rss_per_hub_mb": round(rss / n, 3), "cpu_s_per_hub": round(cpu / n, 4),
    }
    # Stored by the ingester but never heard of by the hubs' event hook: must be 0.
    unaccounted = [k for k, r in rows.items() if r[0] != "telemetry" and k not in accepted]
    extra = {"alarms": len(latencies), "telemetry": sum(h.telemetry for h in hubs),
             "telemetry_ingested": sum(1 for r in rows.values() if r[0] == "telemetry"),
             "stored_not_accepted": len(unaccounted),
             # Events the hubs sent again for want of the ingester's receipt (a broker
             # acknowledged them and may have dropped them), and those receipts confirmed.
             "resent": sum(h.agent.uplink.resent for h in hubs if h.agent.uplink),
             "receipted": sum(h.agent.uplink.receipted for h in hubs if h.agent.uplink),
             # PUBACK to receipt, ms (each hub's latest 512): what receipt_timeout_s faces.
             **_receipt_lags(hubs),
             "elapsed_s": round(elapsed, 1),
             "start_s": round(started - t0, 1), "undrained_hubs": undrained,
             "load_s": round(load_s, 1), "load_cpu_s": round(load_cpu, 2),
             "hubs_per_core": round(len(hubs) * load_s / load_cpu, 1) if load_cpu else None,
             "rss_mb": round(rss, 1), "ingester_stats": ingesters.stats}
    return {"result": result, "extra": extra}
