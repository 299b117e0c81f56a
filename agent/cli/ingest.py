"""``tec-agent ingest``: the reference consumer a service runs next to its broker.

Exit codes: 0 stopped by SIGTERM/SIGINT, 2 a local problem (bad URL, database, the broker
refused the login or could not be reached at start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import threading

from agent.errors import AgentError, ConfigError

EXIT_LOCAL = 2


def register(sub: argparse._SubParsersAction) -> None:
    from agent.ingest.db import DEFAULT_DB, NOTIFY_CHANNEL

    p = sub.add_parser(
        "ingest", help="store hubs' events in a database (SQLite or PostgreSQL)",
        description="Subscribe to every hub's events through the MQTT 5 shared subscription "
                    "$share/GROUP/tec/v1/+/event (several ingesters of one group split the "
                    "load) and to their status and device topics; store them idempotently "
                    "on (hub_id, id) and acknowledge each message only after the database "
                    "commit, so a crash loses nothing and a redelivery is counted as a "
                    f"duplicate, never stored twice. On PostgreSQL every new alarm is also "
                    f"sent with NOTIFY {NOTIFY_CHANNEL} in the same transaction.")
    p.add_argument("--broker", required=True, metavar="URL",
                   help="mqtt[s]://user@host:port (plaintext only to a loopback broker "
                        "unless --insecure)")
    p.add_argument("--password-file", help="first line is the broker password")
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                   help=f"sqlite:///FILE or postgresql://user@host:port/db (default {DEFAULT_DB}; "
                        "a PostgreSQL password goes in $PGPASSWORD or ~/.pgpass, not the URL)")
    p.add_argument("--group", default="tec-ingest",
                   help="shared subscription group (default tec-ingest): ingesters of one "
                        "group share the events, each event goes to one of them. Use a name "
                        "only the ingesters know: on mosquitto any account may join a group, "
                        "and one that may not read events drops its turn of them. '' "
                        "subscribes without sharing (one ingester): on brokers without "
                        "shared subscriptions, e.g. RabbitMQ, and on mosquitto when one "
                        "ingester is enough: mosquitto forgets shared subscriptions over a "
                        "restart and drops what hubs send before the ingester is back; "
                        "with receipts (the default) the hubs send those events again after "
                        "their mqtt.receipt_timeout_s (60 s), so they arrive late, not never")
    p.add_argument("--protocol", default="5", choices=("5", "3.1.1"),
                   help="MQTT version (default 5; 3.1.1 for a broker without MQTT 5, e.g. "
                        "RabbitMQ before 3.13)")
    p.add_argument("--client-id",
                   help="MQTT client id, fixed so a restarted ingester gets back the "
                        "messages it had not acknowledged (default tec-ingest-HOSTNAME; give "
                        "each ingester on one machine its own)")
    p.add_argument("--topic-prefix", default="",
                   help="tenant level above tec/v1 (the hubs' mqtt.topic_prefix; default none)")
    p.add_argument("--ca-file", help="CA bundle for mqtts:// (default: the system's)")
    p.add_argument("--insecure", action="store_true",
                   help="allow plaintext mqtt:// to a broker off this machine")
    p.add_argument("--session-expiry-s", type=int, default=7 * 86400,
                   help="how long the broker keeps this ingester's session and queued "
                        "messages while it is down (default 604800, a week)")
    p.add_argument("--no-receipts", dest="receipts", action="store_false",
                   help="do not send hubs receipts (tec/v1/HUB/receipt) after each commit. "
                        "With receipts (the default) a hub keeps an event until the database "
                        "has it and sends again what a broker acknowledged but never "
                        "delivered (a broker restart, a lost cluster node); the broker ACL "
                        "must let this account write tec/v1/+/receipt "
                        "(packaging/mosquitto/tec-agent.acl)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=cmd_ingest)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def cmd_ingest(args: argparse.Namespace) -> int:
    from agent.ingest.db import open_db, redact_url
    from agent.ingest.ingester import Ingester
    from agent.ingest.mqtt_source import MqttSource, SourceSettings
    from agent.remote.client import check_transport, parse_broker_url
    from agent.uplink import topics
    from agent.uplink.settings import read_password

    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("agent.ingest")
    try:
        why = topics.check_prefix(args.topic_prefix)
        if why:
            raise ConfigError(f"--topic-prefix {args.topic_prefix!r}: {why}")
        if args.group and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.group):
            raise ConfigError(f"--group {args.group!r}: 1-64 of A-Z a-z 0-9 _ - (or '')")
        broker = parse_broker_url(args.broker)
        check_transport(broker, args.insecure)
        if args.password_file and not os.path.isfile(args.password_file):
            raise ConfigError("--password-file: no such file (the name is not shown: it might "
                              "be the password itself)")
        password = read_password(args.password_file, "--password-file") \
            if args.password_file else None
        db = open_db(args.db)
    except AgentError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    client_id = args.client_id or f"tec-ingest-{socket.gethostname()}"
    source = MqttSource(SourceSettings(broker, password, client_id, args.group,
                                       args.topic_prefix, args.ca_file, args.session_expiry_s,
                                       protocol=args.protocol))

    def on_alarm(alarms: tuple) -> None:
        for a in alarms:
            log.info("alarm stored: hub %s %s %s (%s)", a.hub_id, a.type, a.device_id, a.id)

    ingester = Ingester(source, db, prefix=args.topic_prefix, on_alarm=on_alarm,
                        receipts=args.receipts)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        ingester.stop()
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        source.start()
    except AgentError as exc:
        db.close()
        _err(str(exc))
        return EXIT_LOCAL
    log.info("ingesting %s into %s (group %s, client id %s)",
             ", ".join(t for t, _ in source.subscriptions), redact_url(args.db), args.group,
             client_id)
    try:
        ingester.run()
    finally:
        source.stop()
        db.close()
        print(json.dumps(ingester.stats.as_dict()), flush=True)
    return 0
