"""Core commands: run, check-config, status, simulate."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from agent.config import Config, load_config, parse_config_text
from agent.errors import AgentError, ConfigError, StoreError
from agent.model import Event

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the agent (what systemd starts)")
    p.add_argument("--config", required=True, help="path to the TOML config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 if invalid",
                       description="Validate a config file: exit 0 and a summary (and any "
                                   "warnings) if it is valid, exit 2 and one line per "
                                   "problem, each naming its key path, if not.")
    p.add_argument("--config", dest="config_opt", metavar="PATH", help="the TOML config")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="the same, as a positional argument (older form, still accepted)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("status", help="backlog of the local store and what waits for"
                                      " the ARC (no broker needed)")
    p.add_argument("--config", help="TOML config (default: the embedded simulated home, as "
                                    "for simulate: store in ./.tec-agent/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("simulate", help="run the real agent on simulated hardware")
    p.add_argument("--config", help="TOML config (default: the embedded simulated home; a "
                                    "config with no [[gpio.devices]] gets the simulated "
                                    "home's, one with no [[serial.units]] a simulated "
                                    "telecare unit)")
    p.add_argument("--scenario", default="demo", help="demo | pull-cord | soak (default demo)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--count", type=int, help="soak: number of events (default 1000; 0 only drains "
                                                 "the store)")
    p.add_argument("--rate", type=float, help="soak: events per second (default 200)")
    p.add_argument("--local-broker", action="store_true",
                   help="start a private mosquitto on a free loopback port and use it")
    p.add_argument("--watch", action="store_true",
                   help="also show (on stderr) each event as the broker delivers it")
    p.add_argument("--hubs", type=int, metavar="N",
                   help="fleet: N real agents (MockFactory PIR and pull cord, own stores in a "
                        "temp dir) in this process against one broker and 'tec-agent ingest'; "
                        "the last stdout line is one JSON object (hubs, accepted, ingested, "
                        "duplicates, lost, alarm_p50_ms, alarm_p99_ms, rss_per_hub_mb, "
                        "cpu_s_per_hub); exit 1 if any accepted event is lost")
    p.add_argument("--minutes", type=float, default=1.0,
                   help="fleet: how long the hubs make events (default 1)")
    p.add_argument("--db", help="fleet: the ingester's database (default: SQLite in the "
                                "temp dir; postgresql://... for PostgreSQL)")
    p.add_argument("--ingesters", type=int, default=1,
                   help="fleet: ingester processes in one group (default 1)")
    p.add_argument("--restart-broker-at", type=float, metavar="S",
                   help="fleet, with --local-broker: restart the broker S seconds into the run")
    p.add_argument("--kill-ingester-at", type=float, metavar="S",
                   help="fleet: kill -9 the first ingester S seconds into the run, restart it "
                        "5 s later")
    p.add_argument("--broker", metavar="URL",
                   help="fleet: a broker of your own, mqtt://user@host:port on a loopback "
                        "address (plaintext only: a cluster through a local balancer or an SSH "
                        "tunnel), instead of --local-broker or --config's [mqtt]; needs "
                        "--password-file")
    p.add_argument("--password-file", help="fleet, with --broker: first line is the password")
    p.add_argument("--protocol", choices=("5", "3.1.1"),
                   help="fleet: MQTT version of the hubs and the ingesters (default 5, or "
                        "--config's mqtt.protocol; 3.1.1 for RabbitMQ 3.10)")
    p.add_argument("--ingest-broker", metavar="URL",
                   help="fleet: where the ingesters connect (default: the hubs' broker; on a "
                        "cluster, e.g. another node); same password file")
    p.add_argument("--group", default="tec-ingest",
                   help="fleet: the ingesters' shared subscription group (default tec-ingest; "
                        "'' subscribes without sharing, one ingester: RabbitMQ)")
    p.add_argument("--no-receipts", dest="receipts", action="store_false",
                   help="fleet: the ingesters send no receipts (ingest --no-receipts), so a "
                        "hub's event is final on the broker's PUBACK (to measure what "
                        "receipts save)")
    p.set_defaults(func=cmd_simulate)


def no_store_hint(store_path: str, config_path: str) -> str:
    """What to say after 'no event store at ...' for a hub's config: on a fresh install the
    store does not exist until the agent's first start."""
    if Path(store_path).exists():
        return ""
    return (f" (the agent creates it at its first start: has it run with {config_path}? "
            "Its store.path names this file)")


