"""``tec-agent routine``: show what the hub has learned about the person's day.

Reads the agent database read-only (safe while the agent runs): the learning period (days
seen, ready or not), the learned ``not_up`` deadline per weekday / weekend with the get-ups
it rests on, the learned ``chair_too_long`` / ``night_out_of_bed`` / ``not_returned``
thresholds with the longest session behind each, and the bounds that clamp them; per hour
of the day, how many day-hours were learned from, the longest stillness seen (the learned
quantile), and the threshold in force, learned or fixed; per room of the last activity and
time-of-day band, the same (``by_place``). Also the detector's saved state (last activity,
away, mats occupied, mats that pulse). Without learning enabled it shows what *would* be
learned.
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


def _read_store(path: str) -> tuple[Any, dict[Any, Any], Any, Any, dict[Any, Any]]:
    """The saved routine, stillness samples, household records, snapshot and per-room
    stillness samples (read-only)."""
    from agent.inactivity.persistence import InactivityStore
    from agent.store.component_state import MemoryComponentState, read_component_state

    store = InactivityStore(MemoryComponentState.of(read_component_state(path, "inactivity")))
    return (store.load_routine(), store.load_bins(), store.load_household(),
            store.load_snapshot(), store.load_places())


def collect(config: Any) -> dict[str, Any]:
    """The routine report as a dict (the ``--json`` form)."""
    from agent.inactivity.config import LearnedRoutine
    from agent.inactivity.localtime import Window
    from agent.inactivity.routine import Routine, learn
    from agent.inactivity.ruleset import derive_rules
    from agent.inactivity.sensors import device_map_from_config

    stored, bins, records, snap, places = _read_store(str(config.store.path))
    icfg = config.inactivity
    params = icfg.learned if icfg.learned.enabled else LearnedRoutine(enabled=True)
    tz = ZoneInfo(config.agent.timezone)
    # A preview learns from everything recorded (up to the last recorded day), as the agent
    # would at its next local midnight.
    last_day = max((d for d, _ in bins), default=None)
    today = (last_day + timedelta(days=1)) if last_day else datetime.now(tz).date()
    preview = stored is None or not icfg.learned.enabled
    routine: Routine = (stored if not preview and stored is not None
                        else learn(bins, params, today, places))
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
    household = _household(records, params, today, rules)
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
            "mats_pulsing": _pulsing(home.get("mat_stays") or {}),
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
                   "min_days": params.min_days, "min_samples": params.min_samples,
                   "by_place": params.by_place, "place_factor": params.place_factor,
                   "place_min_s": params.place_min_s,
                   "place_min_samples": params.place_min_samples},
        "household": household,
        "hours": hours,
        "places": [{"room": p, "band": b, "samples": n, "longest_s": q, "threshold_s": t}
                   for (p, b), (t, q, n) in sorted(routine.places.items())],
        "state": state,
    }


def _household(records: Any, params: Any, today: Any, rules: Any) -> dict[str, Any]:
    """The learned not_up / session thresholds, the defaults they replace, and the bounds."""
    from agent.inactivity.household import HouseholdRecorder, learn_household

    learned = learn_household(records or HouseholdRecorder(), params, today).as_dict()
    defaults = {
        "not_up_by": rules.not_up.by if rules.not_up else None,
        "not_up_seed": (f"{rules.not_up_seed // 60:02d}:{rules.not_up_seed % 60:02d}"
                        if rules.not_up_seed is not None else None),
        "chair_s": rules.chair_too_long.after_s if rules.chair_too_long else None,
        "night_s": rules.night_out_of_bed.after_s if rules.night_out_of_bed else None,
        "away_s": rules.away.not_returned_after_s if rules.away else None,
    }
    bounds = {"not_up": [params.not_up_earliest, params.not_up_latest],
              "chair_s": [params.chair_min_s, params.chair_max_s],
              "night_s": [params.night_min_s, params.night_max_s],
              "away_s": [params.away_min_s, params.away_max_s],
              "away_factor": params.away_factor, "away_quantile": params.away_quantile,
              "inactivity_s": [params.min_s, params.max_s]}
    return {**learned, "learning_period_days": params.min_days, "defaults": defaults,
            "bounds": bounds}


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
    lines.extend(_render_household(report["household"]))
    lines.append("")
    lines.append(f"  {'hour':<6}{'samples':>8}  {'longest still':>13}  {'threshold':>9}  source")
    for h in report["hours"]:
        lines.append(f"  {h['hour']:02d}:00 {h['samples']:>8}  {_fmt(h['quantile_s']):>13}  "
                     f"{_fmt(h['threshold_s']):>9}  {h['source']}")
    if report["places"]:
        lines.append("")
        lines.append("  after being seen in a room (the lower of this and the hour applies):")
        lines.append(f"  {'room':<16}{'band':<10}{'samples':>8}  {'longest still':>13}"
                     f"  {'threshold':>9}")
        for c in report["places"]:
            lines.append(f"  {c['room'][:15]:<16}{c['band']:<10}{c['samples']:>8}  "
                         f"{_fmt(c['longest_s']):>13}  {_fmt(c['threshold_s']):>9}")
    st = report["state"]
    if st:
        lines.append("")
        lines.append(f"  last activity: {st['last_activity'] or '-'} ({st['last_device'] or '-'}"
                     f" in {st['last_room'] or '-'}); away: {'yes' if st['away'] else 'no'};"
                     f" mats occupied: {', '.join(st['mats_occupied']) or 'none'}")
        if st.get("mats_pulsing"):
            lines.append(f"  mats that pulse (read as movement, never as presence): "
                         f"{', '.join(st['mats_pulsing'])}")
        lines.append(f"  state saved at {st['saved_at']}")
    return "\n".join(lines)


def _pulsing(stays: dict[str, Any]) -> list[str]:
    """Mats whose recent stays are momentary (see ``HomeState.mat_momentary``)."""
    from agent.inactivity.home import HomeState

    home = HomeState(mat_stays={str(k): [float(x) for x in v] for k, v in stays.items()})
    return sorted(dev for dev in home.mat_stays if home.mat_momentary(dev))


def _render_household(hh: dict[str, Any]) -> list[str]:
    lines = [""]
    period = hh["learning_period_days"]
    if hh["ready"]:
        lines.append(f"  Learning period over ({hh['days_seen']} day(s) seen, needs {period}):"
                     " the learned values below are in force.")
    else:
        lines.append(f"  Learning period: {hh['days_seen']} of {period} day(s) seen; until then"
                     " the defaults (or the installer's get-up/bed times) apply.")
    d, b = hh["defaults"], hh["bounds"]
    for kind, v in hh["not_up"].items():
        lines.append(f"  not_up on a {kind}: by {v['by']} (latest get-up {v['latest_get_up']}"
                     f" over {v['get_ups']} {kind}(s); bounds {b['not_up'][0]}-{b['not_up'][1]};"
                     f" default {d['not_up_seed'] or d['not_up_by'] or '-'})")
    names = {"chair": ("chair_too_long", "chair_s"), "night": ("night_out_of_bed", "night_s"),
             "away": ("not_returned", "away_s")}
    for kind, v in hh["sessions"].items():
        rule, key = names.get(kind, (kind, ""))
        lo, hi = b.get(key, [None, None])
        if kind == "away" and "quantile" in v:
            which = "longest" if v["quantile"] >= 1.0 else f"quantile {v['quantile']:g}"
            what = (f"{v['factor']:g} x {_fmt(v['quantile_s'])}, the {which}"
                    f" of {v['sessions']} absence(s), longest {_fmt(v['longest_s'])}")
        else:
            what = f"longest of {v['sessions']} session(s) {_fmt(v['longest_s'])}"
        lines.append(f"  {rule}: after {_fmt(v['threshold_s'])} ({what};"
                     f" bounds {_fmt(lo)}-{_fmt(hi)}; default {_fmt(d.get(key))})")
    return lines


def cmd_routine(args: argparse.Namespace) -> int:
    from agent.cli.core import load_or_report
    from agent.errors import StoreError

    # The one config reporter of the other commands: it printed 'PATH: PATH: file not
    # found' and array entries without their id.
    config = load_or_report(args.config)
    if config is None:
        return 2
    try:
        report = collect(config)
    except StoreError as exc:
        print(f"routine: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(render(report))
    return 0

