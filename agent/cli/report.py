"""``tec-agent report``: outcome figures from the hub's own store, for a support visit."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.errors import StoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="outcome report from the local store: alarms, cancellations, falls, inactivity,"
             " delivery latency (MQTT and, with [arc], the ARC), devices, offline time, backlog",
    )
    p.add_argument("--config", required=True, help="path to the TOML config")
    p.add_argument("--days", type=int, default=7,
                   help="number of local days, ending today (default 7)")
    p.add_argument("--until", metavar="YYYY-MM-DD",
                   help="last day of the report (default: today, in the hub's time zone)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--html", metavar="FILE",
                     help="write a self-contained HTML report with charts")
    p.set_defaults(func=cmd_report)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_report(args: argparse.Namespace) -> int:
    from agent.cli.core import load_or_report, no_store_hint
    from agent.report.build import build_report, configured_devices
    from agent.report.html import render_html
    from agent.report.period import day_bounds, recent_days
    from agent.report.records import open_readonly
    from agent.report.text import render_text

    if not 1 <= args.days <= 400:
        print("error: --days must be between 1 and 400", file=sys.stderr)
        return 2
    config = load_or_report(args.config)
    if config is None:
        return 2
    tz = ZoneInfo(config.agent.timezone)
    now = time.time()
    if args.until:
        try:
            until = date.fromisoformat(args.until)
        except ValueError:
            print(f"error: --until: not a date (YYYY-MM-DD): {args.until!r}", file=sys.stderr)
            return 2
        now = min(now, day_bounds(until, tz)[1])
        days = [until - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
    else:
        days = recent_days(args.days, now, tz)
    try:
        db = open_readonly(config.store.path)
        try:
            report = build_report(db, hub_id=config.hub_id, tz=tz, days=days, now=now,
                                  devices=configured_devices(config))
        finally:
            db.close()
    except StoreError as exc:
        print(f"error: {exc}{no_store_hint(config.store.path, args.config)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif args.html:
        target = Path(args.html)
        try:
            _write_atomically(target, render_html(report))
        except OSError as exc:
            print(f"error: cannot write {target}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {target} ({len(days)} days, {report.total.alarms} alarms)")
    else:
        sys.stdout.write(render_text(report))
    return 0