def load_or_report(path: str) -> Config | None:
    """Load a config; on problems print one line each (key path first, array entries
    named by their id) and return None. ``ConfigError.problems`` keep the plain key path
    (``gpio.devices[1].pin``): remote results carry them to tools that parse it."""
    from agent.config.schema import name_entries

    try:
        return load_config(path)
    except ConfigError as exc:
        doc = _read_doc(path)
        for problem in exc.problems:
            problem = name_entries(problem, doc)  # gpio.devices[1] ('pir-hall').pin: ...
            print(f"{path}: {problem}" if not problem.startswith(path) else problem)
        return None


def _read_doc(path: str) -> dict[str, Any]:
    """The file as TOML (already known to load), for the warnings that need the raw keys."""
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def config_warnings_for(config: Config, path: str) -> list[str]:
    from agent.cli.startup_checks import config_warnings

    return config_warnings(config, _read_doc(path), str(Path(path).resolve()))


def _secrets(config: Config) -> list[str]:
    from agent.redaction import config_secrets

    return config_secrets(config)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.runtime import run_agent
    from agent.systemd_notify import setup_logging

    config = load_or_report(args.config)
    if config is None:
        return 2
    setup_logging(config.agent.log_level, _secrets(config))
    for warning in config_warnings_for(config, args.config):
        log.warning("%s: %s", args.config, warning)
    try:
        return asyncio.run(run_agent(config, config_file=str(Path(args.config).resolve())))
    except AgentError as exc:
        logging.getLogger("tec-agent").critical("%s", exc)
        return 1


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.config_opt and args.path and args.config_opt != args.path:
        print(f"error: two configs given ({args.path} and --config {args.config_opt}): "
              "give one", file=sys.stderr)
        return 2
    path = args.config_opt or args.path
    if not path:
        print("error: which config? tec-agent check-config --config PATH", file=sys.stderr)
        return 2
    args.path = path
    config = load_or_report(path)
    if config is None:
        return 2
    warnings = config_warnings_for(config, path)
    m = config.mqtt
    devices = config.device_ids()
    by_section: dict[str, int] = {}
    for section, _ in devices:
        key = section.split(".")[0]
        by_section[key] = by_section.get(key, 0) + 1
    print(f"{args.path}: OK")
    print(f"  hub_id:  {config.hub_id}")
    print(f"  broker:  {m.host}:{m.port} (MQTT {m.protocol},"
          f" TLS {'on' if m.tls_ca_file else 'off'},"
          f" auth {'on' if m.username else 'off'})")
    print(f"  store:   {config.store.path} (max {config.store.max_mb} MB)")
    print(f"  devices: {len(devices)}" + (
        " (" + ", ".join(f"{k} {v}" for k, v in sorted(by_section.items())) + ")"
        if devices else ""))
    if config.fall_detector_runs():
        from agent.fall.pair import models_summary

        print(f"  fall:    {models_summary(config.fall)}")
    if config.remote.enabled:
        target = config.remote.config_path or str(Path(path).resolve())
        print(f"  remote:  on (keys in {config.remote.keys_dir}; pushes written to {target})")
    if config.arc.enabled:
        arc = config.arc
        receivers = ", ".join(f"{r.protocol}://{r.host}:{r.port}"
                              + (" AES" if r.key_file else "") for r in arc.receivers)
        print(f"  arc:     account {arc.account}, {arc.format}, {receivers}"
              f" (supervision {arc.supervision_s} s)")
    for warning in warnings:
        print(f"{path}: warning: {warning}")
    return 0


def _config_or_simulated_home(path: str | None) -> Config | None:
    """The config at ``path`` (None after reporting its problems), or without a path the
    embedded simulated home (``status`` and ``simulate`` share this default)."""
    if path:
        return load_or_report(path)
    return parse_config_text(default_sim_config_text(), "embedded simulated home")


