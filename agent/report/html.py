"""The report as one self-contained HTML file with inline SVG charts, for a support visit.

Nothing is fetched: no scripts, fonts, images or stylesheets from elsewhere, so it opens
offline, prints, and can be attached to a case record as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from agent.model import iso_utc
from agent.report.build import Report
from agent.report.summary import Summary
from agent.report.svg import bar_chart, hbar_chart
from agent.report.text import arc_line, delivery_line

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#555;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px 12px;min-width:120px}
.card .v{font-size:22px;font-weight:bold}.card .k{color:#555;font-size:12px}
.card.bad .v{color:#c0392b}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}
th:first-child,td:first-child,td.l,th.l{text-align:left}
.note{color:#666;font-size:12px}.chart{display:block;margin:8px 0;max-width:100%;height:auto}
@media print{body{margin:0}.chart{break-inside:avoid}}
"""


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "&ndash;" if value is None else escape(fmt.format(value))


def _card(label: str, value: str, bad: bool = False) -> str:
    return (f'<div class="card{" bad" if bad else ""}"><div class="v">{value}</div>'
            f'<div class="k">{escape(label)}</div></div>')


def _types(days: Sequence[Summary], attr: str) -> list[str]:
    seen: dict[str, int] = {}
    for d in days:
        for k, v in getattr(d, attr).items():
            seen[k] = seen.get(k, 0) + v
    return [k for k, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))]


def _counts(counts: Mapping[str, int]) -> str:
    return escape(", ".join(f"{k} {v}" for k, v in sorted(counts.items()))) or "none"


