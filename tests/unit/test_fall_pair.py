"""Issue 15: the "either" pair at the neck (agent.fall.pair): the shipped model and the
neck-only model, each against its own threshold; the second model checked against the
shipped manifest's sha256; a missing or damaged second model said clearly (load, check-config)
and the shipped model alone used; the waist unaffected."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.fall.config import FallConfig
from agent.fall.manifest import load_manifest, sha256_file
from agent.fall.pair import (
    PAIR_THRESHOLD,
    PairScorer,
    calibrated,
    load_model,
    models_summary,
    second_model_entry,
    second_model_problem,
)
from agent.fall.signal import WINDOW_SAMPLES
from agent.fall.tflite_model import TfliteFallModel, shipped_model_paths

MODEL, MANIFEST = shipped_model_paths()
HEAD = 'hub_id = "hub-1"\n[store]\npath = "{store}"\n'


def _copy_models(tmp_path: Path) -> Path:
    """The shipped model files in a directory of their own (to damage them)."""
    out = tmp_path / "m"
    out.mkdir()
    for name in ("fall.tflite", "manifest.json", "fall-neck.tflite", "manifest-neck.json"):
        shutil.copy(MODEL.with_name(name), out / name)
    return out


def test_the_shipped_manifest_names_a_checked_second_model_at_the_neck_only() -> None:
    doc = json.loads(MANIFEST.read_text())
    assert "second_model" not in doc["positions"]["waist"]
    entry = doc["positions"]["neck"]["second_model"]
    path = MODEL.with_name(entry["file"])
    assert sha256_file(path) == entry["sha256"]
    assert path.stat().st_size == entry["size_bytes"] <= 64 * 1024
    assert entry["trained_on"] == ["fallalld:neck"] and entry["validated_on"]
    own = load_manifest(MODEL.with_name(entry["manifest"]))
    assert (own.sha256, own.size_bytes) == (entry["sha256"], entry["size_bytes"])
    assert own.input_shape == (1, WINDOW_SAMPLES, 3) and own.raw["input"]["dtype"] == "int8"
    assert own.threshold_for("neck") == entry["decision_threshold"]


def test_the_shipped_pair_loads_at_the_neck_and_the_waist_keeps_one_model() -> None:
    neck = load_model(FallConfig(position="neck"))
    assert isinstance(neck, PairScorer) and neck.second is not None and neck.error is None
    assert neck.threshold == PAIR_THRESHOLD and "|" in neck.version
    waist = load_model(FallConfig(position="waist"))
    assert isinstance(waist, TfliteFallModel)
    assert waist.threshold == load_manifest(MANIFEST).threshold_for("waist")


@pytest.mark.parametrize("a, b, detected", [(0.6, 0.1, True), (0.1, 0.3, True),
                                            (0.49, 0.19, False), (0.5, 0.2, True),
                                            (0.0, 0.0, False), (1.0, 1.0, True)])
def test_the_pair_detects_when_either_model_reaches_its_own_threshold(
        a: float, b: float, detected: bool) -> None:
    class Fixed:
        manifest, model_path, interpreter_package = None, None, "fixed"

        def __init__(self, score: float, threshold: float, version: str) -> None:
            self.value, self.threshold, self.version = score, threshold, version

        def score(self, window: np.ndarray) -> float:
            return self.value

    pair = PairScorer(Fixed(a, 0.5, "one"), Fixed(b, 0.2, "two"))  # type: ignore[arg-type]
    got, parts = pair.score_models(np.zeros((WINDOW_SAMPLES, 3), np.float32))
    assert (got >= pair.threshold) is detected and 0.0 <= got <= 1.0
    assert [p.passed for p in parts] == [a >= 0.5, b >= 0.2]
    assert [p.to_dict()["model_version"] for p in parts] == ["one", "two"]
    assert calibrated(0.2, 0.2) == 0.5 and calibrated(0.0, 0.3) == 0.0
    assert calibrated(1.0, 0.3) == 1.0


@pytest.mark.parametrize("damage, words", [
    ("missing", "model file not found"),
    ("flipped", "sha256"),
    ("manifest", "the shipped manifest's second model"),
])
def test_a_missing_or_damaged_second_model_is_said_and_the_shipped_model_runs_alone(
        tmp_path: Path, damage: str, words: str) -> None:
    d = _copy_models(tmp_path)
    second = d / "fall-neck.tflite"
    if damage == "missing":
        second.unlink()
    elif damage == "flipped":
        data = bytearray(second.read_bytes())
        data[len(data) // 2] ^= 0xFF
        second.write_bytes(bytes(data))
    else:  # the second model's own manifest names another model (replaced files)
        own = json.loads((d / "manifest-neck.json").read_text())
        own["sha256"] = "0" * 64
        (d / "manifest-neck.json").write_text(json.dumps(own))
    cfg = FallConfig(position="neck", model_path=str(d / "fall.tflite"))
    problem = second_model_problem(cfg)
    assert problem is not None and words in problem
    scorer = load_model(cfg)
    assert isinstance(scorer, PairScorer) and scorer.second is None
    assert scorer.error is not None and words in scorer.error
    alone = TfliteFallModel(d / "fall.tflite", position="neck")
    assert (scorer.threshold, scorer.version) == (alone.threshold, alone.version)
    window = np.tile(np.array([0.0, -1.0, 0.0], np.float32), (WINDOW_SAMPLES, 1))
    window[95:105] *= 4.0
    assert scorer.score(window) == alone.score(window)
    # the waist has no second model: nothing to say there
    assert second_model_problem(replace(cfg, position="waist")) is None


def test_a_second_model_entry_without_its_fields_is_an_error(tmp_path: Path) -> None:
    d = _copy_models(tmp_path)
    doc = json.loads((d / "manifest.json").read_text())
    del doc["positions"]["neck"]["second_model"]["sha256"]
    (d / "manifest.json").write_text(json.dumps(doc))
    assert second_model_entry(d / "manifest.json", "waist") is None
    cfg = FallConfig(position="neck", model_path=str(d / "fall.tflite"))
    assert "malformed" in (second_model_problem(cfg) or "")
    scorer = load_model(cfg)
    assert isinstance(scorer, PairScorer) and scorer.second is None


def test_check_config_warns_when_the_second_model_cannot_be_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy_models(tmp_path)
    path = tmp_path / "hub.toml"
    body = (HEAD.format(store=tmp_path / "events.db") + '[fall]\nwearables = ["pendant-1"]\n'
            f'model_path = "{d / "fall.tflite"}"\n')
    path.write_text(body)
    assert main(["check-config", str(path)]) == 0
    assert "second fall model" not in capsys.readouterr().out
    (d / "fall-neck.tflite").unlink()
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: fall.position: the second fall model at the neck cannot be used" in out
    assert "model file not found" in out and "shipped model alone" in out
    path.write_text(body + 'position = "waist"\n')
    assert main(["check-config", str(path)]) == 0
    assert "second fall model" not in capsys.readouterr().out


def test_second_model_false_runs_the_shipped_model_alone_and_check_config_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``[fall] second_model = false``: the operator's choice, not a fault. The first model
    loads alone (no PairScorer, no error, even with the second file missing) and
    ``check-config`` names the model(s) that would score, without a warning."""
    d = _copy_models(tmp_path)
    cfg = FallConfig(model_path=str(d / "fall.tflite"), position="neck", second_model=False)
    (d / "fall-neck.tflite").unlink()
    scorer = load_model(cfg)
    assert isinstance(scorer, TfliteFallModel) and not isinstance(scorer, PairScorer)
    assert second_model_problem(cfg) is None
    assert "alone (second_model = false" in models_summary(cfg)
    path = tmp_path / "hub.toml"
    body = (HEAD.format(store=tmp_path / "events.db") + '[fall]\nwearables = ["pendant-1"]\n')
    for extra, line in [
            ("", "fall:    position neck, model fall.tflite + fall-neck.tflite (either"),
            ("second_model = false\n", "fall:    position neck, model fall.tflite alone "
                                       "(second_model = false: fall-neck.tflite is not run"),
            ('position = "waist"\n', "fall:    position waist, model fall.tflite\n"),
            ('position = "waist"\nsecond_model = false\n',
             "fall:    position waist, model fall.tflite\n")]:
        path.write_text(body + extra)
        assert main(["check-config", str(path)]) == 0
        out = capsys.readouterr().out
        assert line in out, out
        assert "warning" not in out, out
    # no wearable: no detector, no fall line
    path.write_text(HEAD.format(store=tmp_path / "events.db"))
    assert main(["check-config", str(path)]) == 0
    assert "fall:" not in capsys.readouterr().out


