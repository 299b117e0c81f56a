"""Shared set-up for the remote management tests (no tests here).

A real mosquitto with the shipped ACL (packaging/mosquitto/tec-agent.acl): the hub's
account is named after its hub_id, ``support`` and ``platform`` are the service accounts,
``hub-other`` is a second hub. Keys are real Ed25519 key pairs made by ``keygen``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import Hardware, build_components
from agent.config import Config, load_config
from agent.ports import Component
from agent.remote import envelope as env
from agent.remote.client import BrokerUrl, SupportClient, new_version, request, sign
from agent.remote.control import RemoteControl
from agent.remote.keys import generate_keypair, load_private_key
from agent.sim.local_broker import find_mosquitto
from agent.uplink import topics
from tests.harness import AgentRunner, TestBroker

ROOT = Path(__file__).resolve().parents[2]
ACL = ROOT / "packaging" / "mosquitto" / "tec-agent.acl"
HUB = "hub-test"


def hub_config_text(tmp_path: Path, broker: TestBroker, rollback_after_s: float = 1.0,
                    extra: str = "") -> str:
    return f'''hub_id = "{HUB}"

[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{HUB}"
password_file = "{broker.password_file}"
reconnect_min_s = 0.1
reconnect_max_s = 1.0

[store]
path = "{tmp_path / 'events.db'}"

[agent]
assume_clock_synced = true

[gpio]
pin_factory = "mock"

[[gpio.devices]]
id = "back-door"
kind = "door"
pin = 17
room = "kitchen"

[[gpio.devices]]
id = "cord-bathroom"
kind = "pull_cord"
pin = 27
room = "bathroom"

[[inactivity.inactivity]]
start = "07:00"
end = "22:00"
after_s = 14400.0

[remote]
enabled = true
keys_dir = "{tmp_path / 'trusted'}"
config_path = "{tmp_path / 'agent.toml'}"
rollback_after_s = {rollback_after_s}
{extra}'''


@dataclass
class RemoteEnv:
    tmp: Path
    broker: TestBroker
    key_path: Path            # trusted: its .pub is in the hub's keys_dir
    rogue_key_path: Path      # not trusted anywhere
    config_path: Path
    restarts: list[str] = field(default_factory=list)
    runner: AgentRunner | None = None
    factory: MockFactory = field(default_factory=MockFactory)

    def config(self) -> Config:
        return load_config(self.config_path)

    def components(self, cfg: Config, hardware: Hardware) -> list[Component]:
        """What build_components makes, with the restart hook recorded instead of SIGTERM
        (which would stop the test process itself; the CLI test covers the real one)."""
        comps = [c for c in build_components(cfg, hardware) if c.name != "remote"]
        comps.append(RemoteControl(cfg.remote, restart=self.restarts.append))
        return comps

    def start_agent(self) -> AgentRunner:
        cfg = self.config()
        hw = Hardware(pin_factory=self.factory)
        self.runner = AgentRunner(cfg, hw, components=self.components(cfg, hw)).start()
        return self.runner

    def stop_agent(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None

    def support(self) -> Support:
        return Support(self)


class Support:
    """A support desk: the ``support`` broker account and the trusted signing key."""

    def __init__(self, e: RemoteEnv, username: str = "support") -> None:
        self.env = e
        self.client = SupportClient(BrokerUrl(e.broker.host, e.broker.port, username, False),
                                    e.broker.users[username])
        self.client.connect()
        self.key = load_private_key(e.key_path)
        self.rogue = load_private_key(e.rogue_key_path)
        self.config_result = topics.config_topic(HUB, "result")
        self.client.subscribe(self.config_result)
        self.client.subscribe(topics.cmd_topic(HUB, "+/result"))
        self.client.subscribe(topics.config_topic(HUB, "current"))

    def push(self, doc: dict[str, Any], mode: str = "merge", timeout: float = 20.0,
             retain: bool = False) -> dict[str, Any]:
        return request(self.client, self.key, "support-1", HUB, "config",
                       {"mode": mode, "config": doc}, 300.0, timeout, retain=retain)

    def cmd(self, name: str, args: dict[str, Any] | None = None,
            timeout: float = 20.0) -> dict[str, Any]:
        return request(self.client, self.key, "support-1", HUB, "cmd",
                       {"name": name, "args": args or {}}, 300.0, timeout)

    def signed(self, kind: str, body: dict[str, Any], *, hub_id: str = HUB,
               key_id: str = "support-1", rogue: bool = False, version: int | None = None,
               issued_at: float | None = None, ttl: float = 300.0) -> tuple[bytes, int]:
        v = version or new_version()
        payload = env.build_payload(kind, hub_id, key_id, v,
                                    time.time() if issued_at is None else issued_at, ttl, body)
        return sign(self.rogue if rogue else self.key, payload), v

    def send(self, topic: str, raw: bytes, retain: bool = False) -> int:
        """Publish and return the mark to wait for the answer from."""
        mark = self.client.mark()
        self.client.publish(topic, raw, retain=retain)
        return mark

    def result_after(self, mark: int, topic: str | None = None,
                     timeout: float = 10.0) -> dict[str, Any]:
        want = topic or self.config_result
        return self.client.wait_message(lambda t, d, r: t == want and not r, timeout,
                                        f"a result on {want}", start=mark)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def remote_env(tmp_path: Path) -> Iterator[RemoteEnv]:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: run ./scripts/setup.sh (it apt-installs it)")
    private = tmp_path / "support-keys"
    key_path, pub_path = generate_keypair("support-1", private)
    rogue_path, _ = generate_keypair("rogue", private)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    shutil.copy(pub_path, trusted / pub_path.name)
    broker = TestBroker(tmp_path / "broker", username=HUB, acl_file=ACL,
                        extra_users={"support": "support-pw-1", "platform": "platform-pw-1",
                                     "hub-other": "other-pw-1"})
    broker.start()
    config_path = tmp_path / "agent.toml"
    config_path.write_text(hub_config_text(tmp_path, broker))
    e = RemoteEnv(tmp_path, broker, key_path, rogue_path, config_path)
    try:
        yield e
    finally:
        e.stop_agent()
        broker.close()
