"""The report as a plain-text table for a terminal (installer's laptop, SSH session)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.model import iso_utc
from agent.report.build import Report
from agent.report.summary import Summary


def _num(value: float | None, fmt: str = "{:.0f}", none: str = "-") -> str:
    return none if value is None else fmt.format(value)


def _age(seconds: float) -> str:
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds / 86400:.1f} days"


def _by_type(counts: Mapping[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns sized to fit; the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        out.append("  ".join(cells).rstrip())
    return out


def _day_row(s: Summary, label: str, offline: str) -> list[str]:
    return [
        label, str(s.alarms), str(s.cancelled_alarms), str(s.falls), str(s.inactivity_alerts),
        str(s.test_alarms), _num(s.latency.median_ms, "{:.0f} ms"), str(s.undelivered_alarms),
        offline,
    ]


def render_text(report: Report) -> str:
    t = report.total
    lines = [
        (f"tec-agent report for hub {report.hub_id}: {len(report.days)} day(s) {t.label}"
         f" ({report.timezone}), generated {iso_utc(report.generated)}"),
        "",
    ]
    header = ["Day", "Alarms", "Cancelled", "Falls", "Inactivity", "Tests", "Latency p50",
              "Undelivered", "Offline min"]
    rows = [_day_row(d, d.label + ("*" if d.partial else ""), _num(d.offline_minutes, "{:.1f}"))
            for d in report.days]
    total_offline = _num(t.offline_minutes, "{:.1f}")
    if t.offline_minutes is not None and report.offline_days_known < len(report.days):
        total_offline += f" ({report.offline_days_known} of {len(report.days)} days)"
    rows.append(_day_row(t, "Total", total_offline))
    lines += _table(header, rows)
    if any(d.partial for d in report.days):
        lines.append("* day in progress; offline minutes come from each day's summary event")
    if not t.clock_synced:
        lines.append("! some events were stamped before the hub's clock was synchronised")
    lines += [
        "",
        f"Alarms by type:      {_by_type(t.alarms_by_type)}",
        f"Cancelled alarms:    {_by_type(t.cancelled_by_type)}",
        (f"Falls:               {t.falls} raised, {t.falls_cancelled} cancelled by the wearer,"
         f" {t.falls_recovered} recovered without help (fall_recovered warnings)"),
        (f"Inactivity alerts:   {_by_type(t.inactivity_by_type)}"
         f" ({t.inactivity_prewarnings} pre-warnings)"),
        f"Warnings:            {_by_type(t.warnings_by_type)}",
        "Alarm delivery:      " + delivery_line(t),
    ]
    if report.arc is not None:
        lines.append("ARC delivery:        " + arc_line(report.arc))
    lines += [
        "",
    ]
    if t.records_from is not None:
        lines.append(f"Device uptime counts from {_local(t.records_from, report.timezone)}, when"
                     " the store's records begin (nothing is known before)")
    if t.devices:
        dev_rows = [
            [d.device_id, d.kind or "-", _num(d.uptime_pct, "{:.1f}%"),
             _num(d.offline_minutes, "{:.1f}"), str(d.offline_events),
             _num(d.battery_pct, "{:.0f}%") + (" LOW" if d.battery_low else ""),
             _num(d.rssi, "{} dBm")]
            for d in t.devices
        ]
        lines += _table(["Device", "Kind", "Uptime", "Offline min", "Went offline", "Battery",
                         "Signal"], dev_rows, left=2)
    else:
        lines.append("Devices: none configured")
    b = t.backlog or {}
    lines += [
        "",
        f"Backlog now: {b.get('total', 0)} pending (alarm {b.get('alarm', 0)}, warning"
        f" {b.get('warning', 0)}, info {b.get('info', 0)}, telemetry {b.get('telemetry', 0)})"
        + (f", oldest {_age(b['oldest_age_s'])} old" if b.get("oldest_age_s") is not None else ""),
    ]
    return "\n".join(lines) + "\n"


def arc_line(arc: dict[str, Any]) -> str:
    """Alarms to the Alarm Receiving Centre: acknowledged (latency event -> the receiver's
    ACK), still pending, refused (no receiver understood them)."""
    lat = arc.get("latency_ms") or {}
    parts = [f"{arc.get('acked', 0)} acknowledged by the ARC"]
    if lat.get("count"):
        parts.append(f"latency median {_num(lat.get('median'))} ms, p95 {_num(lat.get('p95'))}"
                     f" ms, max {_num(lat.get('max'))} ms")
    if arc.get("latency_unknown"):
        parts.append(f"latency unknown for {arc['latency_unknown']}: sent again after a restart")
    if arc.get("pending"):
        parts.append(f"{arc['pending']} not yet acknowledged")
    if arc.get("refused"):
        parts.append(f"{arc['refused']} refused (DUH)")
    return "; ".join(parts)


def delivery_line(t: Summary) -> str:
    """What is known about alarm delivery, and what is not (and why)."""
    lat = t.latency
    if not t.alarms:
        return "no alarms in the period"
    parts = [f"{t.delivered_alarms} delivered"]
    if lat.count:
        parts.append(f"latency median {_num(lat.median_ms)} ms, p95 {_num(lat.p95_ms)} ms,"
                     f" max {_num(lat.max_ms)} ms over {lat.count} alarm(s)")
    for reason, n in sorted(t.latency_unknown.items()):
        parts.append(f"latency unknown for {n}: {reason} when stamped")
    if t.undelivered_alarms:
        parts.append(f"{t.undelivered_alarms} not yet delivered")
    return "; ".join(parts)


def _local(wall: float, timezone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(wall, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
