"""A signed push with a mistyped bindkey: the hub's retained ``config/result`` (read by
support and the platform, kept by the broker) names the key path, never the key."""

from __future__ import annotations

import json

from agent.remote import envelope as env
from agent.uplink import topics
from tests.harness import wait_until
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401

KEY = "90bffd73cb6b26ef58a7a8eba9232036"


def test_retained_config_result_never_echoes_a_mistyped_bindkey(remote_env: RemoteEnv) -> None:
    runner = remote_env.start_agent()
    wait_until(lambda: runner.agent.state.online, what="online")
    support = remote_env.support()
    device = {"id": "pendant", "address": "B4:35:22:F5:3D:A4", "kind": "bthome"}
    for typo in ([KEY], {"key": KEY}, int("9" + "1" * 17)):
        result = support.push({"ble": {"devices": [{**device, "bindkey": typo}]}})
        assert result["status"] == "rejected" and result["reason"] == env.INVALID_CONFIG, result
        assert any(p.startswith("ble.devices[0].bindkey:") for p in result["problems"]), result
        text = json.dumps(result)
        assert KEY[:8] not in text and "91111111" not in text, text
    # What the broker keeps for everyone who subscribes later is the same answer.
    late = remote_env.support()
    retained = late.client.wait_message(
        lambda t, d, r: t == topics.config_topic(HUB, "result") and r, 10, "retained result")
    assert retained["reason"] == env.INVALID_CONFIG and "91111111" not in json.dumps(retained)
    support.close()
    late.close()
