"""Issue 15: where the wearable is worn is configuration, and eval-fall works on any data set
in the recordings' format (long trial keys, three-digit codes, a subject without walking,
one JSON line per trial, no matplotlib)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.config import parse_config_text
from agent.errors import ConfigError
from agent.fall.dataset import load_trials
from agent.fall.manifest import load_manifest
from agent.fall.tflite_model import shipped_model_paths
from tests.unit.fall_helpers import FIXTURES

HEAD = 'hub_id = "hub-1"\n[store]\npath = "{store}"\n'


def test_position_defaults_to_neck_and_takes_the_manifest_threshold_for_it() -> None:
    assert parse_config_text('hub_id = "h"\n').fall.position == "neck"
    cfg = parse_config_text('hub_id = "h"\n[fall]\nposition = "waist"\n')
    assert cfg.fall.position == "waist"
    manifest = load_manifest(shipped_model_paths()[1])
    assert set(manifest.raw["positions"]) == {"neck", "waist"}
    for position in ("neck", "waist"):
        assert manifest.threshold_for(position) == \
            manifest.raw["positions"][position]["decision_threshold"]


@pytest.mark.parametrize("position, message", [
    ("wrist", "fall.position: 'wrist' is not supported: no recordings at the wrist"),
    ("ankle", "fall.position: expected one of neck, waist, wrist"),
])
def test_check_config_rejects_a_bad_position(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             position: str, message: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(HEAD.format(store=tmp_path / "events.db")
                    + f'[fall]\nposition = "{position}"\n')
    assert main(["check-config", str(path)]) == 2
    assert message in capsys.readouterr().out
    with pytest.raises(ConfigError):
        parse_config_text(f'hub_id = "h"\n[fall]\nposition = "{position}"\n')


def _long_key_data(tmp_path: Path) -> Path:
    """Subject LK01: the synthetic trials under three-digit codes and repeats beyond R99,
    and no walking trial (D01/D02) to learn the wearable's upright from."""
    data = tmp_path / "data"
    data.mkdir()
    with np.load(FIXTURES / "SYN01.npz") as z:
        np.savez(data / "LK01.npz", F101_R100=z["F01_R01"], D119_R123=z["D19_R01"],
                 D07_R01=z["D07_R01"])
    return data


def test_eval_fall_on_long_keys_and_a_subject_without_walking(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _long_key_data(tmp_path)
    assert {t.code for t in load_trials(data)} == {"F101_R100", "D119_R123", "D07_R01"}
    lines = tmp_path / "trials.jsonl"
    assert main(["eval-fall", "--data", str(data), "--position", "waist",
                 "--trials-out", str(lines)]) == 0
    cap = capsys.readouterr()
    assert "warning: LK01 has no walking trial (D01/D02)" in cap.err
    out = json.loads(cap.out)
    assert out["unprimed_subjects"] == ["LK01"] and out["settings"]["position"] == "waist"
    assert (out["trials"], out["falls"], out["adls"]) == (3, 1, 2)
    assert out["sensitivity"] == 1.0 and out["specificity"] == 1.0
    # One line per trial, parseable, agreeing with the summary's counts.
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(rows) == out["trials"]
    assert {"subject", "trial", "label", "outcome", "score", "peak_g", "reason"} <= set(rows[0])
    assert {r["trial"] for r in rows} == {"F101_R100", "D119_R123", "D07_R01"}
    assert sum(r["label"] == "fall" for r in rows) == out["falls"]
    assert sum(r["label"] == "fall" and r["outcome"] == "alarm" for r in rows) == out["tp"]
    assert sum(r["label"] == "adl" and r["outcome"] == "alarm" for r in rows) == out["fp"]
    for outcome, n in out["outcomes"].items():
        assert sum(r["outcome"] == outcome for r in rows) == n
    fall = next(r for r in rows if r["label"] == "fall")
    assert fall["outcome"] == "alarm" and fall["reason"] in ("lying", "slumped_still")
    assert all(r["reason"] for r in rows)


def test_eval_fall_rejects_the_wrist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-fall", "--data", str(FIXTURES), "--position", "wrist"]) == 2
    assert "'wrist' is not supported" in capsys.readouterr().err


def test_eval_fall_help_says_the_wrist_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--position keeps accepting the word (the issue's contract: neck|waist|wrist) while
    the usage line offers what runs, so the help must say that wrist is refused before a
    user tries it."""
    with pytest.raises(SystemExit) as exit_:
        main(["eval-fall", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--position {neck,waist}" in text
    assert "wrist: not supported (no wrist recordings back a model or posture rules)" in text


def test_plot_without_matplotlib_says_so_and_still_prints_the_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes ``import matplotlib`` fail as if it were not installed.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["eval-fall", "--data", str(FIXTURES), "--plot", str(tmp_path / "png")]) == 0
    cap = capsys.readouterr()
    assert "--plot needs matplotlib, which is not installed" in cap.err
    # tec-agent is not on PyPI: 'pip install tec-agent[plot]' finds no distribution.
    assert "pip install -e '.[plot]'" in cap.err and "tec-agent[plot]" not in cap.err
    out = json.loads(cap.out)
    assert out["plots"] == [] and out["trials"] == 3
    assert not (tmp_path / "png").exists()
