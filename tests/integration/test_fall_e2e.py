"""Fall detection end to end: recorded wearable motion -> agent -> SQLite -> real mosquitto."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.app import Hardware, build_components
from agent.fall.replay import ReplaySource
from agent.fall.tflite_model import shipped_model_paths
from agent.model import Priority, Reading
from tests.harness import AgentRunner, make_config, wait_until
from tests.unit.fall_helpers import hold, recording

TOPIC = "tec/v1/hub-test/event"


def start(tmp_path: Path, broker, fall_toml: str, code: str) -> tuple[AgentRunner, ReplaySource]:
    cfg = make_config(tmp_path, broker, extra='[fall]\nwearables = ["wearable-1"]\n' + fall_toml)
    replay = ReplaySource("wearable-1", hold(recording(code), 20), room="hall")
    comps = build_components(cfg, Hardware())
    # The replay starts last, once the detector is subscribed.
    runner = AgentRunner(cfg, components=[*comps, replay]).start()
    return runner, replay


def sentinel(runner: AgentRunner, events) -> None:
    """Everything submitted before this reading has reached the broker once it has."""
    runner.call(runner.agent.emit_reading,
                Reading("sentinel", "test", Priority.INFO, {"source": "test"}))
    events.wait_for(lambda ms: any(m.json()["type"] == "test" for m in ms), what="sentinel")


def types(events) -> list[str]:
    return [e["type"] for e in events.events()]


def test_recorded_fall_gives_exactly_one_fall_alarm_on_the_broker(tmp_path: Path,
                                                                  mqtt_broker) -> None:
    events = mqtt_broker.subscribe(TOPIC)
    runner, replay = start(tmp_path, mqtt_broker, "confirm_s = 5.0\ncancel_window_s = 5.0\n",
                           "F01_R01")
    try:
        got = events.wait_for(lambda ms: [m for m in ms if m.json()["type"] == "fall"],
                              what="fall alarm")
        assert replay.done.is_set()
        sentinel(runner, events)
        wait_until(lambda: runner.agent.state.backlog == 0, what="all acked")
    finally:
        runner.stop()
    assert types(events).count("fall") == 1
    assert "model_unavailable" not in types(events)
    ev = got[0].json()
    assert ev["priority"] == "alarm" and ev["device_id"] == "wearable-1"
    d = ev["data"]
    assert d["detector"] == "model" and d["score"] >= d["threshold"]
    assert d["room"] == "hall" and d["confirmation"]["confirmed"] is True
    assert d["peak_g"] > 3 and d["model_version"]


def test_recorded_daily_activity_gives_no_alarm(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe(TOPIC)
    runner, replay = start(tmp_path, mqtt_broker, "confirm_s = 5.0\ncancel_window_s = 5.0\n",
                           "D19_R01")
    try:
        wait_until(replay.done.is_set, what="replay finished")
        sentinel(runner, events)
    finally:
        runner.stop()
    assert "fall" not in types(events) and "fall_cancelled" not in types(events)


def test_cancel_inside_the_window_gives_fall_cancelled_and_no_alarm(tmp_path: Path,
                                                                    mqtt_broker) -> None:
    events = mqtt_broker.subscribe(TOPIC)
    runner, _ = start(tmp_path, mqtt_broker, "confirm_s = 5.0\ncancel_window_s = 120.0\n",
                      "F01_R01")
    try:
        wait_until(lambda: runner.agent.state.prewarning, what="fall pending (pre-warning)")
        runner.call(runner.agent.emit_reading,
                    Reading("hub-cancel", "cancel", Priority.INFO, {"source": "gpio"},
                            publish=False))
        got = events.wait_for(
            lambda ms: [m.json() for m in ms if m.json()["type"] == "fall_cancelled"],
            what="fall_cancelled")
        wait_until(lambda: not runner.agent.state.prewarning, what="pre-warning cleared")
        sentinel(runner, events)
        assert not runner.agent.state.alarm_pending
    finally:
        runner.stop()
    assert "fall" not in types(events)
    assert got[0]["device_id"] == "wearable-1" and got[0]["priority"] == "info"
    assert got[0]["data"]["cancelled_by"] == "hub-cancel"


def test_damaged_model_falls_back_and_the_agent_keeps_detecting(tmp_path: Path,
                                                                 mqtt_broker) -> None:
    model, manifest = shipped_model_paths()
    (tmp_path / "m").mkdir()
    bad = tmp_path / "m" / "fall.tflite"
    bad.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    shutil.copy(manifest, tmp_path / "m" / "manifest.json")
    events = mqtt_broker.subscribe(TOPIC)
    status = mqtt_broker.subscribe("tec/v1/hub-test/status")
    runner, _ = start(tmp_path, mqtt_broker,
                      f'model_path = "{bad}"\nconfirm_s = 5.0\ncancel_window_s = 5.0\n',
                      "F01_R01")
    try:
        events.wait_for(lambda ms: {"model_unavailable", "fall"} <= {m.json()["type"] for m in ms},
                        what="model_unavailable and fall")
        status.wait_for(lambda ms: ms and ms[-1].json()["state"] == "online", what="online")
    finally:
        runner.stop()
    evs = events.events()
    warn = next(e for e in evs if e["type"] == "model_unavailable")
    assert warn["priority"] == "warning" and "truncated" in warn["data"]["reason"]
    fall = next(e for e in evs if e["type"] == "fall")
    assert fall["data"]["detector"] == "baseline"
