"""``tec-agent remote hubs``: the support desk's fleet view.

From the ingester's database (``--db``), or else from the broker: a short listen
(``--listen`` seconds) to every hub's retained status and device state and to live events,
stored in an in-memory database the ingester's way and read back the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from agent.errors import AgentError, ConfigError

EXIT_LOCAL = 2


def add_parser(rsub: argparse._SubParsersAction, common_broker) -> None:
    from agent.ingest.fleet import DEFAULT_BATTERY_LOW_PCT, DEFAULT_LIVENESS_S

    q = rsub.add_parser(
        "hubs", help="every hub: online/offline since when, version, last event, backlog, "
                     "devices offline, battery low",
        description="The fleet at a glance, from the ingester's database (--db) or, without "
                    "--db, from the broker (retained status and device state, and events "
                    "heard while listening). A hub without a status counts as online if an "
                    "event from it arrived within --liveness-s (RabbitMQ does not hand "
                    "retained messages across nodes or to wildcard subscribers). Without --db, "
                    "a hub no device state was heard from (the shipped ACLs do not let the "
                    "support account read it) has its device figures unknown (JSON null), "
                    "not 0.")
    q.add_argument("--db", metavar="URL",
                   help="the ingester's database (sqlite:///FILE or postgresql://...)")
    q.add_argument("--json", action="store_true", help="one JSON array, a document per hub")
    q.add_argument("--listen", type=float, default=3.0, metavar="S",
                   help="without --db: seconds to listen on the broker (default 3)")
    q.add_argument("--liveness-s", type=float, default=DEFAULT_LIVENESS_S,
                   help="a hub without a status is online if an event arrived within this "
                        f"(default {DEFAULT_LIVENESS_S:g})")
    q.add_argument("--battery-low-pct", type=float, default=DEFAULT_BATTERY_LOW_PCT,
                   help=f"devices below this battery level are listed (default "
                        f"{DEFAULT_BATTERY_LOW_PCT:g})")
    q.add_argument("--topic-prefix", default="", help="tenant level above tec/v1 (default none)")
    common_broker(q)
    q.set_defaults(func=cmd_hubs)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _from_broker(args: argparse.Namespace):
    """An in-memory ingest database filled from a listen on the broker."""
    from agent.cli.remote import _connect
    from agent.ingest.records import parse
    from agent.ingest.sqlite_db import SqliteIngestDb
    from agent.uplink import topics

    root = topics.root(args.topic_prefix)
    db = SqliteIngestDb(":memory:")
    client = _connect(args)
    try:
        for sub in (f"{root}/+/status", f"{root}/+/device/+", f"{root}/+/event"):
            try:
                client.subscribe(sub)
            except AgentError as exc:  # e.g. the support account may not read events
                print(f"warning: {exc}", file=sys.stderr)
        threading.Event().wait(args.listen)  # the listening window is what was asked for
        messages = client.received()
    finally:
        client.close()
    now = time.time()
    db.commit([parse(t, p, now, args.topic_prefix) for t, p, _ in messages])
    return db


def cmd_hubs(args: argparse.Namespace) -> int:
    from agent.ingest.db import open_db
    from agent.ingest.fleet import build_views, render_table
    from agent.uplink import topics

    try:
        why = topics.check_prefix(args.topic_prefix)
        if why:
            raise ConfigError(f"--topic-prefix {args.topic_prefix!r}: {why}")
        db = open_db(args.db) if args.db else _from_broker(args)
    except AgentError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    try:
        # On the broker, a hub no device state was heard from may be one this account may
        # not read it for (the shipped ACLs' support): its device figures are unknown.
        views = build_views(db.hubs(), db.devices(), time.time(), args.liveness_s,
                            args.battery_low_pct, none_is_unknown=not args.db)
    finally:
        db.close()
    if args.json:
        print(json.dumps([v.as_dict() for v in views], indent=2))
    else:
        print(render_table(views), end="")
    return 0
