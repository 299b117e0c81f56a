"""``tec-agent commission``: the installer's check that the hub works, end to end."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

SERVICE = "tec-agent.service"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "commission",
        help="installer commissioning: devices, walk test, test alarm (broker, and ARC with"
             " [arc]), installation_complete",
    )
    p.add_argument("--config", required=True, help="path to the TOML config")
    p.add_argument("--walk-timeout", type=float, default=600.0, metavar="S",
                   help="seconds to wait for every sensor to be triggered (default 600)")
    p.add_argument("--connect-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the broker (default 30)")
    p.add_argument("--ack-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the broker to acknowledge an event (default 30)")
    p.add_argument("--skip", action="append", default=[], metavar="DEVICE=REASON",
                   help="a device that cannot be triggered today, with the reason (repeatable;"
                        " recorded in installation_complete), e.g. --skip 'pir-bed=resident"
                        " asleep'")
    p.add_argument("--allow-untested", action="append", default=[], metavar="DEVICE",
                   help="let a skipped alarm device (pull cord, button, smoke, flood, pendant,"
                        " telecare unit) pass untested; it must be named here (repeatable)")
    p.add_argument("--installer", help="installer's name or id, recorded in installation_complete")
    p.set_defaults(func=cmd_commission)


def _service_active() -> bool:
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return False
    return subprocess.run(
        ["systemctl", "is-active", "--quiet", SERVICE], check=False
    ).returncode == 0


def _systemctl(action: str) -> bool:
    return subprocess.run(["systemctl", action, SERVICE], check=False).returncode == 0


def cmd_commission(args: argparse.Namespace) -> int:
    from agent.cli.core import _secrets, load_or_report
    from agent.commission import Commissioning, CommissionOptions, parse_skip
    from agent.errors import AgentError, StoreInUseError
    from agent.systemd_notify import setup_logging

    for name in ("walk_timeout", "connect_timeout", "ack_timeout"):
        if getattr(args, name) <= 0:
            print(f"error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    skips, problems = parse_skip(args.skip)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    config = load_or_report(args.config)
    if config is None:
        return 2
    # Only problems from the agent itself; the progress lines are the installer's output.
    setup_logging("WARNING", _secrets(config))

    # The service and this run would share the event store and the broker identity: pause
    # the service for the duration (it carries on from the same store afterwards).
    paused = False
    if _service_active():
        if os.geteuid() != 0:
            print(f"error: {SERVICE} is running: run commissioning with sudo (it pauses the"
                  " service and restarts it afterwards)", file=sys.stderr)
            return 2
        print(f"Pausing {SERVICE} while commissioning runs: this run is the hub's agent"
              " meanwhile (same config, store and broker identity; alarms raised are stored and"
              " sent as usual). The service is restarted afterwards, also after Ctrl-C.")
        if not _systemctl("stop"):
            print(f"error: could not stop {SERVICE}", file=sys.stderr)
            return 1
        paused = True
    options = CommissionOptions(
        walk_timeout_s=args.walk_timeout, connect_timeout_s=args.connect_timeout,
        ack_timeout_s=args.ack_timeout, skip=skips, installer=args.installer,
        allow_untested=tuple(args.allow_untested),
    )
    try:
        result = asyncio.run(Commissioning(
            config, out=lambda line: print(line, flush=True), options=options,
            config_file=args.config).run())
    except StoreInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("Commissioning runs the hub's agent itself (it needs the pins, ports and radio the"
              f" running agent holds). If that agent is {SERVICE}, run commissioning with sudo:"
              " it pauses the service and restarts it afterwards.", file=sys.stderr)
        return 1
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130    # the run has said what was done (Commissioning._interrupted)
    finally:
        if paused:
            print(f"Restarting {SERVICE}.")
            if not _systemctl("start"):
                print(f"error: could not restart {SERVICE}: start it by hand", file=sys.stderr)
    return 0 if result.ok else 1
