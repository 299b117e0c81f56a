"""Agent configuration: TOML into frozen dataclasses, validated once at load.

``load_config(path)`` raises :class:`ConfigError` listing every problem with its key path.
A new configuration (e.g. pushed by support staff) is a new object; nothing edits one in place.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.arc.config import ArcConfig
from agent.config.schema import load_dataclass, to_dict
from agent.errors import ConfigError
from agent.fall.config import FallConfig
from agent.inactivity.config import InactivityConfig
from agent.remote.config import RemoteConfig
from agent.report.config import ReportConfig
from drivers.ble.config import BleConfig
from drivers.gpio.config import GpioConfig
from drivers.serial.config import SerialConfig

# No '.': RabbitMQ's MQTT plugin maps '.' to '/' (MQTT topics become AMQP routing keys), so
# a hub "hub.7" publishes on tec/v1/hub/7/event, which tec/v1/+/event does not match, and
# commands to it are dropped.
HUB_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"

# One or more topic levels of letters, digits, '_' and '-': no wildcards, no '$' (reserved
# for broker topics), no empty level, no leading or trailing '/'. (Here, not in
# agent.uplink.topics: the uplink depends on the config, not the other way round.)
TOPIC_PREFIX_PATTERN = r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = field(default="127.0.0.1", metadata={"doc": "broker host name or address"})
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    username: str | None = field(default=None, metadata={"doc": "MQTT user name"})
    password_file: str | None = field(
        default=None, metadata={"file": True, "doc": "first line is the password"}
    )
    tls_ca_file: str | None = field(
        default=None, metadata={"file": True, "doc": "CA bundle; TLS is on when set"}
    )
    tls_cert_file: str | None = field(default=None, metadata={"file": True})
    tls_key_file: str | None = field(default=None, metadata={"file": True})
    protocol: str = field(default="5", metadata={"choices": ("5", "3.1.1")})
    client_id: str | None = field(default=None, metadata={"doc": "default tec-agent-{hub_id}"})
    keepalive_s: int = field(default=30, metadata={"min": 5, "max": 3600})
    session_expiry_s: int = field(
        default=7 * 24 * 3600, metadata={"min": 0, "max": 2**32 - 1,
                                         "doc": "MQTT 5 persistent session lifetime"},
    )
    max_inflight: int = field(
        default=20, metadata={"min": 1, "max": 1000, "doc": "unacknowledged publishes at once"}
    )
    will_delay_s: int = field(
        default=5, metadata={"min": 0, "max": 86400,
                             "doc": "MQTT 5 Will Delay Interval: the broker publishes 'offline' "
                                    "only if the hub is not back within this time (a blip does "
                                    "not flap the status); at most session_expiry_s"},
    )
    # 4 s: a fleet's hubs, dropped at once by a broker restart, come back spread over 4 s
    # (0.5 s: 1,000 hubs on one mosquitto had not recovered after 15 min, issue 20); ends
    # before will_delay_s (5 s, no 'offline' flap) and within reconnect_alarm_s (5 s).
    reconnect_min_s: float = field(
        default=4.0, metadata={"min": 0.05, "max": 60.0,
                               "doc": "the first reconnect waits a random 0..this many seconds "
                                      "(a fleet's reconnects after a broker restart spread "
                                      "over it); then jittered backoff doubling from here"},
    )
    reconnect_max_s: float = field(default=60.0, metadata={"min": 1.0, "max": 3600.0})
    reconnect_alarm_s: float = field(
        default=5.0, metadata={"min": 0.5, "max": 3600.0,
                               "doc": "reconnect wait cap while an alarm is waiting to be sent"},
    )
    receipts: str = field(
        default="auto", metadata={
            "choices": ("auto", "on", "off"),
            "doc": "end-to-end receipts: an alarm, warning or info event leaves the hub's store "
                   "only when the service's ingester confirms it stored it (tec/v1/{hub_id}/"
                   "receipt), not on the broker's PUBACK; unconfirmed events are sent again. "
                   "auto: on once a receipt has ever arrived; off: the PUBACK is final",
        },
    )
    receipt_timeout_s: float = field(
        default=60.0, metadata={"min": 5.0, "max": 86400.0,
                                "doc": "send an event again if its receipt has not come this "
                                       "long after the broker's PUBACK (doubling per retry, "
                                       "to 1 h)"},
    )
    receipt_timeout_alarm_s: float = field(
        default=10.0, metadata={"min": 2.0, "max": 86400.0,
                                "doc": "the same for alarms (never longer than "
                                       "receipt_timeout_s); receipts came 61 ms after the "
                                       "PUBACK in the median, 164 ms at most, at 1,000 hubs"},
    )
    topic_prefix: str = field(
        default="", metadata={
            "pattern": f"|{TOPIC_PREFIX_PATTERN}",
            "pattern_hint": "must be empty or 1-4 topic levels of A-Z a-z 0-9 _ - separated by"
                            " '/' (no wildcards, no '$', no leading or trailing '/')",
            "doc": "tenant level above tec/v1 (e.g. \"council-a\" gives council-a/tec/v1/...);"
                   " empty keeps tec/v1",
        },
    )
    allow_insecure: bool = field(
        default=False,
        metadata={"doc": "permit plaintext to a non-loopback broker (never in production)"},
    )

    def validate(self, path: str) -> list[str]:
        problems = []
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append(f"{path}.tls_key_file: tls_cert_file and tls_key_file go together")
        if self.tls_cert_file and not self.tls_ca_file:
            problems.append(f"{path}.tls_ca_file: required when tls_cert_file is set")
        if not self.tls_ca_file and not self.allow_insecure and not _is_loopback(self.host):
            problems.append(
                f"{path}.tls_ca_file: required for non-loopback broker '{self.host}' "
                "(set mqtt.allow_insecure = true only for a lab)"
            )
        if self.password_file and not self.username:
            problems.append(f"{path}.username: required when password_file is set")
        if self.password_file and _first_line_empty(self.password_file):
            problems.append(f"{path}.password_file: {self.password_file} is empty (or its first "
                            "line is): put the broker password on its first line")
        if self.reconnect_min_s > self.reconnect_max_s:
            problems.append(f"{path}.reconnect_min_s: greater than reconnect_max_s")
        if self.will_delay_s > self.session_expiry_s:
            # The broker sends the will when the session ends, whichever comes first.
            problems.append(f"{path}.will_delay_s: greater than session_expiry_s "
                            f"({self.session_expiry_s})")
        return problems


def _first_line_empty(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return not fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return False  # not found or unreadable: reported as such by the file check


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = field(default="/var/lib/tec-agent/events.db", metadata={"doc": "SQLite file"})
    max_mb: int = field(default=256, metadata={"min": 1, "max": 1_000_000})
    reserve_mb: float = field(
        default=4.0, metadata={
            "min": 0.0, "max": 1024.0,
            "doc": "kept back on disk for alarms and warnings when the card fills (at most"
                   " a quarter of the free disk); the WAL is kept to half of it",
        },
    )
    telemetry_commit_s: float = field(
        default=1.0, metadata={"min": 0.0, "max": 30.0,
                               "doc": "telemetry is group-committed this often (SD card wear);"
                                      " alarms, warnings and info commit at once"},
    )
    keep_history_days: int = field(
        default=400, metadata={"min": 0, "max": 3650,
                               "doc": "delivered non-telemetry events kept for reports"},
    )


@dataclass(frozen=True, slots=True)
class AgentSettings:
    log_level: str = field(
        default="INFO", metadata={"choices": ("DEBUG", "INFO", "WARNING", "ERROR")}
    )
    assume_clock_synced: bool | None = field(
        default=None, metadata={"doc": "override the kernel's NTP sync flag (tests, labs)"}
    )
    timezone: str = field(default="Europe/London", metadata={"doc": "the home's local time"})
    shutdown_timeout_s: float = field(default=4.0, metadata={"min": 0.5, "max": 30.0})


@dataclass(frozen=True, slots=True)
class Config:
    hub_id: str = field(
        metadata={
            "pattern": HUB_ID_PATTERN,
            "pattern_hint": "must be 1-64 of A-Z a-z 0-9 _ - (it stands in an MQTT topic level;"
                            " no '.': RabbitMQ's MQTT plugin turns '.' into '/', so the hub's"
                            " events would miss tec/v1/+/event and commands to it be dropped)",
        }
    )
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    agent: AgentSettings = field(default_factory=AgentSettings)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    ble: BleConfig = field(default_factory=BleConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
    fall: FallConfig = field(default_factory=FallConfig)
    inactivity: InactivityConfig = field(default_factory=InactivityConfig)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    arc: ArcConfig = field(default_factory=ArcConfig)

    def validate(self, path: str) -> list[str]:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        problems = []
        try:
            ZoneInfo(self.agent.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"agent.timezone: unknown time zone {self.agent.timezone!r}")
        ids: dict[str, str] = {}
        for section, dev_id in self.device_ids():
            if dev_id in ids:
                problems.append(f"{section}: device id '{dev_id}' also used in {ids[dev_id]}")
            ids.setdefault(dev_id, section)
        return problems

    def device_ids(self) -> list[tuple[str, str]]:
        """(config section, device id) for every configured device, across drivers."""
        return [(f"gpio.devices[{i}]", d.id) for i, d in enumerate(self.gpio.devices)] + [
            (f"ble.devices[{i}]", d.id) for i, d in enumerate(self.ble.devices)
        ] + [(f"serial.units[{i}]", u.id) for i, u in enumerate(self.serial.units)]

    def fall_detector_runs(self) -> bool:
        """The fall detector is built: enabled, and a wearable to watch (``[fall]
        wearables`` or a BLE wearable). Without one the inference runtime is never loaded."""
        return self.fall.enabled and bool(
            self.fall.wearables or any(d.kind == "wearable" for d in self.ble.devices))


def parse_config(doc: dict[str, Any], source: str = "config") -> Config:
    errors: list[str] = []
    cfg = load_dataclass(Config, doc, "", errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def parse_config_text(text: str, source: str = "config") -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return parse_config(doc, source)


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    return parse_config_text(text, str(p))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return to_dict(cfg)


__all__ = [
    "AgentSettings",
    "Config",
    "MqttConfig",
    "StoreConfig",
    "config_to_dict",
    "load_config",
    "parse_config",
    "parse_config_text",
]
