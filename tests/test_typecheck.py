"""agent/ and drivers/ pass mypy with the configuration in pyproject.toml: default mode
everywhere, strict flags on the ports, the value types, the store and the uplink."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: it is a dev dependency (pip install -e '.[dev]',"
                    " or run ./scripts/setup.sh --test)")
    # The files to check come from [tool.mypy] files; no cache so a stale one cannot hide
    # an error (a full run takes ~10 s).
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                           "--cache-dir", "/dev/null"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}{proc.stderr}"
