"""Test helpers: a real broker, a subscriber that collects, an agent on its own loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from agent.app import Agent, Hardware
from agent.config import Config, parse_config_text
from agent.ingest.db import IngestDb
from agent.ingest.ingester import Ingester
from agent.ingest.mqtt_source import MqttSource, SourceSettings
from agent.ports import Component
from agent.sim.local_broker import LocalBroker


def release_client(client: mqtt.Client) -> None:
    """Close a stopped threaded paho client's wake-up socket pair now (a test tool: the
    agent drives paho on its loop, agent/uplink/transport.py, and has no socket pair).

    Paho closes it only when the client object is collected, which for a client caught in a
    reference cycle (callbacks that refer back to their owner) happens at some later garbage
    collection and shows up as an unclosed-socket ResourceWarning.
    """
    client.on_connect = client.on_disconnect = client.on_publish = client.on_message = None
    client.on_subscribe = None
    client._reset_sockets()  # noqa: SLF001 - paho 2.x: closes the socket and the socket pair


def publish_once(host: str, port: int, username: str, password: str, topic: str,
                 payload: bytes) -> None:
    """Connect as ``username``, publish one QoS 1 message, wait for its PUBACK, disconnect."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    c.username_pw_set(username, password)
    c.connect(host, port, 30)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
        release_client(c)


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
               what: str = "condition") -> Any:
    """Poll ``pred`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    received_mono: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A real MQTT subscriber that keeps every message it receives."""

    def __init__(self, broker: TestBroker, topic: str, username: str | None = None,
                 password: str | None = None, persistent_id: str | None = None) -> None:
        """``persistent_id``: a fixed client id with a persistent session, so the broker keeps
        messages for this subscriber while it (or, with persistence on, the broker) is down."""
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=persistent_id or f"collector-{time.monotonic_ns()}",
                                  clean_session=persistent_id is None)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.username_pw_set(username or broker.username, password or broker.password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise AssertionError(f"collector could not subscribe to {topic}")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain),
                                         time.monotonic()))

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.snapshot() if m.topic.endswith("/event")]

    def wait_for(self, pred: Callable[[list[Message]], Any], timeout: float = 10.0,
                 what: str = "messages") -> Any:
        return wait_until(lambda: pred(self.snapshot()), timeout, what=what)

    def wait_events(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.events()) >= n, timeout, what=f"{n} events")
        return self.events()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_client(self.client)


class InProcessIngester:
    """`tec-agent ingest`'s source and ingester in this process, the ingester on its own
    thread, writing to ``db``."""

    def __init__(self, settings: SourceSettings, db: IngestDb, **ingester_kw: Any) -> None:
        self.source = MqttSource(settings)
        self.ingester = Ingester(self.source, db, **ingester_kw)
        self.source.start()
        self.thread = threading.Thread(target=self.ingester.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.ingester.stop()
        self.thread.join(10)
        self.source.stop()


class TestBroker(LocalBroker):
    """A real mosquitto for one test; ``restart()`` keeps the port (outage tests)."""

    __test__ = False

    def __init__(self, workdir: Path, **kw: Any) -> None:
        super().__init__(workdir=workdir, **kw)
        self._collectors: list[Collector] = []

    def subscribe(self, topic: str, **kw: Any) -> Collector:
        c = Collector(self, topic, **kw)
        self._collectors.append(c)
        return c

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        for c in self._collectors:
            with contextlib.suppress(Exception):
                c.close()
        super().close()


def make_config(tmp_path: Path, broker: LocalBroker | None, extra: str = "",
                hub_id: str = "hub-test") -> Config:
    """A config for tests: store in ``tmp_path``, broker credentials from ``broker``."""
    text = f'hub_id = "{hub_id}"\n[store]\npath = "{tmp_path / "events.db"}"\n'
    text += '[agent]\nassume_clock_synced = true\n'
    if broker is not None:
        text += (f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                 f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n'
                 'reconnect_min_s = 0.1\nreconnect_max_s = 1.0\n')
    return parse_config_text(text + extra)


def agent_cmd(*args: str) -> list[str]:
    """``tec-agent ARGS`` as a subprocess of this interpreter (the checkout's code)."""
    import sys

    return [sys.executable, "-m", "agent", *args]


def write_config_file(tmp_path: Path, broker: LocalBroker, extra: str = "") -> Path:
    """``tmp_path/agent.toml`` for ``run``/``simulate --config``: the broker's credentials,
    quick reconnects, the store in ``tmp_path``, then ``extra``."""
    path = tmp_path / "agent.toml"
    path.write_text(
        f'hub_id = "hub-test"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{broker.username}"\npassword_file = "{broker.password_file}"\n'
        'reconnect_min_s = 0.1\nreconnect_max_s = 1.0\n'
        f'[store]\npath = "{tmp_path / "events.db"}"\n' + extra
    )
    return path


class AgentRunner:
    """Runs an :class:`Agent` on its own event loop thread, as ``tec-agent run`` would."""

    def __init__(self, config: Config, hardware: Hardware | None = None,
                 components: list[Component] | None = None, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.agent = Agent(config, hardware=hardware, components=components, **kw)
        self._thread = threading.Thread(target=self.loop.run_forever, name="agent-loop",
                                        daemon=True)

    def start(self) -> AgentRunner:
        self._thread.start()
        self.run(self.agent.start())
        return self

    def run(self, coro: Any, timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the agent's loop and return its result."""
        async def _do() -> Any:
            return fn(*args)
        return self.run(_do())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.run(self.agent.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        self.loop.close()

    def __enter__(self) -> AgentRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def with_gpio(config: Config, devices: tuple[Any, ...]) -> Config:
    return replace(config, gpio=replace(config.gpio, devices=devices, pin_factory="mock"))


def write_pki(d: Path) -> tuple[str, str, str]:
    """A throw-away CA and a server certificate for 127.0.0.1: (CA, certificate, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tec test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(paths[0]), str(paths[1]), str(paths[2])
