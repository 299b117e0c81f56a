"""``tec-agent ble capture`` and ``tec-agent ble replay``: BLE adverts for support and tests."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from agent.errors import DriverError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ble", help="Bluetooth LE tools: capture and replay adverts")
    ble = p.add_subparsers(dest="ble_command", metavar="ACTION")

    c = ble.add_parser("capture", help="record every advert heard to a JSONL file")
    c.add_argument("--seconds", type=float, required=True, help="how long to listen")
    c.add_argument("--out", required=True, help="output file (JSON lines)")
    c.add_argument("--adapter", default="hci0", help="Bluetooth adapter (default hci0)")
    c.set_defaults(func=cmd_capture)

    r = ble.add_parser("replay", help="decode a capture file with the real BLE driver")
    r.add_argument("file", help="capture file (JSON lines, as written by `ble capture`)")
    r.add_argument("--config", help="agent config: decode only its [[ble.devices]], with "
                                    "their bindkeys and thresholds (default: every BTHome device)")
    r.set_defaults(func=cmd_replay)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def cmd_capture(args: argparse.Namespace) -> int:
    from drivers.ble.tools.capture import capture

    _logging()
    if args.seconds <= 0:
        print("error: --seconds must be greater than 0", file=sys.stderr)
        return 2
    out_path = Path(args.out)
    part = out_path.with_name(out_path.name + ".part")
    try:
        with part.open("w", encoding="utf-8") as out:
            n = asyncio.run(capture(args.seconds, out, adapter=args.adapter))
        part.replace(out_path)
    except DriverError as exc:
        part.unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        part.unlink(missing_ok=True)
        print(f"error: cannot write {out_path}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if part.exists():
            part.replace(out_path)
        print(f"interrupted; what was heard is in {out_path}", file=sys.stderr)
        return 130
    print(f"captured {n} advert(s) to {out_path}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.model import Event, Reading
    from drivers.ble.tools.replay import event_json, reading_json, replay_lines

    _logging()
    config = None
    hub_id = "replay"
    if args.config:
        from agent.cli.core import load_or_report

        full = load_or_report(args.config)
        if full is None:
            return 2
        config, hub_id = full.ble, full.hub_id
        skipped = [d.id for d in config.devices if d.kind != "bthome"]
        if skipped:
            print(f"note: {', '.join(skipped)}: not replayed (a wearable needs a live "
                  "connection, not adverts)", file=sys.stderr)
        if len(skipped) == len(config.devices):
            print(f"note: {args.config} has no BTHome [[ble.devices]]: no advert will be "
                  "decoded (without --config every BTHome device is)", file=sys.stderr)
    try:
        lines = Path(args.file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1

    def on_reading(r: Reading) -> None:
        print(json.dumps(reading_json(r), ensure_ascii=False), flush=False)

    def on_event(e: Event) -> None:
        print(json.dumps(event_json(e, hub_id), ensure_ascii=False), flush=False)

    def on_problem(n: int, msg: str) -> None:
        print(f"line {n}: {msg}", file=sys.stderr)

    stats = asyncio.run(replay_lines(lines, config, hub_id, on_reading, on_event, on_problem))
    sys.stdout.flush()
    print(
        f"replayed {stats.lines} line(s): {stats.adverts} advert(s), {stats.readings} "
        f"reading(s), {stats.events} event(s); {stats.malformed} malformed, "
        f"{stats.undecodable} undecodable, {stats.duplicates} duplicate(s) skipped"
        + (f"; {stats.not_configured} advert(s) from devices not in the config"
           if config is not None else ""),
        file=sys.stderr,
    )
    return 0
