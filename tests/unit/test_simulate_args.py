"""`simulate --scenario soak` takes --count and --rate as given or refuses them: --rate 0
ran at the default 200 per second and --count -1 as 0, both without a word."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--rate", "0", "--rate must be greater than 0"),
    ("--rate", "-5", "--rate must be greater than 0"),
    ("--count", "-1", "--count must be 0 or more"),
])
def test_soak_refuses_a_count_or_rate_it_would_not_honour(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        flag: str, value: str, said: str) -> None:
    monkeypatch.chdir(tmp_path)          # the embedded simulated home's store: ./.tec-agent/
    assert main(["simulate", "--scenario", "soak", flag, value, "--timeout", "1"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / ".tec-agent").exists()     # refused before anything started
