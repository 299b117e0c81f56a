"""How to reach the broker, as one value every MQTT client of ours is built from.

The agent's uplink, the support CLI (``tec-agent remote``) and the simulator's watcher all
turn their options into a :class:`ClientSettings` and hand it to the one client builder in
:mod:`agent.uplink.transport`, so TLS (CA, client certificate and key), the password file,
the protocol version and the client id are applied the same way for each of them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.config import MqttConfig
from agent.errors import ConfigError


def read_password(path: str, what: str = "mqtt.password_file") -> str:
    """First line of the password file, without its newline (``what`` names it in errors)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def backoff_delays(first: float, cap: float, rng: random.Random | None = None) -> Iterator[float]:
    """Exponential backoff with jitter: each delay uniform in [d/2, d], d doubling to ``cap``."""
    rng = rng or random.Random()
    d = first
    while True:
        yield rng.uniform(d / 2, d)
        d = min(d * 2, cap)


def reconnect_delays(window: float, cap: float,
                     rng: random.Random | None = None) -> Iterator[float]:
    """The waits before each reconnect: the first uniform in [0, ``window``], then
    :func:`backoff_delays` from ``2 x window`` (uniform in [window, 2 x window], doubling to
    ``cap``).

    Why the first is spread from 0: a broker restart drops every hub of a fleet at the same
    instant, and each hub's first attempt is where they collide. Uniform over [0, W] puts
    N/W attempts a second on the broker, half the rate of [W/2, W] for the same longest
    wait, and a lone hub waits W/2 on average instead of 3/4 W. The later waits keep their
    lower bound of half the step, so a broker that accepts and drops each connection is
    still not hammered (issue 20). ``window`` is ``mqtt.reconnect_min_s``.
    """
    rng = rng or random.Random()
    yield rng.uniform(0.0, window)
    yield from backoff_delays(min(2.0 * window, cap), cap, rng)


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True
    delay_s: int = 0     # MQTT 5 Will Delay Interval (3.1.1 has none: published at once)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Everything needed to build and drive one MQTT client. ``password`` never appears in
    a repr (logs)."""

    host: str
    port: int
    client_id: str
    protocol: str = "5"                 # "5" or "3.1.1"
    persistent: bool = False            # keep the session (QoS 1 messages) across connects
    session_expiry_s: int = 0           # MQTT 5, when persistent
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False                   # on with tls_ca_file; without it: the system's CAs
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_inflight: int = 20
    will: Will | None = None
    # The first reconnect waits uniform [0, reconnect_min_s] (reconnect_delays). 0.5 s
    # suits one client alone (the support CLI); the agent's comes from [mqtt] (4 s: a fleet).
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 60.0
    reconnect_alarm_s: float = 5.0
    manual_ack: bool = False            # PUBACK only when the owner calls ack() (ingester)
    receive_maximum: int = 0            # MQTT 5: messages unacknowledged to us (0: broker's)
    # A subscription whose SUBSCRIBE cost the connection (RabbitMQ after losing the node of
    # the session's queue) is retried after this, doubling up to costly_sub_retry_max_s.
    costly_sub_retry_s: float = 30.0
    costly_sub_retry_max_s: float = 300.0


def settings_from_config(cfg: MqttConfig, client_id: str, *, persistent: bool,
                         will: Will | None = None) -> ClientSettings:
    """The ``[mqtt]`` section as client settings (reads the password file: a missing file
    is a :class:`ConfigError` here, before any connection is touched)."""
    password = read_password(cfg.password_file) if cfg.username and cfg.password_file else None
    return ClientSettings(
        host=cfg.host, port=cfg.port, client_id=client_id, protocol=cfg.protocol,
        persistent=persistent, session_expiry_s=cfg.session_expiry_s,
        keepalive_s=cfg.keepalive_s, username=cfg.username or None, password=password,
        tls=bool(cfg.tls_ca_file), tls_ca_file=cfg.tls_ca_file,
        tls_cert_file=cfg.tls_cert_file, tls_key_file=cfg.tls_key_file,
        max_inflight=cfg.max_inflight, will=will, reconnect_min_s=cfg.reconnect_min_s,
        reconnect_max_s=cfg.reconnect_max_s, reconnect_alarm_s=cfg.reconnect_alarm_s,
    )
