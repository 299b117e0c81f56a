"""``tec-agent routine``: show what the hub has learned about the person's day.

Reads the agent database read-only (safe while the agent runs): per hour of the day, how
many day-hours were learned from, the longest stillness seen (the learned quantile), and
the threshold in force, learned or fixed. Also the detector's saved state (last activity,
away, mats). Without the learned routine enabled it shows what *would* be learned.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("routine", help="show the learned daily routine (inactivity thresholds)")
    p.add_argument("--config", required=True, help="path to the agent's TOML config")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_routine)


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m = round(seconds / 60.0)
    return f"{m // 60}h{m % 60:02d}m"


def collect(config: Any) -> dict[str, Any]:
    """The routine report as a dict (the ``--json`` form)."""
    from agent.inactivity.config import LearnedRoutine
    from agent.inactivity.localtime import Window
    from agent.inactivity.persistence import InactivityStore
    from agent.inactivity.routine import Routine, learn
    from agent.inactivity.ruleset import derive_rules
    from agent.inactivity.sensors import device_map_from_config
    from agent.store.component_state import MemoryComponentState, read_component_state

    saved = read_component_state(config.store.path, "inactivity")
    store = InactivityStore(MemoryComponentState.of(saved))
    stored = store.load_routine()
    bins = store.load_bins()
    snap = store.load_snapshot()
    icfg = config.inactivity
    params = icfg.learned if icfg.learned.enabled else LearnedRoutine(enabled=True)
    tz = ZoneInfo(config.agent.timezone)
    # A preview learns from everything recorded (up to the last recorded day), as the agent
    # would at its next local midnight.
    last_day = max((d for d, _ in bins), default=None)
    today = (last_day + timedelta(days=1)) if last_day else datetime.now(tz).date()
    preview = stored is None or not icfg.learned.enabled
    routine: Routine = stored if not preview and stored is not None else learn(bins, params, today)
    rules = derive_rules(icfg, device_map_from_config(config))
    hours = []
    for h in range(24):
        learned = routine.thresholds[h]
        fixed = [w.after_s for w in rules.inactivity
                 if Window.parse(w.start, w.end).contains(h * 60 + 30)]
        if learned is not None:
            threshold, source = learned, "learned"
        elif fixed:
            threshold, source = min(fixed), "fixed"
        else:
            threshold, source = params.max_s, "max_s"
        hours.append({"hour": h, "samples": routine.samples[h], "quantile_s": routine.quantiles[h],
                      "threshold_s": threshold, "source": source})
    state = None
    if snap is not None:
        home = snap.get("home", {})
        last = home.get("last_activity_wall")
        state = {
            "saved_at": _iso(snap.get("saved_wall"), tz),
            "last_activity": _iso(last, tz),
            "last_device": home.get("last_device"),
            "last_room": home.get("last_room"),
            "still_s": home.get("still_s"),
            "away": home.get("away"),
            "mats_occupied": sorted(home.get("mats", {})),
        }
    return {
        "hub_id": config.hub_id,
        "timezone": config.agent.timezone,
        "enabled": icfg.learned.enabled,
        "preview": preview,
        "ready": routine.ready,
        "days_used": routine.days_used,
        "learned_on": routine.learned_on.isoformat() if routine.learned_on else None,
        "days_recorded": len({d for d, _ in bins}),
        "params": {"quantile": params.quantile, "factor": params.factor, "min_s": params.min_s,
                   "max_s": params.max_s, "learn_days": params.learn_days,
                   "min_days": params.min_days, "min_samples": params.min_samples},
        "hours": hours,
        "state": state,
    }


def _iso(wall: Any, tz: ZoneInfo) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(float(wall), tz).isoformat(timespec="seconds")


def render(report: dict[str, Any]) -> str:
    lines = []
    mode = "enabled" if report["enabled"] else "not enabled (preview of what would be learned)"
    ready = "ready" if report["ready"] else "not ready yet"
    lines.append(f"Learned routine for hub {report['hub_id']} ({report['timezone']}): {mode}")
    lines.append(f"  {ready}: {report['days_used']} day(s) learned,"
                 f" {report['days_recorded']} recorded,"
                 f" learned on {report['learned_on'] or '-'}")
    lines.append("")
    lines.append(f"  {'hour':<6}{'samples':>8}  {'longest still':>13}  {'threshold':>9}  source")
    for h in report["hours"]:
        lines.append(f"  {h['hour']:02d}:00 {h['samples']:>8}  {_fmt(h['quantile_s']):>13}  "
                     f"{_fmt(h['threshold_s']):>9}  {h['source']}")
    st = report["state"]
    if st:
        lines.append("")
        lines.append(f"  last activity: {st['last_activity'] or '-'} ({st['last_device'] or '-'}"
                     f" in {st['last_room'] or '-'}); away: {'yes' if st['away'] else 'no'};"
                     f" mats occupied: {', '.join(st['mats_occupied']) or 'none'}")
        lines.append(f"  state saved at {st['saved_at']}")
    return "\n".join(lines)


def cmd_routine(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.errors import ConfigError, StoreError

    try:
        config = load_config(args.config)
        report = collect(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"routine: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(render(report))
    return 0

