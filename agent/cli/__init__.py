"""``tec-agent`` command line. Each subcommand lives in its own module with ``register()``."""

from __future__ import annotations

import argparse
import importlib
import sys

from agent import __version__

# Modules exposing ``register(subparsers)``; each adds its subcommands and sets ``func``.
COMMAND_MODULES = [
    "agent.cli.core",
    "agent.cli.ble",
    "agent.cli.eval_fall",
    "agent.cli.eval_inactivity",
    "agent.cli.remote",
    "agent.cli.ingest",
    "agent.cli.routine",
    "agent.cli.report",
    "agent.cli.commission",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tec-agent", description="Edge agent for in-home Technology Enabled Care hubs."
    )
    parser.add_argument("--version", action="version", version=f"tec-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
