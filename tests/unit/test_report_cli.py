"""``tec-agent report``: table, --json and --html from a recorded week in a real store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.cli import main
from tests.unit.report_helpers import DAYS, HUB, write_config, write_week


@pytest.fixture
def config(tmp_path: Path) -> Path:
    week = write_week(tmp_path / "events.db")
    return write_config(tmp_path, week.store_path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table(config: Path, capsys) -> None:
    code, out, _ = run(capsys, "--config", str(config), "--days", "7", "--until", "2025-03-30")
    assert code == 0
    assert f"hub {HUB}: 7 day(s) 2025-03-24..2025-03-30 (Europe/London)" in out
    rows = {line.split()[0]: line.split()
            for line in out.splitlines() if line[:4] in ("2025", "Tota")}
    assert rows["2025-03-26"][1:4] == ["2", "0", "1"]        # alarms, cancelled, falls
    assert rows["Total"][1:6] == ["14", "3", "1", "1", "1"]
    assert "150.0 (6 of 7 days)" in out
    assert re.search(r"Alarms by type:\s+pull_cord 8, pendant 4, fall 1, inactivity 1", out)
    assert re.search(r"Falls:\s+1 raised, 1 cancelled by the wearer, 1 recovered without help",
                     out)
    assert ("13 delivered; latency median 90 ms, p95 200 ms, max 200 ms over 12 alarm(s);"
            " latency unknown for 1: clock not synchronised when stamped; 1 not yet delivered"
            ) in out
    assert re.search(r"pendant-1\s+-\s+98\.2%\s+180\.0\s+1\s+18% LOW\s+-70 dBm", out)
    assert ("Backlog now: 8 pending (alarm 1, warning 0, info 0, telemetry 7),"
            " oldest 6.5 days") in out
    assert "! some events were stamped before the hub's clock was synchronised" in out


def test_json(config: Path, capsys) -> None:
    code, out, _ = run(capsys, "--config", str(config), "--days", "3", "--until", "2025-03-30",
                       "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["hub_id"] == HUB
    assert [d["date"] for d in doc["days"]] == [d.isoformat() for d in DAYS[4:]]
    assert [d["alarms_total"] for d in doc["days"]] == [1, 2, 4]
    assert doc["total"]["alarms_total"] == 7
    assert doc["total"]["offline_minutes"] == 90.0   # days 4 and 5 known: 40 + 50


def test_html_is_self_contained(config: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "report.html"
    code, out, _ = run(capsys, "--config", str(config), "--until", "2025-03-30", "--html",
                       str(target))
    assert code == 0 and "wrote" in out
    html = target.read_text()
    assert html.count("<svg") >= 6
    assert "Telecare hub report: hub-report" in html
    # No fetches: the only URL is the SVG namespace.
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(script|link|img|iframe)\b", html)


def test_bad_arguments_and_missing_store(tmp_path: Path, config: Path, capsys) -> None:
    assert run(capsys, "--config", str(config), "--days", "0")[0] == 2
    code, _, err = run(capsys, "--config", str(config), "--until", "30/03/2025")
    assert code == 2 and "--until" in err
    (tmp_path / "other").mkdir()
    missing = write_config(tmp_path / "other", tmp_path / "nowhere" / "events.db")
    code, _, err = run(capsys, "--config", str(missing))
    assert code == 1 and "no event store" in err
    # A fresh install: the store appears at the agent's first start; say so.
    assert f"has it run with {missing}?" in err
    assert main(["status", "--config", str(missing)]) == 1
    assert f"has it run with {missing}?" in capsys.readouterr().err
    code, out, _ = run(capsys, "--config", str(tmp_path / "absent.toml"))
    assert code == 2 and "file not found" in out
