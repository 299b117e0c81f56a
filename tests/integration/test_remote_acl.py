"""The shipped mosquitto ACL: each hub only its own subtree, support only what it needs.

Mosquitto grants every subscription and applies ``read`` rules when it delivers, so reads
are tested by delivery: a message that an allowed subscriber receives, followed (from
the same publisher, hence in order) by a sentinel the denied client may see, proves the
denied client was skipped. Writes are tested with MQTT 5, whose PUBACK says "not
authorised" (and mosquitto then drops the connection, so each write gets a fresh client).
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import Collector, publish_once, release_client
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401

PASSWORDS = {"support": "support-pw-1", "platform": "platform-pw-1", "hub-other": "other-pw-1"}


def _password(e: RemoteEnv, user: str) -> str:
    return e.broker.password if user == HUB else PASSWORDS[user]


def can_publish(e: RemoteEnv, user: str, topic: str) -> bool:
    done = threading.Event()
    result: list[bool] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{user}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(user, _password(e, user))
    c.on_publish = lambda cl, u, mid, rc, p: (result.append(not rc.is_failure), done.set())
    connected = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: connected.set()
    c.connect(e.broker.host, e.broker.port, 30)
    c.loop_start()
    try:
        assert connected.wait(5), f"{user} could not connect"
        c.publish(topic, b"{}", qos=1)
        assert done.wait(5), f"no PUBACK for {user} on {topic}"
        return result[0]
    finally:
        c.disconnect()
        c.loop_stop()
        release_client(c)


def _publish(e: RemoteEnv, user: str, topic: str, payload: bytes) -> None:
    publish_once(e.broker.host, e.broker.port, user, _password(e, user), topic, payload)


def receives(e: RemoteEnv, user: str, topic: str, publisher: str, control_user: str,
             sentinel: tuple[str, str]) -> bool:
    """Does ``user``, subscribed to everything, get a message ``publisher`` sends to ``topic``?

    Mosquitto routes a message to all its subscribers at once, on one thread: once the
    allowed ``control_user`` has it, it is queued for ``user`` too if ever it will be, so
    a later ``sentinel`` (publisher, topic that ``user`` may read) arrives after it.
    """
    probe = Collector(e.broker, "#", username=user, password=_password(e, user))
    control = Collector(e.broker, topic, username=control_user, password=_password(e, control_user))
    try:
        _publish(e, publisher, topic, b'{"probe": 1}')
        control.wait_for(lambda ms: any(m.topic == topic for m in ms), what="control delivery")
        _publish(e, sentinel[0], sentinel[1], b'{"sentinel": 1}')
        probe.wait_for(lambda ms: any(m.payload == b'{"sentinel": 1}' for m in ms), what="sentinel")
        return any(m.topic == topic and m.payload == b'{"probe": 1}' for m in probe.snapshot())
    finally:
        probe.close()
        control.close()


def test_hubs_publish_only_into_their_own_subtree(remote_env: RemoteEnv) -> None:
    e, mine = remote_env, f"tec/v1/{HUB}"
    for t in ("event", "status", "device/cord-1", "config/result", "config/current",
              "cmd/status/result"):
        assert can_publish(e, HUB, f"{mine}/{t}"), t
    assert not can_publish(e, HUB, f"{mine}/config/set")  # a hub cannot command itself
    assert not can_publish(e, HUB, f"{mine}/cmd/restart")
    assert not can_publish(e, HUB, f"{mine}/receipt")  # nor confirm its own events
    for t in ("config/set", "cmd/restart", "event", "status", "config/current"):
        assert not can_publish(e, "hub-other", f"{mine}/{t}"), t


def test_support_and_platform_write_only_what_they_need(remote_env: RemoteEnv) -> None:
    e, mine = remote_env, f"tec/v1/{HUB}"
    assert can_publish(e, "support", f"{mine}/config/set")
    assert can_publish(e, "support", f"{mine}/cmd/status")
    for t in ("event", "status", "config/current", "config/result", "cmd/status/result"):
        assert not can_publish(e, "support", f"{mine}/{t}"), t
    for t in ("config/set", "cmd/test_alarm", "event"):
        assert not can_publish(e, "platform", f"{mine}/{t}"), t
    assert can_publish(e, "platform", f"{mine}/receipt")   # the ingester's receipts
    assert not can_publish(e, "support", f"{mine}/receipt")


def test_reads_are_confined(remote_env: RemoteEnv) -> None:
    e, mine = remote_env, f"tec/v1/{HUB}"
    to_other = ("support", "tec/v1/hub-other/config/set")  # hub-other reads its own pushes
    to_support = (HUB, f"{mine}/config/result")
    # Another hub sees none of our config pushes, commands or events.
    assert not receives(e, "hub-other", f"{mine}/config/set", "support", HUB, to_other)
    assert not receives(e, "hub-other", f"{mine}/cmd/restart", "support", HUB, to_other)
    assert not receives(e, "hub-other", f"{mine}/event", HUB, "platform", to_other)
    # Support reads answers and status but never events (personal data).
    assert not receives(e, "support", f"{mine}/event", HUB, "platform", to_support)
    assert receives(e, "support", f"{mine}/status", HUB, "platform", to_support)
    # Nor under a tenant prefix (mqtt.topic_prefix), where the platform does read them.
    tenant = f"council-a/tec/v1/{HUB}"
    assert receives(e, "platform", f"{tenant}/event", HUB, "platform", to_support)
    assert not receives(e, "support", f"{tenant}/event", HUB, "platform", to_support)
    assert not receives(e, "support", f"{tenant}/device/cord-1", HUB, "platform", to_support)
    assert receives(e, "support", f"{tenant}/status", HUB, "platform", to_support)
    # Receipts reach the hub they name, and no other.
    assert receives(e, HUB, f"{mine}/receipt", "platform", HUB, ("support", f"{mine}/config/set"))
    assert not receives(e, "hub-other", f"{mine}/receipt", "platform", HUB, to_other)
    # Positive control of the method itself: a hub gets its own pushes.
    assert receives(e, HUB, f"{mine}/cmd/status", "support", HUB, ("support", f"{mine}/config/set"))
