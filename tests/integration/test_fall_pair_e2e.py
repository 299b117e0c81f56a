"""The "either" pair at the neck through the real runtime path (issue 15): the agent built
from a config, a pendant replaying a FallAllD recording (the wearer's own walking first),
events on a real mosquitto.

- a neck fall that the shipped model alone does not report and the neck-only model does
  (FallAllD FA05 F25_R01: the shipped model's detections there were never down) -> exactly
  one ``fall`` alarm whose ``models`` field says the second model passed;
- the second model damaged -> a ``model_unavailable`` warning naming it, and the shipped
  model alone still detects a fall (one ``fall`` alarm, no ``models`` field);
- the waist keeps one model (tests/integration/test_fall_positions_e2e.py).

Skips when ``../shared/data`` is absent (the data may not be redistributed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.app import Hardware, build_components
from agent.fall.detector import FallDetector
from agent.fall.pair import PairScorer
from agent.fall.replay import ReplaySource
from agent.fall.tflite_model import TfliteFallModel, shipped_model_paths
from tests.harness import AgentRunner, make_config, wait_until
from tests.integration.test_fall_e2e import TOPIC, types
from tests.integration.test_fall_positions_e2e import NECK_FLOOR, _recording, _settled

# Chosen from `tec-agent eval-fall --data ../shared/data/fallalld/neck --trials-out` with
# the shipped model alone (outcome none, not_down) and with the pair (alarm, slumped_still).
NECK_SECOND_ONLY = ("fallalld/neck", "FA05", "F25_R01")


def _run(tmp_path: Path, broker, shared: Path, where: tuple[str, str, str],
         extra: str = "") -> tuple[AgentRunner, ReplaySource, FallDetector]:
    cfg = make_config(tmp_path, broker, extra=(
        '[fall]\nwearables = ["pendant-1"]\nposition = "neck"\n'
        "confirm_s = 10.0\ncancel_window_s = 10.0\n" + extra))
    replay = ReplaySource("pendant-1", _recording(shared, where), room="lounge")
    comps = build_components(cfg, Hardware())
    detector = next(c for c in comps if isinstance(c, FallDetector))
    runner = AgentRunner(cfg, components=[*comps, replay]).start()
    return runner, replay, detector


def test_a_neck_fall_only_the_neck_only_model_catches_gives_exactly_one_fall_alarm(
        tmp_path: Path, mqtt_broker, shared_dir: Path) -> None:
    events = mqtt_broker.subscribe(TOPIC)
    runner, replay, detector = _run(tmp_path, mqtt_broker, shared_dir, NECK_SECOND_ONLY)
    try:
        got = events.wait_for(lambda ms: [m for m in ms if m.json()["type"] == "fall"],
                              what="fall alarm", timeout=60)
        _settled(runner, replay, detector, events)
        wait_until(lambda: runner.agent.state.backlog == 0, what="all acked")
        assert isinstance(detector.scorer, PairScorer) and detector.scorer.second is not None
    finally:
        runner.stop()
    assert types(events).count("fall") == 1
    assert "model_unavailable" not in types(events)
    ev = got[0].json()
    d = ev["data"]
    assert ev["priority"] == "alarm" and d["position"] == "neck" and d["detector"] == "model"
    assert d["score"] >= d["threshold"] and d["confirmation"]["confirmed"] is True
    shipped, second = d["models"]
    assert (shipped["role"], second["role"]) == ("shipped", "second")
    assert second["passed"] is True and second["score"] >= second["threshold"]
    assert shipped["passed"] is False and shipped["score"] < shipped["threshold"]
    assert d["model_version"] == f"{shipped['model_version']}|{second['model_version']}"


def test_second_model_false_runs_the_shipped_model_alone_through_the_agent(
        tmp_path: Path, mqtt_broker, shared_dir: Path) -> None:
    """``[fall] second_model = false`` at the neck: the agent scores with the shipped model
    alone, so the fall only the neck-only model catches raises nothing, and no
    ``model_unavailable`` (switching it off is a choice, not a fault)."""
    events = mqtt_broker.subscribe(TOPIC)
    runner, replay, detector = _run(tmp_path, mqtt_broker, shared_dir, NECK_SECOND_ONLY,
                                    "second_model = false\n")
    try:
        _settled(runner, replay, detector, events)
        scorer = detector.scorer
        assert isinstance(scorer, TfliteFallModel) and not isinstance(scorer, PairScorer)
        assert detector.model_error is None
    finally:
        runner.stop()
    got = set(types(events))
    assert not {"fall", "fall_recovered", "model_unavailable"} & got, got


def test_a_damaged_second_model_is_said_and_the_shipped_model_still_detects(
        tmp_path: Path, mqtt_broker, shared_dir: Path) -> None:
    model, manifest = shipped_model_paths()
    d = tmp_path / "m"
    d.mkdir()
    for name in ("fall.tflite", "manifest.json", "fall-neck.tflite", "manifest-neck.json"):
        shutil.copy(model.with_name(name), d / name)
    data = bytearray((d / "fall-neck.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "fall-neck.tflite").write_bytes(bytes(data))
    events = mqtt_broker.subscribe(TOPIC)
    runner, replay, detector = _run(tmp_path, mqtt_broker, shared_dir, NECK_FLOOR,
                                    f'model_path = "{d / "fall.tflite"}"\n')
    try:
        events.wait_for(lambda ms: {"model_unavailable", "fall"} <= {m.json()["type"]
                                                                     for m in ms},
                        what="model_unavailable and fall", timeout=60)
        _settled(runner, replay, detector, events)
    finally:
        runner.stop()
    evs = events.events()
    warn = [e for e in evs if e["type"] == "model_unavailable"]
    assert len(warn) == 1 and warn[0]["priority"] == "warning"
    w = warn[0]["data"]
    assert w["model"] == "second" and "sha256" in w["reason"]
    assert "the shipped model runs alone" in w["reason"]
    falls = [e for e in evs if e["type"] == "fall"]
    assert len(falls) == 1
    f = falls[0]["data"]
    assert f["detector"] == "model" and "models" not in f and "|" not in f["model_version"]
    assert w["fallback"] == f["model_version"]

