"""Each remote command end to end: signed on the support side, run by the agent, answered."""

from __future__ import annotations

import logging
import time

from agent.remote import envelope as env
from agent.uplink import topics
from tests.harness import wait_until
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401


def test_test_alarm_walk_test_inventory_status(remote_env: RemoteEnv) -> None:
    platform = remote_env.broker.subscribe(f"tec/v1/{HUB}/event", username="platform",
                                           password="platform-pw-1")
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    support = remote_env.support()

    # test_alarm: a `test` event through store and broker, acknowledged before the answer.
    res = support.cmd("test_alarm")
    assert res["status"] == "ok" and res["name"] == "test_alarm", res
    assert res["result"]["delivered"] is True
    test_ev = platform.wait_for(
        lambda ms: [m.json() for m in ms if m.json()["id"] == res["result"]["event_id"]],
        what="test event")[0]
    assert test_ev["type"] == "test" and test_ev["priority"] == "info"

    # walk_test: every trigger while active becomes a walk_test event naming the device.
    res = support.cmd("walk_test", {"action": "start", "duration_s": 60})
    assert res["result"]["active"] is True
    door = remote_env.factory.pin(17)
    door.drive_low()
    door.drive_high()
    walk = platform.wait_for(
        lambda ms: [m.json() for m in ms if m.json()["type"] == "walk_test"], what="walk_test")
    assert walk[0]["device_id"] == "back-door" and walk[0]["data"]["room"] == "kitchen"
    assert walk[0]["data"]["reading"] in ("door_open", "door_close")
    res = support.cmd("walk_test", {"action": "stop"})
    assert res["result"]["active"] is False and res["result"]["triggered"]["back-door"] >= 1
    assert res["result"]["not_triggered"] == ["cord-bathroom"]
    n_walk = len([m for m in platform.snapshot() if m.json()["type"] == "walk_test"])
    door.drive_low()
    platform.wait_for(lambda ms: any(m.json()["type"] == "door_close" for m in ms[-3:]),
                      what="door event after the walk test")
    assert len([m for m in platform.snapshot() if m.json()["type"] == "walk_test"]) == n_walk

    res = support.cmd("device_inventory")
    ids = {d["device_id"] for d in res["result"]["devices"]}
    assert {"back-door", "cord-bathroom"} <= ids and res["result"]["not_reported"] == []

    res = support.cmd("status")
    st = res["result"]
    assert st["online"] is True and st["clock"]["synced"] is True
    assert st["versions"]["agent"] and st["versions"]["python"].startswith("3.")
    assert st["uptime_s"] > 0 and st["disk"]["free_mb"] > 0
    assert isinstance(st["backlog"]["total"], int) and st["config_version"] == 0
    assert {"gpio", "inactivity", "remote"} <= set(st["components"])
    support.close()


def test_log_tail_redacts_secrets_and_restart_answers_first(remote_env: RemoteEnv, caplog) -> None:
    caplog.set_level(logging.INFO)  # as in production (agent.log_level = INFO)
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    support = remote_env.support()
    secret = remote_env.broker.password
    logging.getLogger("agent.test").warning("connecting with password %s to the broker", secret)

    res = support.cmd("log_tail", {"lines": 50, "level": "WARNING"})
    lines = res["result"]["lines"]
    assert any("connecting with password *** to the broker" in ln for ln in lines), lines
    assert not any(secret in ln for ln in lines)
    assert all(" INFO " not in ln for ln in lines)
    assert len(support.cmd("log_tail", {"lines": 3})["result"]["lines"]) == 3

    res = support.cmd("restart")
    assert res["status"] == "ok" and res["result"] == {"restarting": True}
    wait_until(lambda: remote_env.restarts == ["remote restart command"], what="restart hook")
    support.close()


def test_bad_commands_are_rejected_with_reasons(remote_env: RemoteEnv) -> None:
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    support = remote_env.support()

    def answer(name: str, raw: bytes) -> dict:
        topic = topics.cmd_topic(HUB, f"{name}/result")
        return support.result_after(support.send(topics.cmd_topic(HUB, name), raw), topic)

    raw, _ = support.signed("cmd", {"name": "selfdestruct", "args": {}})
    assert answer("selfdestruct", raw)["reason"] == env.UNKNOWN_COMMAND
    raw, _ = support.signed("cmd", {"name": "log_tail", "args": {"lines": 0}})
    assert answer("log_tail", raw)["reason"] == env.INVALID_ARGS
    raw, _ = support.signed("cmd", {"name": "status", "args": {"verbose": True}})
    assert answer("status", raw)["reason"] == env.INVALID_ARGS
    raw, _ = support.signed("cmd", {"name": "status", "args": {}}, issued_at=time.time() - 900)
    assert answer("status", raw)["reason"] == env.EXPIRED
    raw, _ = support.signed("cmd", {"name": "restart", "args": {}}, rogue=True)
    assert answer("restart", raw)["reason"] == env.BAD_SIGNATURE
    raw, _ = support.signed("cmd", {"name": "status", "args": {}})
    # status signed, sent as test_alarm
    assert answer("test_alarm", raw)["reason"] == env.WRONG_TOPIC
    ok = answer("status", raw)
    assert ok["status"] == "ok"
    assert answer("status", raw)["reason"] == env.REPLAYED
    assert remote_env.restarts == []
    support.close()
