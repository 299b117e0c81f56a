"""``report`` says what is known and what is not (issue 17 item 7): alarms delivered while
the clock was not synchronised are counted as delivered with their latency unknown (not
"no delivered alarms"), and device uptime covers only the time the store has records for
(not 100 % for the days before the hub was installed)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path

from agent.app import Agent
from agent.cli import main
from agent.model import Event, Priority
from agent.store.lock import STORE_CREATED_META
from agent.store.sqlite_store import SqliteStore
from tests.harness import make_config
from tests.unit.report_helpers import TZ

HUB = "hub-known"


def _wall(day: int, hh: int, mm: int = 0) -> float:
    return datetime(2025, 6, day, hh, mm, tzinfo=TZ).timestamp()


def _write(tmp_path: Path) -> Path:
    store_path = tmp_path / "events.db"
    store = SqliteStore(store_path, HUB)
    store.open()
    try:
        # Installed on 5 June at 10:00 (first event); the report asks from 1 June.
        t = _wall(5, 10)
        for i in range(425):       # clock not synchronised yet when these were stamped
            (ev,) = store.append([Event(type="pull_cord", priority=Priority.ALARM,
                                        device_id="cord-bath", wall=t + i * 60,
                                        clock_synced=False)])
            assert ev.seq is not None
            store.ack([ev.seq], acked_wall=t + i * 60 + 0.1)
        # pir-hall offline 2 h on 6 June.
        for type_, when in (("device_offline", _wall(6, 8)), ("device_online", _wall(6, 10))):
            (ev,) = store.append([Event(type=type_, priority=Priority.WARNING,
                                        device_id="pir-hall", wall=when, clock_synced=True)])
            assert ev.seq is not None
            store.ack([ev.seq], acked_wall=when + 0.1)
    finally:
        store.close()
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'hub_id = "{HUB}"\n[store]\npath = "{store_path}"\n'
                   '[agent]\ntimezone = "Europe/London"\n'
                   '[[gpio.devices]]\nid = "cord-bath"\nkind = "pull_cord"\npin = 17\n'
                   '[[gpio.devices]]\nid = "pir-hall"\nkind = "pir"\npin = 4\n')
    return cfg


def test_report_counts_delivered_alarms_and_says_why_latency_is_unknown(
    tmp_path: Path, capsys
) -> None:
    cfg = _write(tmp_path)
    assert main(["report", "--config", str(cfg), "--days", "7", "--until", "2025-06-07"]) == 0
    out = capsys.readouterr().out
    assert "no delivered alarms" not in out
    assert ("Alarm delivery:      425 delivered; latency unknown for 425: clock not"
            " synchronised when stamped") in out

    assert main(["report", "--config", str(cfg), "--days", "7", "--until", "2025-06-07",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = doc["total"]
    assert total["delivered_alarms"] == 425
    assert total["alarm_latency_unknown"] == {"clock not synchronised": 425}
    assert total["alarm_latency_ms"]["count"] == 0

    # The HTML report's latency chart does not say "none" for 425 delivered alarms.
    html = tmp_path / "report.html"
    assert main(["report", "--config", str(cfg), "--days", "7", "--until", "2025-06-07",
                 "--html", str(html)]) == 0
    capsys.readouterr()
    page = html.read_text()
    chart = page[page.index("Median alarm delivery latency per day"):]
    chart = chart[:chart.index("</svg>")]
    assert "none in this period" not in chart
    assert "latency unknown for 425 delivered alarms" in chart


def test_axis_labels_keep_quarter_steps() -> None:
    from agent.report.svg import bar_chart

    svg = bar_chart(["d1"], [("median", [0.0])], title="t", unit=" ms")
    labels = re.findall(r'fill="#555">([^<]*)</text>', svg)
    assert labels == ["0 ms", "0.25 ms", "0.5 ms", "0.75 ms", "1 ms"]


def test_uptime_covers_only_the_time_the_store_has_records_for(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path)
    assert main(["report", "--config", str(cfg), "--days", "7", "--until", "2025-06-07",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    days = {d["date"]: d for d in doc["days"]}

    def uptime(day: dict, dev: str) -> float | None:
        return next(d for d in day["devices"] if d["device_id"] == dev)["uptime_pct"]

    # Before the store existed nothing is known: not "100 %".
    for date in ("2025-06-01", "2025-06-02", "2025-06-03", "2025-06-04"):
        assert uptime(days[date], "pir-hall") is None, date
    assert days["2025-06-05"]["records_from"] == "2025-06-05T09:00:00.000Z"
    assert uptime(days["2025-06-06"], "pir-hall") == round(100 * (1 - 120 / 1440), 2)
    # Over the week: 2 h offline out of the 62 h since the first record (5 June 10:00).
    known_min = (_wall(8, 0) - _wall(5, 10)) / 60
    assert uptime(doc["total"], "pir-hall") == round(100 * (1 - 120 / known_min), 2)

    assert main(["report", "--config", str(cfg), "--days", "7", "--until", "2025-06-07"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pir-hall\s+pir\s+96\.8%", out), out
    assert "Device uptime counts from 2025-06-05 10:00, when the store's records begin" in out


def test_the_agent_records_when_its_store_began(tmp_path: Path) -> None:
    config = make_config(tmp_path, None)

    async def start_stop() -> None:
        agent = Agent(config)
        await agent.start()
        await agent.stop()

    asyncio.run(start_stop())
    store = SqliteStore(config.store.path, config.hub_id)
    store.open()
    try:
        created = store.get_meta(STORE_CREATED_META)
    finally:
        store.close()
    assert created is not None and abs(float(created) - datetime.now().timestamp()) < 60
