"""The systemd unit's sandbox: what it must contain, its exposure score, and that what it
forbids (W+X memory) does not break the fall model."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "tec-agent.service"


def test_unit_has_the_sandbox_directives() -> None:
    lines = set(UNIT.read_text().splitlines())
    for line in ("SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes",
                 "ProtectProc=invisible", "DevicePolicy=closed", "DeviceAllow=char-gpiochip rw",
                 "DeviceAllow=/dev/gpiomem rw", "DeviceAllow=char-ttyUSB rw",
                 "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyAMA rw",
                 "ConfigurationDirectoryMode=1770"):
        assert line in lines, line
    families = next(x for x in lines if x.startswith("RestrictAddressFamilies="))
    assert "AF_UNIX" in families and "AF_BLUETOOTH" in families   # BlueZ D-Bus, recovery


def test_exposure_score_is_low() -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed")
    res = subprocess.run([exe, "security", "--offline=yes", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for tec-agent\.service: (\d+\.\d+)", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr
    assert float(m.group(1)) <= 2.5, res.stdout   # 3.9 before the sandbox was tightened


MDWE_PROBE = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:          # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("unsupported"); sys.exit(0)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("not enforced"); sys.exit(0)
except OSError:
    pass
import numpy as np
from agent.fall.tflite_model import TfliteFallModel
w = (np.random.default_rng(1).normal(0, 0.05, (200, 3)) + [0, 0, 1]).astype(np.float32)
scores = [TfliteFallModel(interpreter=p).score(w) for p in ("ai_edge_litert", "auto")]
assert all(0.0 <= s <= 1.0 for s in scores), scores
print("ok")
"""


def test_fall_model_runs_without_writable_executable_memory() -> None:
    """MemoryDenyWriteExecute=yes, checked with the kernel's own W^X switch (Linux 6.3+),
    since the tests do not run under systemd: a JIT in the interpreter would fail here."""
    res = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    if res.stdout.strip() in ("unsupported", "not enforced"):
        pytest.skip(f"this kernel has no usable PR_SET_MDWE ({res.stdout.strip()})")
    assert res.stdout.strip().endswith("ok"), res.stdout + res.stderr
