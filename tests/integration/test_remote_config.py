"""Signed config pushes on a running agent, against a real mosquitto with the shipped ACL."""

from __future__ import annotations

import json
import time
import tomllib

from agent.config import parse_config
from agent.remote import envelope as env
from agent.uplink import topics
from tests.harness import wait_until
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401

WINDOW = {"inactivity": {"inactivity": [{"start": "08:00", "end": "21:30", "after_s": 7200.0}]}}


def _detector(runner):
    return next(c for c in runner.agent.components if c.name == "inactivity")


def test_signed_push_changes_inactivity_window_without_restart(remote_env: RemoteEnv) -> None:
    platform = remote_env.broker.subscribe(f"tec/v1/{HUB}/event", username="platform",
                                           password="platform-pw-1")
    runner = remote_env.start_agent()
    agent = runner.agent
    wait_until(lambda: agent.state.online, what="online")
    support = remote_env.support()
    old_detector, uplink, store, started = (_detector(runner), agent.uplink, agent.store,
                                            agent.started_mono)
    connects = uplink.connects
    assert old_detector.ruleset.inactivity[0].after_s == 14400.0

    result = support.push(WINDOW)

    assert result["status"] == "accepted", result
    assert result["changed"] == ["inactivity.inactivity[0].after_s", "inactivity.inactivity[0].end",
                                 "inactivity.inactivity[0].start"]
    assert result["old_version"] == 0 and result["key_id"] == "support-1"
    window = agent.config.inactivity.inactivity[0]
    assert (window.start, window.end, window.after_s) == ("08:00", "21:30", 7200.0)
    # The detector was rebuilt with the new window; the old one hears nothing any more.
    new_detector = _detector(runner)
    assert new_detector is not old_detector
    assert new_detector.ruleset.inactivity[0].after_s == 7200.0
    subscribers = {getattr(cb, "__self__", None) for cb in agent._reading_subs}  # noqa: SLF001  which detector is subscribed: no public view
    assert old_detector not in subscribers and new_detector in subscribers
    # No restart: same agent, same store, same MQTT connection, unchanged GPIO driver.
    assert agent.uplink is uplink and uplink.connects == connects and agent.store is store
    assert agent.started_mono == started
    # Persisted: the file loads as the running config, and says where it came from.
    text = remote_env.config_path.read_text()
    assert f"version {result['version']}" in text
    assert parse_config(tomllib.loads(text)) == agent.config
    assert (remote_env.config_path.parent / "agent.toml.previous").read_text().count("14400") == 1
    # Retained config/current carries the new version and window.
    current = support.client.wait_message(
        lambda t, d, r: t.endswith("/config/current") and d.get("version") == result["version"],
        10, "config/current")
    assert current["config"]["inactivity"]["inactivity"][0]["after_s"] == 7200.0
    assert current["key_id"] == "support-1"
    # The audit event reaches the platform: who, which versions, which keys; no values.
    audit = platform.wait_for(
        lambda ms: [m.json() for m in ms if m.json()["type"] == "config_changed"], what="audit")[0]
    assert audit["priority"] == "info"
    assert audit["data"]["key_id"] == "support-1" and audit["data"]["status"] == "applied"
    assert audit["data"]["old_version"] == 0 and audit["data"]["new_version"] == result["version"]
    assert audit["data"]["changed"] == result["changed"]
    assert "7200" not in json.dumps(audit)
    support.close()


def test_every_bad_message_is_rejected_with_its_reason_and_changes_nothing(
    remote_env: RemoteEnv,
) -> None:
    runner = remote_env.start_agent()
    agent = runner.agent
    wait_until(lambda: agent.state.online, what="online")
    support = remote_env.support()
    topic = topics.config_topic(HUB, "set")
    body = {"mode": "merge", "config": WINDOW}
    before_cfg, before_file = agent.config, remote_env.config_path.read_bytes()

    def expect(raw: bytes, reason: str) -> dict:
        doc = support.result_after(support.send(topic, raw))
        assert doc["status"] == "rejected" and doc["reason"] == reason, doc
        assert agent.config is before_cfg
        return doc

    raw, _ = support.signed("config", body, rogue=True)  # right key id, wrong key
    expect(raw, env.BAD_SIGNATURE)
    raw, _ = support.signed("config", body, key_id="rogue")
    expect(raw, env.UNKNOWN_KEY)
    raw, _ = support.signed("config", body, issued_at=time.time() - 600, ttl=300)
    expect(raw, env.EXPIRED)
    raw, _ = support.signed("config", body, issued_at=time.time() + 3600)
    expect(raw, env.NOT_YET_VALID)
    raw, _ = support.signed("config", body, hub_id="hub-other")
    assert "hub-other" in expect(raw, env.WRONG_HUB)["detail"]
    expect(b'{"payload": "{\\"v\\": 1', env.MALFORMED)
    expect(b"\xff\xfe not json", env.MALFORMED)
    raw, _ = support.signed("cmd", {"name": "status", "args": {}})
    expect(raw, env.WRONG_TOPIC)
    invalid = {"inactivity": {"inactivity": [{"start": "25:00", "after_s": 5}]}}
    raw, _ = support.signed("config", {"mode": "merge", "config": invalid})
    doc = expect(raw, env.INVALID_CONFIG)
    assert any(p.startswith("inactivity.inactivity[0].start") for p in doc["problems"])
    assert any(p.startswith("inactivity.inactivity[0].after_s") for p in doc["problems"])
    raw, _ = support.signed("config", {"mode": "merge", "config": {"hub_id": "someone-else"}})
    expect(raw, env.FORBIDDEN_CHANGE)
    raw, _ = support.signed("config", {"mode": "full", "config": {"hub_id": HUB, "bogus": 1}})
    assert "bogus: unknown key" in expect(raw, env.INVALID_CONFIG)["problems"]
    # A good one is applied; sent again byte for byte, it is a replay.
    good, version = support.signed("config", body)
    assert support.result_after(support.send(topic, good))["status"] == "accepted"
    changed_cfg = agent.config
    assert changed_cfg is not before_cfg
    before_cfg = changed_cfg
    doc = expect(good, env.REPLAYED)
    assert doc["last_version"] == version
    older, _ = support.signed("config", body, version=version - 1)
    expect(older, env.REPLAYED)
    # The replay counter survives a restart of the agent.
    remote_env.stop_agent()
    runner = remote_env.start_agent()
    agent = runner.agent
    wait_until(lambda: agent.state.online, what="online again")
    before_cfg = agent.config
    expect(good, env.REPLAYED)
    assert remote_env.config_path.read_bytes() != before_file  # only the good push wrote it
    support.close()


