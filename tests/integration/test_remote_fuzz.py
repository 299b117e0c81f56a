"""Fuzzed messages on the config and command topics of a running agent never crash it.

Three layers of garbage: raw bytes; well-formed-looking envelopes with random fields and
random signatures; and random payloads *signed with the trusted key*, which get past the
signature check and exercise everything behind it. Each message must get a result
naming a reason; none may be an internal error; the agent must keep running unchanged.
"""

from __future__ import annotations

import base64
import itertools
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.remote import envelope as env
from agent.remote.client import sign
from agent.uplink import topics
from tests.harness import wait_until
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)
header_keys = st.sampled_from(["v", "kind", "hub_id", "key_id", "issued_at", "expires_at",
                               "version", "mode", "config", "name", "args"])
cmd_names = st.sampled_from(["status", "log_tail", "walk_test", "device_inventory",
                             "test_alarm", "nope", "x" * 40, "Status"])


def test_fuzzed_envelopes_never_crash_the_agent(remote_env: RemoteEnv) -> None:
    runner = remote_env.start_agent()
    agent = runner.agent
    wait_until(lambda: agent.state.online, what="online")
    remote = next(c for c in agent.components if c.name == "remote")
    support = remote_env.support()
    before = agent.config
    versions = itertools.count(int(time.time() * 1e6))
    sent = {"n": 0}

    def publish(topic: str, raw: bytes) -> None:
        support.client.publish(topic, raw)
        if raw or "/cmd/" in topic:  # an empty config/set clears a retained one: no answer
            sent["n"] += 1

    def topic_for(name: str | None) -> str:
        return topics.config_topic(HUB, "set") if name is None else topics.cmd_topic(HUB, name)

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=200), st.none() | cmd_names)
    def raw_bytes(raw: bytes, name: str | None) -> None:
        publish(topic_for(name), raw)

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(header_keys | st.text(max_size=8), json_values, max_size=12),
           st.binary(min_size=0, max_size=80), json_values, st.none() | cmd_names)
    def random_envelopes(payload: dict, sig: bytes, outer_extra, name: str | None) -> None:
        outer = {"payload": json.dumps(payload), "sig": base64.b64encode(sig).decode()}
        if isinstance(outer_extra, dict):
            outer.update(outer_extra)
        publish(topic_for(name), json.dumps(outer).encode())

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["config", "cmd"]), st.sampled_from(["merge", "full", "other"]),
           json_values, cmd_names, json_values, st.floats(-1e6, 1e6))
    def signed_garbage(kind: str, mode: str, cfg, name: str, args, ttl: float) -> None:
        body = {"mode": mode, "config": cfg} if kind == "config" else {"name": name, "args": args}
        if kind == "cmd" and name == "test_alarm" and isinstance(args, dict):
            args = {k: v for k, v in args.items() if k != "wait_s"}
            body["args"] = args
        try:
            payload = env.build_payload(kind, HUB, "support-1", next(versions), time.time(), ttl,
                                        body)
        except ValueError:
            return
        publish(topic_for(None if kind == "config" else name), sign(support.key, payload))

    raw_bytes()
    random_envelopes()
    signed_garbage()
    def handled() -> int:
        return remote.stats["config"] + remote.stats["cmd"]

    wait_until(lambda: handled() >= sent["n"], timeout=60, what=f"{sent['n']} messages handled")

    def results() -> list[dict]:
        return [json.loads(p) for t, p, _ in support.client.received() if t.endswith("/result")]

    wait_until(lambda: len(results()) >= sent["n"], timeout=30, what="a result for every message")
    docs = results()
    assert not [d for d in docs
                if d.get("reason") == env.INTERNAL_ERROR or d.get("status") == "error"]
    assert all(d.get("status") in ("rejected", "accepted", "ok", "rolled_back") for d in docs)
    # Still the same agent, running, on the same config, and answering.
    assert agent.uplink.alive() and agent.state.online
    assert agent.config == before
    assert support.cmd("status")["status"] == "ok"
    assert remote_env.restarts == []
    support.close()