def render_html(report: Report) -> str:
    t = report.total
    days = report.days
    cats = [d.label[5:] if len(d.label) == 10 else d.label for d in days]   # MM-DD
    alarm_types = _types(days, "alarms_by_type")
    alarms_chart = bar_chart(
        cats, [(k, [float(d.alarms_by_type.get(k, 0)) for d in days]) for k in alarm_types]
        or [("", [0.0] * len(days))],
        title="Alarms per day, by type", integer=True,
    )
    cancel_chart = bar_chart(
        cats, [("cancelled", [float(d.cancelled_alarms) for d in days]),
               ("inactivity alerts", [float(d.inactivity_alerts) for d in days]),
               ("falls", [float(d.falls) for d in days])],
        title="Cancelled alarms, inactivity alerts and falls per day", stacked=False, integer=True,
    )
    arc = (f"<br>\nARC delivery: {escape(arc_line(report.arc))}."
           if report.arc is not None else "")
    unknown = sum(t.latency_unknown.values())
    latency_chart = bar_chart(
        cats, [("median", [d.latency.median_ms or 0.0 for d in days])],
        title="Median alarm delivery latency per day (hub to broker acknowledgement)", unit=" ms",
        # Alarms delivered with their latency unknown (clock not synchronised when stamped)
        # are not "none": the text under the chart says how many and why.
        empty=(f"latency unknown for {unknown} delivered alarm{'s' if unknown != 1 else ''}"
               if unknown else "none in this period"),
    )
    offline_chart = bar_chart(
        cats, [("offline", [d.offline_minutes or 0.0 for d in days])],
        title="Minutes the hub was not connected to the platform, per day", unit=" min",
    )
    uptime_chart = hbar_chart([(d.device_id, d.uptime_pct) for d in t.devices],
                              title="Device uptime over the period", warn_below=99.0)
    battery_chart = hbar_chart(
        [(d.device_id, d.battery_pct) for d in t.devices if d.battery_pct is not None
         or d.kind in ("bthome", "wearable")],
        title="Battery (last reported)", warn_below=25.0,
    )
    lat = t.latency
    backlog = t.backlog or {}
    offline_total = _num(t.offline_minutes, "{:.0f}")
    if t.offline_minutes is not None and report.offline_days_known < len(days):
        offline_total += f" <small>({report.offline_days_known}/{len(days)} days)</small>"
    cards = "".join([
        _card("alarms", str(t.alarms)),
        _card("cancelled alarms", str(t.cancelled_alarms)),
        _card("falls", str(t.falls)),
        _card("inactivity alerts", str(t.inactivity_alerts)),
        _card("median alarm delivery", _num(lat.median_ms, "{:.0f} ms")),
        _card("alarms delivered", str(t.delivered_alarms)),
        _card("alarms not yet delivered", str(t.undelivered_alarms), t.undelivered_alarms > 0),
        _card("offline minutes", offline_total),
        _card("backlog now", str(backlog.get("total", 0)), bool(backlog.get("alarm"))),
    ])
    day_rows = "".join(
        f"<tr><td>{escape(d.label)}{'*' if d.partial else ''}</td><td>{d.alarms}</td>"
        f"<td>{d.cancelled_alarms}</td><td>{d.falls}</td><td>{d.inactivity_alerts}</td>"
        f"<td>{d.test_alarms}</td><td>{_num(d.latency.median_ms, '{:.0f} ms')}</td>"
        f"<td>{d.undelivered_alarms}</td><td>{_num(d.offline_minutes, '{:.1f}')}</td>"
        f'<td class="l">{_counts(d.alarms_by_type)}</td></tr>'
        for d in days
    )
    dev_rows = "".join(
        f'<tr><td>{escape(d.device_id)}</td><td class="l">{escape(d.kind or "-")}</td>'
        f"<td>{_num(d.uptime_pct, '{:.1f}%')}</td><td>{_num(d.offline_minutes, '{:.1f}')}</td>"
        f"<td>{d.offline_events}</td><td>{_num(d.battery_pct, '{:.0f}%')}"
        f"{' LOW' if d.battery_low else ''}</td><td>{_num(d.rssi, '{} dBm')}</td></tr>"
        for d in t.devices
    ) or '<tr><td colspan="7">no devices configured</td></tr>'
    notes = []
    if any(d.partial for d in days):
        notes.append("* day in progress.")
    notes.append("Offline minutes come from the daily summary event the hub stored for each day.")
    if not t.clock_synced:
        notes.append("Some events were stamped before the hub's clock was synchronised.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tec-agent report: {escape(report.hub_id)} {escape(t.label)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Telecare hub report: {escape(report.hub_id)}</h1>
<div class="meta">{len(days)} day(s), {escape(t.label)} ({escape(report.timezone)});
generated {escape(iso_utc(report.generated))}</div>
<div class="cards">{cards}</div>
<h2>Alarms</h2>
{alarms_chart}
{cancel_chart}
<p>Alarms by type: {_counts(t.alarms_by_type)}.<br>
Cancelled: {_counts(t.cancelled_by_type)}. Falls cancelled by the wearer: {t.falls_cancelled}.
Falls the wearer got up from without help (warnings): {t.falls_recovered}.<br>
Inactivity alerts: {_counts(t.inactivity_by_type)}; pre-warnings: {t.inactivity_prewarnings}.
Test alarms: {t.test_alarms}. Warnings: {_counts(t.warnings_by_type)}.</p>
<h2>Delivery</h2>
{latency_chart}
<p>Alarm delivery over the period: {escape(delivery_line(t))}.{arc}
Backlog now: {backlog.get('total', 0)} events (alarm {backlog.get('alarm', 0)},
warning {backlog.get('warning', 0)}, info {backlog.get('info', 0)},
telemetry {backlog.get('telemetry', 0)}).</p>
{offline_chart}
<h2>Devices</h2>
{uptime_chart}
{battery_chart}
<table><thead><tr><th>Device</th><th class="l">Kind</th><th>Uptime</th><th>Offline min</th>
<th>Went offline</th><th>Battery</th><th>Signal</th></tr></thead><tbody>{dev_rows}</tbody></table>
<h2>Day by day</h2>
<table><thead><tr><th>Day</th><th>Alarms</th><th>Cancelled</th><th>Falls</th>
<th>Inactivity</th><th>Tests</th><th>Latency p50</th><th>Undelivered</th><th>Offline min</th>
<th class="l">Alarms by type</th></tr></thead><tbody>{day_rows}</tbody></table>
<p class="note">{escape(" ".join(notes))}</p>
</body></html>
"""