def test_push_that_breaks_the_broker_connection_is_rolled_back(remote_env: RemoteEnv) -> None:
    from agent.sim.local_broker import free_port

    status = remote_env.broker.subscribe(f"tec/v1/{HUB}/status", username="support",
                                         password="support-pw-1")
    runner = remote_env.start_agent()
    agent = runner.agent
    wait_until(lambda: agent.state.online, what="online")
    support = remote_env.support()
    good_cfg, good_file = agent.config, remote_env.config_path.read_bytes()
    dead_port = free_port()
    t0 = time.monotonic()

    result = support.push({"mqtt": {"port": dead_port}})

    assert result["status"] == "rolled_back" and result["reason"] == env.HEALTH_CHECK_FAILED
    assert any(f":{dead_port} not reachable" in p for p in result["problems"])
    assert time.monotonic() - t0 < 10
    assert agent.config == good_cfg and agent.config.mqtt.port == remote_env.broker.port
    assert remote_env.config_path.read_bytes() == good_file
    wait_until(lambda: agent.state.online, what="back online")
    status.wait_for(lambda ms: ms[-1].json()["state"] == "online", what="online status")
    # The hub is managed again: the next push works.
    ok = support.push({"mqtt": {"keepalive_s": 20}})
    assert ok["status"] == "accepted", ok
    assert agent.config.mqtt.keepalive_s == 20
    wait_until(lambda: agent.state.online, what="online on the new connection")
    assert remote_env.restarts == []
    support.close()


def test_forbidden_to_lock_support_out(remote_env: RemoteEnv) -> None:
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    support = remote_env.support()
    off = support.push({"remote": {"enabled": False}})
    assert off["reason"] == env.FORBIDDEN_CHANGE and "remote.enabled" in off["detail"]
    empty = remote_env.tmp / "no-keys"
    empty.mkdir()
    moved = support.push({"remote": {"keys_dir": str(empty)}})
    assert moved["reason"] == env.FORBIDDEN_CHANGE and "locked out" in moved["detail"]
    assert runner.agent.config.remote.keys_dir == str(remote_env.tmp / "trusted")
    support.close()


def test_offline_hub_gets_retained_full_config_and_queued_merge(remote_env: RemoteEnv) -> None:
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    remote_env.stop_agent()  # the hub's persistent session stays on the broker
    support = remote_env.support()
    full = tomllib.loads(remote_env.config_path.read_text())
    full["agent"]["log_level"] = "WARNING"
    raw_full, v_full = support.signed("config", {"mode": "full", "config": full})
    support.send(topics.config_topic(HUB, "set"), raw_full, retain=True)
    merge = {"inactivity": {"inactivity": [{"start": "09:00", "end": "20:00", "after_s": 3600.0}]}}
    raw_merge, v_merge = support.signed("config", {"mode": "merge", "config": merge})
    support.send(topics.config_topic(HUB, "set"), raw_merge)

    runner = remote_env.start_agent()
    agent = runner.agent
    wait_until(lambda: agent.config.inactivity.inactivity[0].after_s == 3600.0, timeout=15,
               what="queued merge applied")
    assert agent.config.agent.log_level == "WARNING"  # from the retained full config
    got = support.client.wait_message(
        lambda t, d, r: t.endswith("/config/result") and d.get("version") == v_merge, 10, "result")
    assert got["status"] == "accepted"
    # Reconnecting hands the retained config over again: ignored without a word.
    n_results = len([m for m in support.client.received() if m[0].endswith("/config/result")])
    remote_env.stop_agent()
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    wait_until(lambda: runner.agent.components[-1].stats["config"] >= 1, what="retained seen")
    assert runner.agent.config.agent.log_level == "WARNING"
    assert runner.agent.config.inactivity.inactivity[0].after_s == 3600.0
    later = [m for m in support.client.received() if m[0].endswith("/config/result")]
    assert len(later) == n_results
    assert v_full < v_merge
    support.close()
