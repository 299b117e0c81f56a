"""The shipped model: manifest and sha256 checks, both interpreter packages, the fallback."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelError
from agent.fall.config import FallConfig
from agent.fall.manifest import load_manifest, sha256_file
from agent.fall.signal import WINDOW_SAMPLES
from agent.fall.tflite_model import TfliteFallModel, interpreter_class, shipped_model_paths
from agent.model import Priority
from tests.unit.fall_helpers import Run, hold, recording

MODEL, MANIFEST = shipped_model_paths()
PACKAGES = [
    pytest.param(name, marks=pytest.mark.skipif(
        importlib.util.find_spec(name) is None, reason=f"{name} is not installed here"))
    for name in ("tflite_runtime", "ai_edge_litert")
]


def upright_window() -> np.ndarray:
    return np.tile(np.float32([0.0, -1.0, 0.0]), (WINDOW_SAMPLES, 1))


def test_shipped_model_matches_its_manifest_and_size_budget() -> None:
    m = load_manifest(MANIFEST)
    assert MODEL.stat().st_size <= 64 * 1024
    assert sha256_file(MODEL) == m.sha256
    assert m.input_shape == (1, WINDOW_SAMPLES, 3) and m.sample_rate_hz == 50.0
    raw = m.raw
    for key in ("cv", "data", "code", "decision_threshold", "window", "input", "output"):
        assert key in raw
    assert 0.0 < m.decision_threshold < 1.0


@pytest.mark.parametrize("package", PACKAGES)
def test_both_interpreter_packages_load_and_agree(package: str) -> None:
    model = TfliteFallModel(interpreter=package)
    assert model.interpreter_package == package
    other = TfliteFallModel(interpreter="auto")
    fall = recording("F01_R01")[:, :3].astype(np.float32) * 1e-3
    impact = int(np.argmax(np.linalg.norm(fall, axis=1)))
    window = fall[impact - 100:impact + 100]
    for w in (upright_window(), window):
        s = model.score(w)
        assert 0.0 <= s <= 1.0
        assert s == pytest.approx(other.score(w), abs=1 / 128)
    assert model.score(upright_window()) < model.threshold


def test_unknown_or_missing_interpreter_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="unknown interpreter"):
        interpreter_class("tensorflow")


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    shutil.copy(MODEL, tmp_path / "fall.tflite")
    shutil.copy(MANIFEST, tmp_path / "manifest.json")
    return tmp_path / "fall.tflite"


def test_sha256_mismatch_is_refused(model_copy: Path) -> None:
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        TfliteFallModel(model_copy)


def test_truncated_model_is_refused(model_copy: Path) -> None:
    model_copy.write_bytes(model_copy.read_bytes()[:1000])
    with pytest.raises(ModelError, match="truncated"):
        TfliteFallModel(model_copy)


def test_corrupt_model_with_a_matching_manifest_is_refused(model_copy: Path) -> None:
    """A manifest rewritten to match garbage still cannot make garbage run."""
    model_copy.write_bytes(b"\x00" * 4096)
    manifest = model_copy.with_name("manifest.json")
    doc = json.loads(manifest.read_text())
    doc.update(sha256=sha256_file(model_copy), size_bytes=4096)
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="cannot load|does not run"):
        TfliteFallModel(model_copy)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("sha256"), "lacks 'sha256'"),
    (lambda d: d["window"].update(samples=128), "windows at"),
    (lambda d: d.update(format=99), "format"),
    (lambda d: d.update(decision_threshold=1.5), "decision_threshold"),
])
def test_inconsistent_manifest_is_refused(model_copy: Path, mutate, message: str) -> None:
    manifest = model_copy.with_name("manifest.json")
    doc = json.loads(manifest.read_text())
    mutate(doc)
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=message):
        TfliteFallModel(model_copy)


def test_the_position_picks_its_threshold_and_a_broken_one_is_refused(model_copy: Path) -> None:
    manifest = model_copy.with_name("manifest.json")
    doc = json.loads(manifest.read_text())
    doc["positions"] = {"neck": {"decision_threshold": 0.3}, "waist": {"decision_threshold": 0.7}}
    manifest.write_text(json.dumps(doc))
    assert TfliteFallModel(model_copy, position="neck").threshold == 0.3
    assert TfliteFallModel(model_copy, position="waist").threshold == 0.7
    assert TfliteFallModel(model_copy, position="waist", threshold=0.5).threshold == 0.5
    with pytest.raises(ModelError, match="no threshold for position 'wrist'"):
        TfliteFallModel(model_copy, position="wrist")
    doc["positions"]["neck"] = {"decision_threshold": 1.2}
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="positions.neck.decision_threshold"):
        TfliteFallModel(model_copy, position="waist")
    # A model without per-position thresholds (trained before them) serves every position.
    doc.pop("positions")
    manifest.write_text(json.dumps(doc))
    assert TfliteFallModel(model_copy, position="neck").threshold == doc["decision_threshold"]


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="manifest not found"):
        TfliteFallModel(tmp_path / "fall.tflite")
    shutil.copy(MANIFEST, tmp_path / "manifest.json")
    with pytest.raises(ModelError, match="model file not found"):
        TfliteFallModel(tmp_path / "fall.tflite")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        TfliteFallModel(tmp_path / "fall.tflite")


def _run(cfg: FallConfig, code: str) -> Run:
    async def main() -> Run:
        r = Run(cfg)
        await r.start()
        await r.play("wear-1", hold(recording(code), 25))
        await r.wait(5)
        await r.stop()
        return r
    return asyncio.run(main())


def test_truncated_model_falls_back_to_the_threshold_detector_and_says_so(model_copy: Path) -> None:
    model_copy.write_bytes(model_copy.read_bytes()[:-10])
    r = _run(FallConfig(model_path=str(model_copy), confirm_s=5.0), "F01_R01")
    warn = r.events("model_unavailable")
    assert len(warn) == 1 and warn[0].priority == Priority.WARNING
    assert "truncated" in warn[0].data["reason"]
    assert warn[0].data["fallback"].startswith("bourke2007")
    # Still detecting: the synthetic fall's 4 g impact passes the 3.52 g threshold.
    falls = r.events("fall")
    assert len(falls) == 1 and falls[0].data["detector"] == "baseline"


def test_shipped_model_detects_a_fall_through_the_runtime() -> None:
    r = _run(FallConfig(confirm_s=5.0), "F01_R01")
    assert r.events("model_unavailable") == []
    falls = r.events("fall")
    assert len(falls) == 1
    d = falls[0].data
    # at the neck (the default) the shipped pair: "<shipped>|<neck-only>"
    assert d["detector"] == "model"
    assert d["model_version"].split("|")[0] == load_manifest(MANIFEST).version
    assert d["score"] >= d["threshold"]
    assert [m["role"] for m in d["models"]] == ["shipped", "second"]
    assert any(m["passed"] for m in d["models"])


@pytest.mark.parametrize("code", ["D19_R01", "D07_R01"])
def test_shipped_model_raises_nothing_for_daily_activities(code: str) -> None:
    r = _run(FallConfig(confirm_s=5.0), code)
    assert r.events("fall") == [] and r.events("model_unavailable") == []


def test_an_unexpected_loader_failure_also_falls_back() -> None:
    def broken(_cfg: FallConfig):
        raise RuntimeError("interpreter ABI mismatch")

    async def main() -> Run:
        r = Run(FallConfig(confirm_s=5.0), model_loader=broken)
        await r.start()
        await r.play("wear-1", hold(recording("F01_R01"), 25))
        await r.wait(5)
        await r.stop()
        return r

    r = asyncio.run(main())
    assert "ABI mismatch" in r.events("model_unavailable")[0].data["reason"]
    assert len(r.events("fall")) == 1
