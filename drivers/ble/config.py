"""Config for Bluetooth LE sensors and wearables (``[ble]`` and ``[[ble.devices]]``).

``bindkey`` is a secret (it decrypts the device's adverts): the field carries
``metadata["secret"] = True`` so config reports and remote ``config/current`` can redact it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.config_checks import unique_entries

KINDS = ("bthome", "wearable")
PROFILES = ("thingy52",)
BUTTON_ACTIONS = ("pendant", "cancel")
_BINDKEY = re.compile(r"[0-9A-Fa-f]{32}")
_ID = {
    "pattern": r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    "pattern_hint": "must be 1-64 of A-Z a-z 0-9 _ - (it stands in an MQTT topic level; no"
                    " '.': RabbitMQ's MQTT plugin turns '.' into '/', so the device's state"
                    " would land on another topic)",
}
_MAC = {
    "pattern": r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}",
    "pattern_hint": "must be a Bluetooth address like A4:C1:38:8D:18:B2",
}


@dataclass(frozen=True, slots=True)
class BleDevice:
    id: str = field(metadata=_ID)
    address: str = field(metadata=_MAC)
    kind: str = field(metadata={"choices": KINDS})
    bindkey: str | None = field(
        default=None,
        repr=False,  # a secret: never in logs or error messages
        metadata={
            "secret": True,
            "doc": "BTHome encryption key; when set, plaintext adverts are refused",
        },
    )
    profile: str | None = field(
        default=None, metadata={"choices": PROFILES, "doc": "wearable GATT profile"}
    )
    room: str = field(default="", metadata={"doc": "room label for rules and reports"})
    role: str = field(default="", metadata={"doc": "e.g. main_entrance_door, bedroom"})
    interval_s: float | None = field(
        default=None,
        metadata={"min": 1.0, "max": 7 * 86400.0,
                  "doc": "expected report interval; offline after missed_intervals of these"},
    )
    offline_after_s: float | None = field(
        default=None, metadata={
            "min": 10.0, "max": 30 * 86400.0,
            "doc": "explicit offline threshold (overrides the per-kind default)",
        },
    )
    button: str = field(
        default="pendant",
        metadata={"choices": BUTTON_ACTIONS,
                  "doc": "what a BTHome button press means: pendant alarm or alarm cancel"},
    )
    cold_home: bool = field(
        default=True,
        metadata={"doc": "raise cold_home from this thermometer (false: outdoor, fridge)"},
    )
    rate_hz: float = field(
        default=50.0, metadata={"min": 50.0, "max": 200.0, "doc": "wearable motion sample rate"}
    )

    @property
    def mac(self) -> str:
        return self.address.upper()

    def validate(self, path: str) -> list[str]:
        problems = []
        if self.bindkey is not None and not _BINDKEY.fullmatch(self.bindkey):
            # The value is not echoed: even a mistyped key is mostly the real key.
            problems.append(f"{path}.bindkey: must be 32 hex digits (the 16-byte BTHome "
                            f"encryption key) for device '{self.id}'")
        if self.kind == "wearable" and self.profile is None:
            problems.append(f"{path}.profile: required for a wearable"
                            f" (one of {', '.join(PROFILES)})")
        if self.kind == "bthome" and self.profile is not None:
            problems.append(f"{path}.profile: only applies to wearables (device '{self.id}')")
        if self.kind == "wearable" and self.bindkey is not None:
            problems.append(f"{path}.bindkey: only applies to BTHome devices (device '{self.id}')")
        return problems


@dataclass(frozen=True, slots=True)
class BleConfig:
    adapter: str = field(
        default="hci0",
        metadata={"pattern": r"hci[0-9]{1,2}", "pattern_hint": "must be an adapter name like hci0"},
    )
    scanning_mode: str = field(
        default="auto",
        metadata={"choices": ("auto", "passive", "active"),
                  "doc": "auto: passive where BlueZ allows (AdvertisementMonitor), else active"},
    )
    stall_timeout_s: float = field(
        default=90.0, metadata={"min": 10.0, "max": 3600.0,
                                "doc": "restart the scanner after this long without any advert"},
    )
    restarts_before_recovery: int = field(
        default=2, metadata={"min": 1, "max": 20,
                             "doc": "scanner restarts that fail before the adapter is recovered"},
    )
    recovery_min_interval_s: float = field(
        default=300.0, metadata={"min": 10.0, "max": 86400.0,
                                 "doc": "at most one adapter recovery per this interval"},
    )
    adapter_retry_min_s: float = field(default=5.0, metadata={"min": 0.1, "max": 600.0})
    adapter_retry_max_s: float = field(default=300.0, metadata={"min": 1.0, "max": 3600.0})
    battery_low_pct: float = field(
        default=20.0, metadata={"min": 1.0, "max": 99.0, "doc": "battery_low below this"}
    )
    battery_hysteresis_pct: float = field(
        default=10.0, metadata={"min": 0.0, "max": 50.0,
                                "doc": "battery_low re-arms once above battery_low_pct + this"},
    )
    cold_home_c: float = field(
        default=16.0, metadata={"min": -20.0, "max": 30.0, "doc": "cold_home below this (deg C)"}
    )
    cold_home_hysteresis_c: float = field(default=1.0, metadata={"min": 0.0, "max": 10.0})
    cold_home_delay_s: float = field(
        default=900.0, metadata={"min": 0.0, "max": 86400.0,
                                 "doc": "temperature must stay below the threshold this long"},
    )
    missed_intervals: int = field(
        default=3, metadata={"min": 1, "max": 100,
                             "doc": "offline after this many missed interval_s (when set)"},
    )
    bthome_offline_s: float = field(
        default=25 * 3600.0, metadata={
            "min": 60.0, "max": 30 * 86400.0,
            "doc": "offline threshold for BTHome devices without interval_s",
        },
    )
    wearable_offline_s: float = field(
        default=600.0, metadata={"min": 30.0, "max": 30 * 86400.0,
                                 "doc": "offline threshold for a wearable that is not streaming"},
    )
    state_interval_s: float = field(
        default=300.0, metadata={"min": 1.0, "max": 86400.0,
                                 "doc": "refresh retained device state at most this often"},
    )
    telemetry_interval_s: float = field(
        default=300.0, metadata={"min": 0.0, "max": 86400.0,
                                 "doc": "at most one telemetry reading per device per interval"},
    )
    duplicate_window_s: float = field(
        default=60.0, metadata={
            "min": 1.0, "max": 3600.0,
            "doc": "an advert repeating the last packet id within this is dropped",
        },
    )
    reconnect_min_s: float = field(default=2.0, metadata={"min": 0.05, "max": 600.0})
    reconnect_max_s: float = field(default=120.0, metadata={"min": 1.0, "max": 3600.0})
    battery_poll_s: float = field(
        default=900.0,
        metadata={"min": 10.0, "max": 86400.0, "doc": "wearable battery read interval"},
    )
    devices: tuple[BleDevice, ...] = ()

    def validate(self, path: str) -> list[str]:
        problems = unique_entries(self.devices, f"{path}.devices", "address", lambda d: d.mac)
        if self.adapter_retry_min_s > self.adapter_retry_max_s:
            problems.append(f"{path}.adapter_retry_min_s: greater than adapter_retry_max_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            problems.append(f"{path}.reconnect_min_s: greater than reconnect_max_s")
        return problems

    def offline_after(self, dev: BleDevice) -> float:
        """Seconds of silence after which ``dev`` is reported offline (per kind, overridable)."""
        if dev.offline_after_s is not None:
            return dev.offline_after_s
        if dev.interval_s is not None:
            return self.missed_intervals * dev.interval_s
        return self.wearable_offline_s if dev.kind == "wearable" else self.bthome_offline_s
