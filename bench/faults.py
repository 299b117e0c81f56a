"""Fault campaign: the real agent (``python -m agent simulate``) against a real mosquitto on
loopback, under the faults a Pi meets in a home (issue 16).

Per fault, one JSON line: ``fault``, ``runs``, ``accepted`` (events the agent printed as
durably stored), ``received`` (distinct event ids the broker delivered to a subscriber
started before the agent), ``lost`` (accepted, never received after a final drain run),
``duplicates`` (copies received beyond the first, by id), ``notes`` (what else the fault
measures). A markdown table of all of them at the end.

    python bench/faults.py --fault kill9 --runs 100
    python bench/faults.py --fault all          # every fault, default sizes
    python bench/faults.py --quick              # every fault, small and short

Needs root for ``full_disk`` (tmpfs mount). Every loop has a deadline; brokers, agents,
mounts and temporary files are cleaned up on exit, Ctrl-C and SIGTERM (``--keep`` keeps
the work directory, with ``agent.log``, for a post-mortem).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_rig import AgentRun, Rig, Subscriber, wait_for

Result = dict[str, Any]
FIELDS = ("fault", "runs", "accepted", "received", "lost", "duplicates")


def result(fault: str, runs: int, accepted: set[str], sub: Subscriber,
           notes: dict[str, Any]) -> Result:
    got = sub.received()
    lost = accepted - got
    if sub.garbled:
        notes["garbled_messages"] = sub.garbled
    if lost:
        notes["lost_by_priority"] = _by_priority(lost, notes.pop("_docs", {}))
    notes.pop("_docs", None)
    return {"fault": fault, "runs": runs, "accepted": len(accepted), "received": len(got),
            "lost": len(lost), "duplicates": sub.duplicates(), "notes": notes}


def _by_priority(ids: set[str], docs: dict[str, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in ids:
        p = docs.get(i, {}).get("priority", "?")
        out[p] = out.get(p, 0) + 1
    return out


def _docs(runs: list[AgentRun]) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for r in runs for d in r.accepted}


def _ids(runs: list[AgentRun]) -> set[str]:
    return {i for r in runs for i in r.ids()}


def _corrupt_files(store: Path) -> list[str]:
    return sorted(p.name for p in store.parent.glob(store.name + ".corrupt-*"))


def _store_reset(sub: Subscriber) -> bool:
    return any(d.get("type") == "store_reset" for d in list(sub.docs.values()))


# -- faults -------------------------------------------------------------------------------------

def kill9(rig: Rig, opts: argparse.Namespace) -> Result:
    """A stream (alarms, warnings, telemetry) into one store; kill -9 at random moments,
    restart on the same store; a final clean run drains. lost must be 0."""
    rng = random.Random(opts.seed)
    broker = rig.broker()
    sub = rig.subscriber(broker)
    store = rig.dir / "store" / "events.db"
    cfg = rig.config(broker, store)
    runs: list[AgentRun] = []
    at_start = early_exits = 0
    for _ in range(opts.runs):
        run = rig.simulate(cfg, count=opts.rate * 60, rate=opts.rate, timeout=90)
        runs.append(run)
        if rng.random() < 0.25:                 # while starting: opening, recovering the store
            wait_for(lambda r=run: r.proc.poll() is not None, rng.uniform(0.05, 1.5))
            at_start += 1
        else:                                   # mid-stream, after the first stored event
            run.wait_accepted(1, 30)
            wait_for(lambda r=run: r.proc.poll() is not None, rng.uniform(0.0, 2.0))
        if run.proc.poll() is not None:
            early_exits += 1
        run.kill9()
        run.wait(10)
    accepted = _ids(runs)
    rc, drain_s = rig.drain(cfg)
    sub.wait_ids(accepted, 30)
    return result("kill9", opts.runs, accepted, sub, {
        "kills_while_starting": at_start, "exited_before_kill": early_exits,
        "cut_lines": sum(r.partial_lines for r in runs), "drain_rc": rc, "drain_s": drain_s,
        "_docs": _docs(runs)})


def broker_down(rig: Rig, opts: argparse.Namespace) -> Result:
    """The broker stops mid-stream for ``--outage`` seconds and comes back (same port, its
    persistence kept). Shipped reconnect settings. Measures how long after the broker is
    back the first alarm stored during the outage arrives, and the last one."""
    broker = rig.broker()
    sub = rig.subscriber(broker)
    store = rig.dir / "store" / "events.db"
    cfg = rig.config(broker, store, fast_reconnect=False)
    pre_s, post_s = 5.0, 10.0
    rate = max(10, opts.rate // 4)
    count = int(rate * (pre_s + opts.outage + post_s))
    run = rig.simulate(cfg, count=count, rate=rate, timeout=opts.outage + pre_s + post_s + 180)
    run.wait_accepted(1, 30)
    time.sleep(pre_s)
    broker.stop()
    t_down = time.monotonic()
    time.sleep(opts.outage)
    broker.start()
    t_up = time.monotonic()
    rc = run.wait(opts.outage + post_s + 240)
    during = [d for d in run.accepted if t_down <= d["_t"] <= t_up]
    alarms = [d["id"] for d in during if d.get("priority") == "alarm"]
    sub.wait_ids(run.ids(), 30)
    arrivals = [sub.first[i] for i in alarms if i in sub.first]
    drain_rc, _ = rig.drain(cfg)
    sub.wait_ids(run.ids(), 30)
    return result("broker_down", 1, run.ids(), sub, {
        "outage_s": round(t_up - t_down, 1), "stored_during_outage": len(during),
        "alarms_during_outage": len(alarms),
        "first_alarm_after_return_s": round(min(arrivals) - t_up, 1) if arrivals else None,
        "last_alarm_after_return_s": round(max(arrivals) - t_up, 1) if arrivals else None,
        "stream_rc": rc, "drain_rc": drain_rc, "_docs": _docs([run])})


def full_disk(rig: Rig, opts: argparse.Namespace) -> Result:
    """The store on a 4 MB tmpfs; once the stream flows, the rest of it is filled by a
    file for ``--full-s`` seconds, then the file is deleted and the stream goes on.
    Counts alarms emitted / stored / received, and whether the agent recovers."""
    broker = rig.broker()
    sub = rig.subscriber(broker)
    disk = rig.tmpfs("disk", "4m")
    store = disk / "events.db"
    cfg = rig.config(broker, store)
    rate = opts.rate
    count = int(rate * 2 * opts.full_s)
    run = rig.simulate(cfg, count=count, rate=rate, timeout=2 * opts.full_s + 120)
    run.wait_accepted(1, 30)                    # the store is open, the stream flowing
    filler = disk / "filler"                    # now the rest of the card fills up
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096):             # big steps, then to the last page
            try:
                for _ in range(4096):           # at most 256 MB: a bound, never reached
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    free_after_fill = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    t0 = time.monotonic()
    time.sleep(opts.full_s)
    filler.unlink()
    t_freed = time.monotonic()
    rc = run.wait(opts.full_s + 240)
    drain_rc, _ = rig.drain(cfg, timeout=60)
    sub.wait_ids(run.ids(), 30)
    n_freed = int((t_freed - t0) * rate)        # the stream's position when space came back
    emitted = set(range(0, count, 10))
    stored = {d["data"]["n"] for d in run.accepted if d.get("type") == "pull_cord"}
    got = {d["data"]["n"] for d in list(sub.docs.values()) if d.get("type") == "pull_cord"}
    after = [d for d in run.accepted if d["_t"] > t_freed + 2]
    return result("full_disk", 1, run.ids(), sub, {
        "free_after_fill_kb": free_after_fill // 1024,
        "alarms_emitted": len(emitted), "alarms_stored": len(stored),
        "alarms_received": len(got & emitted),
        "alarms_never_received_while_full": len({n for n in emitted - got if n < n_freed}),
        "alarms_never_received_after_free": len({n for n in emitted - got if n >= n_freed}),
        "alarms_received_not_stored": len((got & emitted) - stored),
        "stored_after_free": len(after), "stream_rc": rc, "stream_said": run.last_words,
        "drain_rc": drain_rc,
        "recovered": bool(after) and drain_rc == 0, "_docs": _docs([run])})


def _pending_store(rig: Rig, n: int, kill_at: int | None = None
                   ) -> tuple[Any, Subscriber, Path, Path, AgentRun]:
    """A store holding ``n`` undelivered events (broker down while they are stored), agent
    stopped cleanly, or killed -9 after ``kill_at`` stored events. Broker back up after."""
    broker = rig.broker()
    store = rig.dir / "store" / "events.db"
    cfg = rig.config(broker, store)
    broker.stop()
    run = rig.simulate(cfg, count=n, rate=max(n / 2, 200), timeout=8 if kill_at is None else 60)
    if kill_at is not None:
        run.wait_accepted(kill_at, 60)
        run.kill9()
    run.wait(120)
    broker.start()
    sub = rig.subscriber(broker)
    return broker, sub, store, cfg, run


def _after_reset(rig: Rig, fault: str, sub: Subscriber, store: Path, cfg: Path,
                 before: AgentRun, notes: dict[str, Any]) -> Result:
    """Start on the damaged store (a drain), then a short stream: what arrived, was a reset
    reported, did seq go backwards."""
    rc, drain_s = rig.drain(cfg, timeout=60)
    after = rig.simulate(cfg, count=20, rate=100, timeout=60)
    after_rc = after.wait(120)
    rig.drain(cfg, timeout=60)          # telemetry committed at that run's stop is still pending
    pending = before.ids()
    sub.wait_ids(pending | after.ids(), 15)
    old_max = max((d["seq"] for d in before.accepted), default=0)
    new_min = min((d["seq"] for d in after.accepted), default=None)
    notes.update({
        "pending_before": len(pending), "pending_received": len(pending & sub.received()),
        "store_reset_event": _store_reset(sub), "moved_aside": _corrupt_files(store),
        "seq_went_backwards": new_min is not None and new_min <= old_max,
        "drain_rc": rc, "drain_s": drain_s, "stream_after_rc": after_rc})
    notes["_docs"] = _docs([before, after])
    return result(fault, 1, pending | after.ids(), sub, notes)


def corrupt(rig: Rig, opts: argparse.Namespace) -> Result:
    """4 KB of random bytes written into the middle of a store holding ~3,000 pending
    events (agent stopped); how many of them still reach the broker."""
    _, sub, store, cfg, before = _pending_store(rig, opts.pending)
    status = rig.status(cfg)
    size = store.stat().st_size
    with store.open("r+b") as f:
        f.seek(size // 2)
        f.write(random.Random(opts.seed).randbytes(4096))
    return _after_reset(rig, "corrupt", sub, store, cfg, before, {
        "pending_in_status": status.get("pending_total"), "db_bytes": size})


def zero_length(rig: Rig, opts: argparse.Namespace) -> Result:
    """The database truncated to 0 bytes (agent stopped; no WAL left by the clean stop)."""
    _, sub, store, cfg, before = _pending_store(rig, opts.pending // 6)
    for suffix in ("-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    os.truncate(store, 0)
    return _after_reset(rig, "zero_length", sub, store, cfg, before, {})


def _wal_fault(rig: Rig, opts: argparse.Namespace, fault: str, damage: bool) -> Result:
    _, sub, store, cfg, before = _pending_store(rig, opts.pending * 2, kill_at=opts.pending)
    wal = Path(str(store) + "-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    if damage and wal_bytes:
        with wal.open("r+b") as f:
            f.seek(wal_bytes // 2)
            f.write(random.Random(opts.seed).randbytes(4096))
    else:
        wal.unlink(missing_ok=True)
        Path(str(store) + "-shm").unlink(missing_ok=True)
    return _after_reset(rig, fault, sub, store, cfg, before, {"wal_bytes": wal_bytes})


def wal_loss(rig: Rig, opts: argparse.Namespace) -> Result:
    """kill -9 mid-stream (commits still in the WAL), then the -wal file deleted."""
    return _wal_fault(rig, opts, "wal_loss", damage=False)


def wal_damage(rig: Rig, opts: argparse.Namespace) -> Result:
    """kill -9 mid-stream, then 4 KB of random bytes in the middle of the -wal file."""
    return _wal_fault(rig, opts, "wal_damage", damage=True)


_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1] if len(sys.argv) > 1 else {path!r}, isolation_level=None)
if {readers_too}:
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
db.execute("CREATE TABLE IF NOT EXISTS locker_probe(x)")
print("locked", flush=True)
time.sleep({hold})
db.execute("ROLLBACK")
"""


