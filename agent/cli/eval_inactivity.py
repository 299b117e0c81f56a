"""``tec-agent eval-inactivity``: replay a recorded home through the inactivity rules.

Prints one JSON object: the figures for the fixed rules, the learned routine and the
council's fixed 12 h timer side by side, a ``learning`` block (days until the learning
period was over, what was learned), and over the log's halves (the stillness routine
learned on one half, tested on the other). ``--homes DIR...`` instead runs
leave-one-home-out (:mod:`agent.inactivity.loho`). See :mod:`agent.inactivity.evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.errors import AgentError, ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-inactivity",
        help="replay a recorded home's events through the inactivity rules; print figures",
        description="Replay an event log (ts,sensor_id,kind,value,activity; local time) "
                    "through the agent's own inactivity rules, time-compressed, with injected "
                    "collapse episodes, and print one JSON object.",
    )
    p.add_argument("--events", help="event log, .csv or .csv.gz (one home)")
    p.add_argument("--sensors", help="sensor map JSON {sensors: {id: {room, kind, role}}}")
    p.add_argument("--homes", nargs="+", metavar="DIR",
                   help="leave-one-home-out over every home (NAME_events.csv[.gz] + "
                        "NAME_sensors.json [+ NAME_activities.csv[.gz]]) in these directories: "
                        "choose the learning parameters on the other homes, report each home "
                        "left out")
    p.add_argument("--timezone", metavar="TZ",
                   help="the home's time zone (IANA, e.g. America/Los_Angeles); default: "
                        "agent.timezone from --config (Europe/London). With --homes also "
                        "HOME=TZ[,HOME=TZ...] for some homes, a bare TZ for the rest")
    p.add_argument("--alerts-out", metavar="FILE",
                   help="write one JSON line per alert (home, variant, rule, start, end, "
                        "injected, episode_start, activity label at the time)")
    p.add_argument("--config", help="agent TOML whose [inactivity] rules to use "
                                    "(default: rules derived from the sensor map)")
    p.add_argument("--inject", type=int, default=20, metavar="N",
                   help="collapse episodes to inject (default 20)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    p.add_argument("--episode-hours", type=float, default=14.0, metavar="H",
                   help="hours removed after each episode start (default 14: longer than "
                        "the 12 h timer, so every rule set can detect it)")
    p.add_argument("--labels", help="activity labels (start,end,activity) used to keep episode "
                                    "starts at home; default: *_activities.csv.gz beside --events")
    p.add_argument("--no-halves", action="store_true", help="skip the learn/test halves")
    p.add_argument("--verbose", action="store_true", help="log every alert raised during replay")
    p.set_defaults(func=cmd_eval_inactivity)


def _default_labels(events: Path) -> Path | None:
    name = events.name
    for suffix in ("_events.csv.gz", "_events.csv"):
        if name.endswith(suffix):
            cand = events.with_name(name[: -len(suffix)] + "_activities" + suffix[len("_events"):])
            return cand if cand.exists() else None
    return None


def _config(args: argparse.Namespace) -> Any:
    from agent.config import load_config, parse_config
    from agent.inactivity.loho import parse_zones

    config = load_config(args.config) if args.config else parse_config({"hub_id": "eval"})
    zones = parse_zones(args.timezone)
    if not args.homes and set(zones) - {""}:
        # One home: HOME=TZ was ignored, and the home replayed in the default zone.
        raise ConfigError(f"--timezone {args.timezone}: HOME=TZ is for --homes; for one home "
                          "give the zone alone (e.g. --timezone America/Los_Angeles)")
    if "" in zones:
        config = dataclasses.replace(
            config, agent=dataclasses.replace(config.agent, timezone=zones[""]))
    return config


def _one_home(args: argparse.Namespace, config: Any,
              alerts: list[dict[str, Any]] | None) -> dict[str, Any]:
    from agent.inactivity.evaluation import evaluate
    from agent.inactivity.replay import load_events, load_labels
    from agent.inactivity.sensors import device_map_from_sensor_json

    if not args.events or not args.sensors:
        raise ConfigError("--events and --sensors are required (or --homes DIR...)")
    tz = ZoneInfo(config.agent.timezone)
    devices = device_map_from_sensor_json(args.sensors)
    log, disorder = load_events(args.events, tz)
    if len(log) < 2:
        raise ConfigError(f"{args.events}: fewer than two events")
    labels_path = Path(args.labels) if args.labels else _default_labels(Path(args.events))
    labels = load_labels(labels_path, tz) if labels_path else []
    unknown = sorted({e.sensor_id for e in log} - set(devices))
    home = Path(args.events).name.split("_events.csv")[0]
    report = evaluate(log, labels, config, devices, args.inject, args.seed,
                      args.episode_hours, halves=not args.no_halves, alerts=alerts, home=home)
    report["rows_out_of_order"] = disorder
    report["unknown_sensors"] = unknown
    report["labels"] = str(labels_path) if labels_path else None
    report["rules"] = _rules_summary(config, devices)
    return report


def _homes(args: argparse.Namespace, config: Any,
           alerts: list[dict[str, Any]] | None) -> dict[str, Any]:
    from agent.inactivity.loho import find_homes, leave_one_home_out, parse_zones

    homes = find_homes(args.homes, config, parse_zones(args.timezone))
    return leave_one_home_out(homes, args.inject, args.seed, args.episode_hours, alerts)


def cmd_eval_inactivity(args: argparse.Namespace) -> int:
    if args.inject < 0 or args.episode_hours <= 0:
        print("eval-inactivity: --inject must be >= 0 and --episode-hours > 0", file=sys.stderr)
        return 2
    started = time.monotonic()
    rules_log = logging.getLogger("agent.inactivity")
    level = rules_log.level
    if not args.verbose:
        rules_log.setLevel(logging.ERROR)   # thousands of replayed alerts are not news
    alerts: list[dict[str, Any]] | None = [] if args.alerts_out else None
    try:
        config = _config(args)
        report = (_homes if args.homes else _one_home)(args, config, alerts)
        if alerts is not None:
            with open(args.alerts_out, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(a) + "\n" for a in alerts)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"eval-inactivity: {problem}", file=sys.stderr)
        return 2
    except (AgentError, OSError, KeyError, ValueError) as exc:
        print(f"eval-inactivity: {exc}", file=sys.stderr)
        return 2
    finally:
        rules_log.setLevel(level)
    if alerts is not None:
        report["alerts_out"] = {"file": args.alerts_out, "alerts": len(alerts)}
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(report, sort_keys=False))
    return 0


def _rules_summary(config: object, devices: object) -> dict[str, object]:
    from agent.inactivity.ruleset import derive_rules

    rs = derive_rules(config.inactivity, devices)  # type: ignore[attr-defined,arg-type]
    return rs.describe()