def cmd_status(args: argparse.Namespace) -> int:
    from agent.store.health import describe, store_health
    from agent.store.sqlite_store import read_backlog

    config = _config_or_simulated_home(args.config)
    if config is None:
        return 2
    try:
        backlog = read_backlog(config.store.path)
    except StoreError as exc:
        hint = no_store_hint(config.store.path, args.config) if args.config else (
            " (without --config, status reads the store of the embedded simulated home that "
            "`tec-agent simulate` writes in ./.tec-agent/; give --config PATH for a hub)")
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    now = time.time()
    doc: dict[str, Any] = {
        "hub_id": config.hub_id,
        "store": config.store.path,
        "pending_total": backlog.total,
        "pending": backlog.counts,
        "oldest_pending_age_s": {
            k: round(max(0.0, now - v), 1) for k, v in backlog.oldest_wall.items()
        },
        "store_health": store_health(config.store.path),
    }
    if config.arc.enabled:
        from agent.store.arc_delivery import read_arc_status

        doc["arc"] = read_arc_status(config.store.path)
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"hub {config.hub_id}: {backlog.total} events pending in {config.store.path}")
    print(f"  store: {describe(doc['store_health'])}")
    print(f"  {'priority':<10} {'pending':>8} {'oldest':>10}")
    for label, n in backlog.counts.items():
        age = doc["oldest_pending_age_s"].get(label)
        print(f"  {label:<10} {n:>8} {_age(age):>10}")
    arc = doc.get("arc")
    if arc is not None:
        line = f"  ARC: {arc['pending']} waiting for the ARC's acknowledgement"
        if arc["pending"]:
            line += (f" (oldest {_age(arc['oldest_pending_age_s'])},"
                     f" up to {arc['most_attempts']} attempts)")
        if arc["refused"]:
            line += f"; {arc['refused']} refused (DUH)"
        if arc["last_ack_age_s"] is not None:
            took = (f"in {arc['last_ack_latency_ms']} ms"
                    if arc["last_ack_latency_ms"] is not None
                    else "(sent again after a restart: latency unknown)")
            line += (f"; last ACK {_age(arc['last_ack_age_s'])} ago from"
                     f" {arc['last_ack_receiver']} {took}")
        print(line)
    elif config.arc.enabled:
        print("  ARC: nothing sent to the ARC from this store yet")
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def default_sim_config_text() -> str:
    return resources.files("agent.data").joinpath("simulated-home.toml").read_text()


def _fleet_access(url: str, password_file: str, protocol: str):
    """``--broker``/``--ingest-broker`` as the fleet's broker account (loopback or TLS)."""
    from agent.remote.client import is_loopback, parse_broker_url
    from agent.sim.fleet_sim import BrokerAccess

    b = parse_broker_url(url)
    if b.tls:
        raise ConfigError("--broker: the fleet simulator connects without TLS (mqtt://)")
    if not is_loopback(b.host):
        # Not check_transport's advice (mqtts://, refused just above): say what works here.
        raise ConfigError(
            f"--broker {url!r}: the fleet simulator speaks plaintext MQTT, so only to a broker "
            "on this machine (a loopback address; a remote cluster through an SSH tunnel or a "
            "local balancer, as bench/rabbit_cluster.py does)")
    if not b.username:
        raise ConfigError(f"--broker {url!r}: the URL needs the account (mqtt://user@host:port)")
    return BrokerAccess(b.host, b.port, b.username, password_file, protocol)


def _fleet_brokers(args: argparse.Namespace, root: Path):
    """(local broker or None, the hubs' broker account, the ingesters'): ``--local-broker``
    (started here), ``--broker``, or ``--config``'s ``[mqtt]``."""
    from agent.sim.fleet_sim import BrokerAccess
    from agent.sim.local_broker import LocalBroker

    broker: LocalBroker | None = None
    if args.broker:
        access = _fleet_access(args.broker, args.password_file, args.protocol or "5")
    elif args.local_broker:
        broker = LocalBroker(workdir=root / "broker",
                             persistence=args.restart_broker_at is not None)
        access = BrokerAccess(broker.host, broker.port, broker.username,
                              str(broker.password_file), args.protocol or "5")
    else:
        config = _config_or_simulated_home(args.config)
        if config is None:
            raise ConfigError("--config: see above")
        m = config.mqtt
        if not m.username or not m.password_file:
            raise ConfigError("the fleet needs a broker account: --local-broker, --broker, or "
                              "--config with mqtt.username and mqtt.password_file")
        access = BrokerAccess(m.host, m.port, m.username, m.password_file,
                              args.protocol or m.protocol)
    ingest_access = access
    if args.ingest_broker:
        ingest_access = _fleet_access(args.ingest_broker, access.password_file, access.protocol)
    if broker is not None:
        broker.start()
    return broker, access, ingest_access


