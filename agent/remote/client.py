"""The support side: sign a config or command, publish it, wait for the hub's result.

Used by ``tec-agent remote``. Plain paho with its own network thread; nothing here runs on
a hub. Versions default to the current time in microseconds, so pushes from several
support staff increase without coordination; if a hub has already seen a higher version
(someone's clock ran ahead) it says so in the rejection and the push is re-signed once
with the next version.
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

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import AgentError, ConfigError
from agent.remote import envelope as env
from agent.uplink import topics

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
        f"mqtts://{broker.username + '@' if broker.username else ''}{host}:8883 "
        f"(with --ca-file if the broker's CA is not the system's), or pass --insecure for a "
        f"lab broker on a network you trust")


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
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"tec-support-{time.time_ns()}",
                                   protocol=mqtt.MQTTv311, clean_session=True)
        if broker.username:
            self._client.username_pw_set(broker.username, password)
        if broker.tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._cond = threading.Condition()
        self._messages: list[tuple[str, bytes, bool]] = []
        self._connected: str | None = None
        self._acked: set[int] = set()
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, rc, props) -> None:  # noqa: ANN001
        with self._cond:
            self._connected = "ok" if not rc.is_failure else str(rc)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._cond:
            self._messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, rcs, props) -> None:  # noqa: ANN001
        with self._cond:
            self._acked.add(mid)
            if any(rc.is_failure for rc in rcs):
                self._acked.add(-mid)
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:  # noqa: ANN001
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def _wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        with self._cond:
            value = self._cond.wait_for(pred, timeout)
            if not value:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            return value

    def connect(self, timeout: float = 10.0) -> None:
        try:
            self._client.connect(self.broker.host, self.broker.port, 30)
        except (OSError, ssl.SSLError) as exc:
            raise AgentError(
                f"cannot reach broker {self.broker.host}:{self.broker.port}: {exc}"
            ) from None
        self._client.loop_start()
        state = self._wait(lambda: self._connected, timeout, "the broker to accept us")
        if state != "ok":
            raise AgentError(f"broker refused the connection: {state}")

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        rc, mid = self._client.subscribe(topic, qos=1)
        if mid is None:
            raise AgentError(f"cannot subscribe to {topic}: {rc}")
        self._wait(lambda: mid in self._acked, timeout, f"subscription to {topic}")
        if -mid in self._acked:
            raise AgentError(f"broker refused subscription to {topic} (ACL?)")

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                timeout: float = 10.0) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        self._wait(lambda: info.mid in self._acked, timeout, f"the broker to take {topic}")

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
        from agent.uplink.mqtt_uplink import release_client

        self._client.disconnect()
        self._client.loop_stop()
        release_client(self._client)


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
) -> dict[str, Any]:
    """Sign, publish and wait for the hub's result document (with one re-sign on a
    version clash). Raises TimeoutError when the hub does not answer in time."""
    if kind == "config":
        topic, result_topic = (topics.config_topic(hub_id, "set"),
                               topics.config_topic(hub_id, "result"))
    else:
        name = body["name"]
        topic, result_topic = (topics.cmd_topic(hub_id, name),
                               topics.cmd_topic(hub_id, f"{name}/result"))
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
