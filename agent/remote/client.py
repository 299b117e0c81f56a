"""The support side: sign a config or command, publish it, wait for the hub's result.

Used by ``tec-agent remote``. The hub's own transport on a private loop thread
(:class:`~agent.uplink.transport.BlockingClient`); nothing here runs on a hub. Versions
default to the current time in microseconds, so pushes from several support staff increase
without coordination; if a hub has already seen a higher version (someone's clock ran
ahead) it says so in the rejection and the push is re-signed once with the next version.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import AgentError, ConfigError
from agent.ports import InboundMessage, PublishState
from agent.remote import envelope as env
from agent.uplink import topics
from agent.uplink.settings import ClientSettings
from agent.uplink.transport import BlockingClient

log = logging.getLogger(__name__)

CONFIG_TTL_S = 30 * 86400.0  # a retained desired config must outlive a long outage
CMD_TTL_S = 300.0            # a command is for now, not for whenever the hub is back


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None
    tls: bool


def parse_broker_url(url: str) -> BrokerUrl:
    """``mqtt://user@host:1883`` or ``mqtts://user@host:8883`` (port defaults by scheme)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"--broker {url!r}: expected mqtt[s]://[user@]host[:port]")
    if parts.password is not None:
        raise ConfigError("--broker: put the password in --password-file, not in the URL")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"--broker {url!r}: bad port") from None
    user = unquote(parts.username) if parts.username else None
    return BrokerUrl(parts.hostname, port, user, parts.scheme == "mqtts")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves
    this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(broker: BrokerUrl, insecure: bool = False) -> None:
    """Refuse plaintext MQTT off this machine: the support password and every signed push
    (which may carry a secret, e.g. a new bindkey) would cross the network readable."""
    if broker.tls or insecure or is_loopback(broker.host):
        return
    host = f"[{broker.host}]" if ":" in broker.host else broker.host
    raise ConfigError(
        f"--broker mqtt://{host}:{broker.port} is plaintext to another machine: the "
        f"broker password and the pushed configs would travel readable. Use TLS: "
        f"mqtts://{broker.username + '@' if broker.username else ''}{host}:8884 (the staff "
        f"listener of the shipped broker profile, packaging/mosquitto; its 8883 takes hubs "
        f"only), with --ca-file if the broker's CA is not the system's; or pass --insecure "
        f"for a lab broker on a network you trust")


def sign(key: Ed25519PrivateKey, payload: bytes) -> bytes:
    return env.wrap(payload, key.sign(env.DOMAIN + payload))


def new_version() -> int:
    return time.time_ns() // 1000


