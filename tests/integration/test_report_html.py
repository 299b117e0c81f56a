"""The HTML report renders in a real browser: headless Chromium takes a screenshot (not
blank, charts drawn in colour) and dumps the DOM after parsing (figures and charts there).

Needs the Debian package ``chromium`` (scripts/setup.sh installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli import main
from tests.unit.report_helpers import HUB, write_config, write_week

PIL = pytest.importorskip("PIL.Image", reason="Pillow (dev extra) reads the screenshot")

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install chromium; scripts/setup.sh does)")


def browse(html: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, html.as_uri()],
        capture_output=True, timeout=60, check=True,
    )


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    week = write_week(tmp / "events.db")
    config = write_config(tmp, week.store_path)
    target = tmp / "report.html"
    assert main(["report", "--config", str(config), "--days", "7", "--until", "2025-03-30",
                 "--html", str(target)]) == 0
    return target


def test_screenshot_shows_the_report(report_html: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    browse(report_html, tmp_path, f"--screenshot={shot}", "--window-size=1000,1800",
           "--hide-scrollbars")
    image = PIL.open(shot).convert("RGB")
    assert image.size == (1000, 1800)
    colours = image.getcolors(maxcolors=1 << 24)   # [(count, (r, g, b)), ...]
    assert colours is not None
    total = sum(n for n, _ in colours)
    non_white = sum(n for n, (r, g, b) in colours if min(r, g, b) < 235)
    assert non_white / total > 0.03, "the page is (nearly) blank"

    def count_near(target: tuple[int, int, int]) -> int:
        return sum(n for n, rgb in colours
                   if sum(abs(a - b) for a, b in zip(rgb, target, strict=True)) < 40)

    # The charts' bars are on screen in their colours (pull_cord red, pendant blue).
    assert count_near((0xC0, 0x39, 0x2B)) > 500
    assert count_near((0x2E, 0x86, 0xC1)) > 500


def test_dom_holds_the_figures_and_the_charts(report_html: Path, tmp_path: Path) -> None:
    dom = browse(report_html, tmp_path, "--dump-dom").stdout.decode()
    assert f"Telecare hub report: {HUB}" in dom
    assert dom.count("<svg") >= 6
    assert "Alarms per day, by type" in dom
    assert "Median alarm delivery latency per day" in dom
    assert "Device uptime over the period" in dom
    assert "<title>03-30 pendant: 2</title>" in dom    # a bar's tooltip
    assert "pendant-1" in dom and "18% LOW" in dom
    assert "2025-03-30*" not in dom                          # a finished day, not partial
