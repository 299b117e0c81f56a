"""`--help` of the shell tools an installer or packager runs prints the usage comment at the
top of the script, and nothing of the script's code (build-deb and tec-agent-provision used
to end their help with `set -euo pipefail`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["packaging/build-deb",
           "packaging/pi-gen/stage-tec-agent/02-first-boot/files/tec-agent-provision",
           "bench/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_the_usage_text_only(script: str) -> None:
    res = subprocess.run(["bash", str(ROOT / script), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert any(Path(script).name + " [" in ln for ln in lines), lines  # the synopsis
    code = [ln for ln in lines if ln.startswith(("set ", "#!", "cd ", "HERE=", "ROOT="))]
    assert code == [], code