def cmd_simulate_fleet(args: argparse.Namespace) -> int:
    import tempfile

    from agent.runtime import print_json_line
    from agent.sim.fleet_sim import FleetOptions, run_fleet

    if args.hubs < 1 or args.minutes <= 0 or args.ingesters < 1:
        print("error: --hubs, --minutes and --ingesters must be positive", file=sys.stderr)
        return 2
    if args.restart_broker_at is not None and not args.local_broker:
        print("error: --restart-broker-at needs --local-broker", file=sys.stderr)
        return 2
    if args.broker and (args.local_broker or not args.password_file):
        print("error: --broker needs --password-file and excludes --local-broker",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The fleet's own progress ("N hubs started in S s", which bench/rabbit_cluster.py
    # waits for) is informational; the hubs inside stay at WARNING.
    logging.getLogger("agent.sim.fleet_sim").setLevel(logging.INFO)
    # Each hub holds a few descriptors (store, WAL, lock, socket): raise the soft limit.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 16 * args.hubs + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    with tempfile.TemporaryDirectory(prefix="tec-fleet-") as tmp:
        root = Path(tmp)
        try:
            broker, access, ingest_access = _fleet_brokers(args, root)
        except AgentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

        def restart() -> None:
            assert broker is not None
            broker.stop()
            broker.start()

        opts = FleetOptions(hubs=args.hubs, minutes=args.minutes, workdir=root / "hubs",
                            db_url=args.db or f"sqlite:///{root / 'ingest.db'}",
                            ingesters=args.ingesters, group=args.group,
                            receipts=args.receipts,
                            restart_broker_at_s=args.restart_broker_at,
                            kill_ingester_at_s=args.kill_ingester_at)
        try:
            out = asyncio.run(run_fleet(opts, access, restart if broker else None,
                                        ingest_access))
        except (AgentError, RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if broker is not None:
                broker.close()
    print(json.dumps(out["extra"]), file=sys.stderr)
    print_json_line(out["result"])
    return 1 if out["result"]["lost"] else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.hubs is not None:
        return cmd_simulate_fleet(args)
    from agent.runtime import print_json_line, run_simulation, with_broker
    from agent.sim.local_broker import LocalBroker
    from agent.store.lock import StoreLock
    from agent.systemd_notify import setup_logging

    # Checked before anything starts: --rate 0 ran at the default 200/s and --count -1 as 0,
    # both silently.
    if args.count is not None and args.count < 0:
        print("error: --count must be 0 or more (0 only drains the store)", file=sys.stderr)
        return 2
    if args.rate is not None and not args.rate > 0:
        print("error: --rate must be greater than 0 (events per second)", file=sys.stderr)
        return 2
    config = _config_or_simulated_home(args.config)
    if config is None:
        return 2
    setup_logging(config.agent.log_level, _secrets(config))
    try:
        # One agent per store: refuse before starting a broker beside somebody else's store.
        # (The agent takes the lock for itself when it starts.)
        probe = StoreLock(config.store.path)
        probe.acquire()
        probe.release()
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    broker = None
    if args.local_broker:
        broker = LocalBroker(workdir=Path(config.store.path).resolve().parent / "broker")
        try:
            broker.start()
        except AgentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        config = with_broker(config, broker.host, broker.port, broker.username,
                             str(broker.password_file))
        print(f"local mosquitto on {broker.host}:{broker.port} (user {broker.username})",
              file=sys.stderr)

    def emit(event: Event) -> None:
        print_json_line(event.to_json_dict(config.hub_id))

    def watch(doc: dict[str, Any]) -> None:
        print(f"broker received: seq={doc.get('seq')} {doc.get('priority')} {doc.get('type')}"
              f" from {doc.get('device_id')}", file=sys.stderr, flush=True)

    options = {"count": args.count, "rate": args.rate}
    try:
        code, message = asyncio.run(run_simulation(
            config, args.scenario, args.timeout, options, emit, watch if args.watch else None,
            say=lambda line: print(line, file=sys.stderr, flush=True)))
    except AgentError as exc:
        code, message = 1, f"error: {exc}"
    finally:
        if broker is not None:
            broker.close()
    print(message, file=sys.stderr)
    if config.arc.enabled:
        # The exit status and the closing line speak for the broker; an alarm the ARC has
        # not acknowledged would otherwise go unmentioned.
        from agent.store.arc_delivery import read_arc_status

        arc = read_arc_status(config.store.path)
        if arc and arc["pending"]:
            print(f"note: {arc['pending']} alarm(s) not yet acknowledged by the ARC: sent "
                  "again at the next start (tec-agent status shows them)", file=sys.stderr)
    return code
