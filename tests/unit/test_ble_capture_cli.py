"""`tec-agent ble capture` refuses a duration it cannot honour before touching the radio or
the output file, in the same 'error: ...' form as its other failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_capture_refuses_a_non_positive_duration(tmp_path: Path, seconds: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cap.jsonl"
    assert main(["ble", "capture", "--seconds", seconds, "--out", str(out)]) == 2
    assert "error: --seconds must be greater than 0" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("cap.jsonl.part").exists()
