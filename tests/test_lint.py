"""The whole repository passes ``ruff check`` with the configuration in pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean() -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff is not installed: it is a dev dependency (pip install -e '.[dev]',"
                    " or run ./scripts/setup.sh --test)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}{proc.stderr}"