def _lock(rig: Rig, opts: argparse.Namespace, fault: str, readers_too: bool) -> Result:
    """Another process holds an EXCLUSIVE transaction on a healthy store (with pending
    events) for ``--hold`` seconds while the agent starts. The store must not be moved aside."""
    _, sub, store, cfg, before = _pending_store(rig, 300)
    locker = rig.spawn(_LOCKER.format(path=str(store), readers_too=readers_too,
                                      hold=opts.hold), rig.dir)
    assert locker.stdout is not None
    if locker.stdout.readline().strip() != "locked":
        raise RuntimeError("the lock holder could not lock the store")
    t_lock = time.monotonic()
    run = rig.simulate(cfg, count=100, rate=20, timeout=opts.hold + 60)
    rc = run.wait(opts.hold + 120)
    locker.wait(opts.hold + 30)
    first = min((d["_t"] for d in run.accepted), default=None)
    drain_rc, _ = rig.drain(cfg, timeout=60)
    accepted = before.ids() | run.ids()
    sub.wait_ids(accepted, 15)
    return result(fault, 1, accepted, sub, {
        "hold_s": opts.hold, "moved_aside": _corrupt_files(store), "run_rc": rc,
        "run_said": run.last_words,
        "first_stored_after_lock_s": round(first - t_lock, 1) if first else None,
        "stored_while_or_after_lock": len(run.accepted),
        "pending_before": len(before.ids()),
        "pending_received": len(before.ids() & sub.received()), "drain_rc": drain_rc,
        "_docs": _docs([before, run])})