def test_train_second_model_registers_the_file_in_the_shipped_manifest(tmp_path: Path) -> None:
    """``train --second-model neck`` names its model in ``positions.neck.second_model`` of
    the shipped manifest with the sha256 the runtime checks (training itself is not run in
    CI: the registration step on the shipped neck-only manifest)."""
    from models.fall.export import register_second_model, second_model_files

    d = _copy_models(tmp_path)
    doc = json.loads((d / "manifest.json").read_text())
    del doc["positions"]["neck"]["second_model"]
    (d / "manifest.json").write_text(json.dumps(doc))
    assert second_model_entry(d / "manifest.json", "neck") is None
    own = json.loads((d / "manifest-neck.json").read_text())
    register_second_model(d / "manifest.json", "neck", own)
    assert second_model_files("neck") == ("fall-neck.tflite", "manifest-neck.json")
    spec = second_model_entry(d / "manifest.json", "neck")
    assert spec is not None and spec.sha256 == sha256_file(d / "fall-neck.tflite")
    assert second_model_problem(FallConfig(model_path=str(d / "fall.tflite"))) is None
    entry = json.loads((d / "manifest.json").read_text())["positions"]["neck"]["second_model"]
    assert entry["decision_threshold"] == own["positions"]["neck"]["decision_threshold"]
    assert entry["trained_on"] == ["fallalld:neck"]
