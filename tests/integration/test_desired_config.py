"""The desired config asked for on connect (issue 20): a hub does not depend on the broker
handing it the retained config/set (a RabbitMQ cluster keeps retained messages per node).
On every connect it publishes config/request; `tec-agent ingest` keeps support's newest full
push in its database and answers on config/desired."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import Hardware
from agent.config import load_config
from agent.ingest.db import IngestDb, open_db
from agent.ingest.mqtt_source import SourceSettings
from agent.remote import envelope as env
from agent.remote.client import CONFIG_TTL_S, BrokerUrl, new_version, sign
from agent.remote.keys import generate_keypair, load_private_key
from agent.uplink import topics
from tests.harness import AgentRunner, InProcessIngester, TestBroker, wait_until
from tests.integration.test_remote_harness import (  # noqa: F401
    ACL,
    HUB,
    RemoteEnv,
    hub_config_text,
    remote_env,
)


@pytest.fixture
def ingest_db(tmp_path: Path) -> Iterator[IngestDb]:
    db = open_db(f"sqlite:///{tmp_path / 'ingest.db'}")
    yield db
    db.close()


def _full_push(e: RemoteEnv, after_s: float) -> tuple[int, bytes]:
    doc = tomllib.loads(e.config_path.read_text())
    doc["inactivity"]["inactivity"][0]["after_s"] = after_s
    version = new_version()
    payload = env.build_payload("config", HUB, "support-1", version, time.time(), CONFIG_TTL_S,
                                {"mode": "full", "config": doc})
    return version, sign(load_private_key(e.key_path), payload)


def test_an_offline_hub_gets_its_desired_config_without_the_retained_copy(
        remote_env: RemoteEnv, ingest_db: IngestDb) -> None:
    e = remote_env
    ing = InProcessIngester(SourceSettings(
        BrokerUrl(e.broker.host, e.broker.port, "platform", False),
        e.broker.users["platform"], "ingest-desired"), ingest_db)
    support = e.support()
    try:
        version, message = _full_push(e, 5400.0)
        # Support pushes while the hub is away (retained, as `remote push-config` does) ...
        support.client.publish(topics.config_topic(HUB, "set"), message, retain=True)
        wait_until(lambda: ingest_db.desired_config(HUB) == (version, message), 10,
                   what="the ingester to keep the desired config")
        # ... and the hub's broker node does not have the retained copy.
        support.client.publish(topics.config_topic(HUB, "set"), b"", retain=True)
        runner = e.start_agent()
        wait_until(lambda: tomllib.loads(e.config_path.read_text())["inactivity"]
                   ["inactivity"][0]["after_s"] == 5400.0, 20, what="the config applied")
        assert runner.agent.config.inactivity.inactivity[0].after_s == 5400.0
        assert ing.ingester.stats.configs_sent == 1
        # Asked again on the next connect, the hub runs it already: nothing is sent.
        requests = e.broker.subscribe(f"tec/v1/{HUB}/config/request", username="platform",
                                      password=e.broker.users["platform"])
        e.stop_agent()
        e.start_agent()
        requests.wait_for(lambda ms: ms and json.loads(ms[-1].payload)["version"] == version,
                          20, what="a request naming the version the hub runs")
        wait_until(lambda: ing.ingester.stats.config_requests >= 2, 10,
                   what="the ingester to take the second request")
        assert ing.ingester.stats.configs_sent == 1
    finally:
        e.stop_agent()
        support.client.close()
        ing.close()


def test_a_broker_that_refuses_the_request_costs_one_reconnect(tmp_path: Path) -> None:
    """mosquitto 2.0 (max_queued_messages 0) closes a connection that publishes to a topic its
    ACL denies; with an ACL from before config/request the hub must stop asking, not reconnect
    forever. One reconnect, whatever the load: the request is QoS 0, so the session does not
    send it again on the next connection (at QoS 1 it did, until the broker's PUBACK for it
    was read before the close, which took 1 to 3 more connections under CPU load)."""
    old_acl = tmp_path / "old.acl"
    old_acl.write_text("".join(line for line in ACL.read_text().splitlines(keepends=True)
                               if "config/request" not in line))
    broker = TestBroker(tmp_path / "broker", username=HUB, acl_file=old_acl)
    broker.start()
    try:
        _, pub = generate_keypair("support-1", tmp_path / "keys")
        (tmp_path / "trusted").mkdir()
        (tmp_path / "trusted" / pub.name).write_bytes(pub.read_bytes())
        cfg_path = tmp_path / "agent.toml"
        cfg_path.write_text(hub_config_text(tmp_path, broker))
        with AgentRunner(load_config(cfg_path), Hardware(pin_factory=MockFactory())) as r:
            wait_until(lambda: r.agent.uplink.connects >= 2 and r.agent.state.online, 20,
                       what="the second connection")
            # A rate over a window: without the hub's backoff it reconnected every 0.1-1 s.
            threading.Event().wait(4.0)
            assert r.agent.uplink.connects == 2 and r.agent.state.online
    finally:
        broker.close()


def test_stopping_soon_after_connecting_is_not_taken_for_a_refused_request(
        remote_env: RemoteEnv, caplog: pytest.LogCaptureFixture) -> None:
    """An agent stopped within 10 s of its connect (commissioning, which runs the agent for a
    few seconds; a quick restart) closes its own connection: that is not the broker refusing
    config/request, and the installer must not be told to check the broker's ACL."""
    e = remote_env
    runner = e.start_agent()
    wait_until(lambda: runner.agent.state.online, 20, what="the hub online")
    e.stop_agent()
    suspect = [r.getMessage() for r in caplog.records if "config/request" in r.getMessage()]
    assert suspect == []