class SupportClient:
    """One MQTT connection that publishes and collects what comes back."""

    def __init__(self, broker: BrokerUrl, password: str | None = None,
                 ca_file: str | None = None, insecure: bool = False) -> None:
        """``insecure``: allow plaintext ``mqtt://`` to a broker that is not on loopback
        (refused otherwise, see :func:`check_transport`)."""
        check_transport(broker, insecure)
        self.broker = broker
        self._settings = ClientSettings(
            host=broker.host, port=broker.port, client_id=f"tec-support-{time.time_ns()}",
            protocol="3.1.1", persistent=False, keepalive_s=30,
            username=broker.username or None, password=password if broker.username else None,
            tls=broker.tls, tls_ca_file=ca_file if broker.tls else None,
        )
        self._client: BlockingClient | None = None
        self._cond = threading.Condition()
        self._messages: list[tuple[str, bytes, bool]] = []
        self._connected: str | None = None
        self._acked: set[int] = set()
        self._granted: dict[str, bool] = {}

    # TransportListener, on the client's thread
    def on_connected(self, session_present: bool) -> None:
        with self._cond:
            self._connected = "ok"
            self._cond.notify_all()

    def on_disconnected(self, reason: str) -> None:
        with self._cond:
            if self._connected is None:
                self._connected = reason
            self._cond.notify_all()

    def on_puback(self, mid: int, failed: bool) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def _on_message(self, msg: InboundMessage) -> None:
        with self._cond:
            self._messages.append((msg.topic, msg.payload, msg.retain))
            self._cond.notify_all()

    def _wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        with self._cond:
            value = self._cond.wait_for(pred, timeout)
            if not value:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            return value

    def connect(self, timeout: float = 10.0) -> None:
        try:
            self._client = BlockingClient(self._settings)
            self._client.set_listener(self)
            self._client.connect(timeout)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.close()
            raise AgentError(
                f"cannot reach broker {self.broker.host}:{self.broker.port}: {exc}"
            ) from None
        state = self._wait(lambda: self._connected, timeout, "the broker to accept us")
        if state != "ok":
            hint = ""
            if not self.broker.tls and state == "Unspecified error":
                # What a TLS listener does to a plaintext CONNECT: it closes the connection.
                hint = (" (it closed the connection without answering: if this port is a TLS "
                        "listener, use mqtts://)")
            raise AgentError(f"broker refused the connection: {state}{hint}")

    def _live(self) -> BlockingClient:
        if self._client is None:
            raise AgentError("not connected")
        return self._client

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        def granted(ok: bool) -> None:
            with self._cond:
                self._granted[topic] = ok
                self._cond.notify_all()

        with self._cond:
            self._granted.pop(topic, None)
        self._live().subscribe(topic, self._on_message, granted)
        self._wait(lambda: topic in self._granted, timeout, f"subscription to {topic}")
        if not self._granted[topic]:
            raise AgentError(f"broker refused subscription to {topic} (ACL?)")

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                timeout: float = 10.0) -> None:
        sent = self._live().publish(topic, payload, qos=1, retain=retain)
        if sent.state is PublishState.FAILED:
            raise AgentError(f"cannot publish to {topic}: {sent.error}")
        self._wait(lambda: sent.mid in self._acked, timeout, f"the broker to take {topic}")

    def mark(self) -> int:
        """A position in the received messages, for :meth:`wait_message` ``start``."""
        with self._cond:
            return len(self._messages)

    def wait_message(self, pred: Callable[[str, dict[str, Any], bool], bool],
                     timeout: float, what: str, start: int = 0) -> dict[str, Any]:
        """The first JSON message received from position ``start`` on (already here or
        arriving within ``timeout``) for which ``pred`` holds."""
        seen = start

        def find() -> dict[str, Any] | None:
            nonlocal seen
            while seen < len(self._messages):
                topic, payload, retained = self._messages[seen]
                seen += 1
                try:
                    doc = json.loads(payload)
                except ValueError:
                    continue
                if isinstance(doc, dict) and pred(topic, doc, retained):
                    return doc
            return None

        return self._wait(find, timeout, what)

    def received(self, start: int = 0) -> list[tuple[str, bytes, bool]]:
        """``(topic, payload, retained)`` of every message received from position ``start``."""
        with self._cond:
            return list(self._messages[start:])

    def retained(self, topic: str) -> dict[str, Any] | None:
        with self._cond:
            for t, payload, retained in reversed(self._messages):
                if t == topic and retained:
                    try:
                        doc = json.loads(payload)
                    except ValueError:
                        return None
                    return doc if isinstance(doc, dict) else None
        return None

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()


def request(
    client: SupportClient,
    key: Ed25519PrivateKey,
    key_id: str,
    hub_id: str,
    kind: str,
    body: dict[str, Any],
    ttl_s: float,
    timeout: float,
    version: int | None = None,
    retain: bool = False,
    prefix: str = "",
) -> dict[str, Any]:
    """Sign, publish and wait for the hub's result document (with one re-sign on a
    version clash). Raises TimeoutError when the hub does not answer in time."""
    if kind == "config":
        topic, result_topic = (topics.config_topic(hub_id, "set", prefix),
                               topics.config_topic(hub_id, "result", prefix))
    else:
        name = body["name"]
        topic, result_topic = (topics.cmd_topic(hub_id, name, prefix),
                               topics.cmd_topic(hub_id, f"{name}/result", prefix))
    client.subscribe(result_topic)
    chosen = version or new_version()
    for attempt in range(2):
        payload = env.build_payload(kind, hub_id, key_id, chosen, time.time(), ttl_s, body)
        client.publish(topic, sign(key, payload), retain=retain)
        def answer(t: str, d: dict[str, Any], r: bool, v: int = chosen) -> bool:
            return t == result_topic and d.get("version") == v

        doc = client.wait_message(answer, timeout, f"the hub's answer on {result_topic}")
        last = doc.get("last_version")
        if (doc.get("reason") == env.REPLAYED and version is None and attempt == 0
                and isinstance(last, int) and last >= chosen):
            log.warning("hub has seen version %d already; re-signing as %d", last, last + 1)
            chosen = last + 1
            continue
        return doc
    return doc