def lock(rig: Rig, opts: argparse.Namespace) -> Result:
    return _lock(rig, opts, "lock", readers_too=False)


def lock_readers(rig: Rig, opts: argparse.Namespace) -> Result:
    """As ``lock``, the holder in ``locking_mode=EXCLUSIVE`` (shuts out readers too)."""
    return _lock(rig, opts, "lock_readers", readers_too=True)


FAULTS: dict[str, Callable[[Rig, argparse.Namespace], Result]] = {
    "kill9": kill9, "broker_down": broker_down, "full_disk": full_disk, "corrupt": corrupt,
    "zero_length": zero_length, "wal_loss": wal_loss, "wal_damage": wal_damage,
    "lock": lock, "lock_readers": lock_readers,
}


def table(results: list[Result]) -> str:
    lines = ["| fault | runs | accepted | received | lost | duplicates | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        notes = ", ".join(f"{k}={v}" for k, v in r["notes"].items())
        lines.append("| " + " | ".join(str(r[k]) for k in FIELDS) + f" | {notes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fault", action="append", choices=[*FAULTS, "all"],
                   help="fault to run (repeatable; 'all' for every one)")
    p.add_argument("--runs", type=int, default=10, help="kill9: number of kills (default 10)")
    p.add_argument("--rate", type=int, default=200, help="events per second (default 200)")
    p.add_argument("--outage", type=float, default=75.0, help="broker_down: seconds (75)")
    p.add_argument("--full-s", type=float, default=15.0,
                   help="full_disk: seconds full, then as long freed (15)")
    p.add_argument("--pending", type=int, default=3000,
                   help="corrupt: pending events in the store (3000)")
    p.add_argument("--hold", type=float, default=20.0, help="lock: seconds held (20)")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--quick", action="store_true",
                   help="every fault, small: 5 kills, 20 s outage, 8 s full, 1000 pending")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.runs, opts.outage, opts.full_s, opts.pending, opts.hold = 5, 20.0, 8.0, 1000, 12.0
    names = opts.fault if opts.fault and "all" not in opts.fault else list(FAULTS)
    results: list[Result] = []
    try:
        for name in names:
            if name == "full_disk" and os.geteuid() != 0:
                print(f"# {name}: skipped (needs root for the tmpfs mount)", file=sys.stderr)
                continue
            t0 = time.monotonic()
            with Rig(keep=opts.keep) as rig:
                try:
                    res = FAULTS[name](rig, opts)
                except (RuntimeError, OSError, sqlite3.Error) as exc:
                    res = {"fault": name, "runs": 0, "accepted": 0, "received": 0, "lost": 0,
                           "duplicates": 0, "notes": {"error": str(exc)}}
                if opts.keep:
                    res["notes"]["workdir"] = str(rig.dir)
            res["notes"]["seconds"] = round(time.monotonic() - t0)
            print(json.dumps(res), flush=True)
            results.append(res)
    except KeyboardInterrupt:
        print("# interrupted: everything started was cleaned up", file=sys.stderr)
    if results:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
