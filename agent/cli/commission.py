"""``tec-agent commission``: the installer's check that the hub works, end to end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

SERVICE = "tec-agent.service"
# Signals that end a run as Ctrl-C does (it says what was done, a paused service is started
# again): `kill`, and the hangup of an installer's SSH session that closes mid-run.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_T = TypeVar("_T")


class _Stopped(Exception):
    """The run was ended by one of ``_STOP_SIGNALS`` (its number in ``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def _stoppable(run: Coroutine[Any, Any, _T]) -> _T:
    """``run``, cancelled by SIGTERM or SIGHUP as by Ctrl-C (so that the service the run
    paused is started again, not left stopped, as the default action would leave it). A
    signal this process inherited as ignored (``nohup`` ignores SIGHUP) stays ignored, as
    the GNU libc manual asks of programs started by a shell without job control; SIGINT is
    Python's (KeyboardInterrupt), and stays ignored too when inherited so."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    got: list[int] = []

    def stop(signum: int) -> None:
        got.append(signum)
        task.cancel()

    handled = [s for s in _STOP_SIGNALS if signal.getsignal(s) == signal.SIG_DFL]
    for signum in handled:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await run
    except asyncio.CancelledError:
        if got:
            raise _Stopped(got[0]) from None
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _say(text: str, err: bool = False) -> None:
    """A line for the installer; nothing when the terminal is gone (SIGHUP after an SSH
    session closed: the write fails, and what follows must still happen)."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


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
    p.add_argument("--get-up", metavar="HH:MM",
                   help="the person's usual get-up time: seeds the not_up deadline and the "
                        "night windows until the hub has learned them (asked when run at a "
                        "terminal and not yet in the config; saved as inactivity.usual_get_up)")
    p.add_argument("--bedtime", metavar="HH:MM",
                   help="the person's usual bed time: starts the night windows (asked like "
                        "--get-up; saved as inactivity.usual_bedtime)")
    p.set_defaults(func=cmd_commission)


ROUTINE_KEYS = (("get_up", "usual_get_up", "Usual get-up time"),
                ("bedtime", "usual_bedtime", "Usual bed time"))


def ask_routine(args: argparse.Namespace, config: Any, ask: Callable[[str], str] | None
                ) -> dict[str, str]:
    """The get-up and bed times to save: from the flags, else asked (when ``ask`` is given
    and the config has none). Empty answers keep what the config has."""
    from agent.inactivity.config import hhmm_to_minutes

    out: dict[str, str] = {}
    for flag, key, question in ROUTINE_KEYS:
        value = getattr(args, flag, None)
        have = getattr(config.inactivity, key)
        while value is None and ask is not None and not have:
            answer = ask(f"{question} of the person (HH:MM, Enter to skip): ").strip()
            if not answer:
                break
            try:
                hhmm_to_minutes(answer)
                value = answer
            except ValueError:
                print(f"  {answer!r} is not a time of day HH:MM (00:00-23:59)")
        if value is None:
            continue
        try:
            hhmm_to_minutes(value)
        except ValueError:
            raise ValueError(f"--{flag.replace('_', '-')}: expected HH:MM, got {value!r}") from None
        if value != have:
            out[key] = value
    return out


def save_routine(path: str, values: dict[str, str]) -> None:
    """Write ``values`` into ``[inactivity]`` of the installer's file (layout kept, written to
    a temp file and renamed), after checking the result loads."""
    import tomllib

    import tomlkit

    from agent.config import parse_config

    p = Path(path)
    doc = tomlkit.parse(p.read_text(encoding="utf-8"))
    table = doc.get("inactivity")
    if table is None:
        table = tomlkit.table()
        doc["inactivity"] = table
    for key, value in values.items():
        table[key] = value
    text = tomlkit.dumps(doc)
    parse_config(tomllib.loads(text), str(p))
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


def _service_active() -> bool:
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return False
    return subprocess.run(
        ["systemctl", "is-active", "--quiet", SERVICE], check=False
    ).returncode == 0


def _systemctl(action: str) -> bool:
    return subprocess.run(["systemctl", action, SERVICE], check=False).returncode == 0


def _config_with_routine(args: argparse.Namespace, load_or_report: Any) -> Any:
    """The config, after asking the person's usual get-up and bed times (saved to it) when
    it has none; None (reported) when it cannot be read or written."""
    config = load_or_report(args.config)
    if config is None:
        return None
    try:
        routine = ask_routine(args, config, input if sys.stdin.isatty() else None)
        if routine:
            save_routine(args.config, routine)
            print("Saved to the config: " + ", ".join(f"inactivity.{k} = {v}"
                                                     for k, v in routine.items()))
            config = load_or_report(args.config)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return config


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
    config = _config_with_routine(args, load_or_report)
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
              " sent as usual). The service is restarted afterwards, also after Ctrl-C, kill or a"
              " closed SSH session.")
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
        result = asyncio.run(_stoppable(Commissioning(
            config, out=lambda line: print(line, flush=True), options=options,
            config_file=args.config).run()))
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
    except _Stopped as exc:
        return 128 + exc.signum   # the shell's code for a process ended by that signal
    finally:
        if paused:
            _say(f"Restarting {SERVICE}.")
            if not _systemctl("start"):
                _say(f"error: could not restart {SERVICE}: start it by hand", err=True)
    return 0 if result.ok else 1
