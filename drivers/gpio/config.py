"""Config for wired sensors and outputs on the hub's GPIO header (``[gpio]``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.config_checks import unique_entries
from drivers.gpio.kinds import FIXED_PULL_UP_PINS, KINDS

INPUT_KINDS = (
    "pir",
    "door",
    "pull_cord",
    "button",
    "bed_mat",
    "chair_mat",
    "flood",
    "smoke",
    "cancel_button",
)
OUTPUT_KINDS = ("led", "buzzer")
DEFAULT_SETTLE_S = 5.0
DEFAULT_HOLD_S = 3.0
# BCM numbering: GPIO0..27 exist on every 40-pin Pi header.
_PIN = {"min": 0, "max": 27, "doc": "BCM pin number"}
_ID = {
    "pattern": r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    "pattern_hint": "must be 1-64 of A-Z a-z 0-9 _ - (it stands in an MQTT topic level; no"
                    " '.': RabbitMQ's MQTT plugin turns '.' into '/', so the device's state"
                    " would land on another topic)",
}


@dataclass(frozen=True, slots=True)
class GpioDevice:
    id: str = field(metadata=_ID)
    kind: str = field(metadata={"choices": INPUT_KINDS + OUTPUT_KINDS})
    pin: int = field(metadata=_PIN)
    pull_up: bool | None = field(
        default=None, metadata={"doc": "internal pull-up; default per kind (contacts: true)"}
    )
    active_high: bool | None = field(
        default=None, metadata={"doc": "only when pull_up is unset (external pull resistor)"}
    )
    bounce_s: float | None = field(
        default=None, metadata={"min": 0.0, "max": 5.0, "doc": "debounce; default per kind"}
    )
    settle_s: float | None = field(
        default=None, metadata={"min": 0.0, "max": 600.0,
                                "doc": "bed_mat/chair_mat: steady seconds before occupied/vacated "
                                       "(default 5)"},
    )
    hold_s: float | None = field(
        default=None, metadata={"min": 0.5, "max": 30.0,
                                "doc": "cancel_button: a press this long raises a test "
                                       "(default 3)"},
    )
    invert: bool = field(
        default=False,
        metadata={"doc": "contact works the other way round (normally closed pull cord, "
                         "normally open door contact)"},
    )
    sample_rate_hz: float | None = field(
        default=None, metadata={"min": 1.0, "max": 1000.0, "doc": "pir: samples per second "
                                "(default 10)"},
    )
    queue_len: int | None = field(
        default=None, metadata={"min": 1, "max": 100,
                                "doc": "pir: samples averaged before motion (default 1)"},
    )
    room: str = field(default="", metadata={"doc": "room label for rules and reports"})
    role: str = field(default="", metadata={"doc": "e.g. main_entrance_door, bedroom"})

    def validate(self, path: str) -> list[str]:
        problems = []
        entry = f"(entry '{self.id}', kind {self.kind})"
        if self.pull_up is not None and self.active_high is not None:
            problems.append(f"{path}: set pull_up or active_high, not both {entry}")
        only = {
            "settle_s": ("bed_mat", "chair_mat"),
            "hold_s": ("cancel_button",),
            "sample_rate_hz": ("pir",),
            "queue_len": ("pir",),
            "pull_up": INPUT_KINDS,
            "bounce_s": INPUT_KINDS,
        }
        for key, kinds in only.items():
            if getattr(self, key) is not None and self.kind not in kinds:
                problems.append(
                    f"{path}.{key}: does not apply {entry}; only for {', '.join(kinds)}"
                )
        if self.invert and self.kind in OUTPUT_KINDS:
            problems.append(f"{path}.invert: does not apply {entry}; use active_high for outputs")
        if self.pin in FIXED_PULL_UP_PINS and self.kind in INPUT_KINDS:
            pull_up = self.pull_up
            if pull_up is None and self.active_high is None:
                pull_up = KINDS[self.kind].pull_up
            if not pull_up:
                problems.append(
                    f"{path}.pin: GPIO{self.pin} ({FIXED_PULL_UP_PINS[self.pin]}) has a fixed "
                    f"pull-up resistor, so it cannot be used without pull_up = true {entry}"
                )
        return problems

    # Effective values (the per-kind defaults live in drivers/gpio/kinds.py).
    def effective_bounce_s(self) -> float:
        if self.bounce_s is not None:
            return self.bounce_s
        return KINDS[self.kind].bounce_s if self.kind in KINDS else 0.0

    def effective_settle_s(self) -> float:
        return DEFAULT_SETTLE_S if self.settle_s is None else self.settle_s

    def effective_hold_s(self) -> float:
        return DEFAULT_HOLD_S if self.hold_s is None else self.hold_s


@dataclass(frozen=True, slots=True)
class GpioConfig:
    pin_factory: str = field(
        default="auto",
        metadata={"choices": ("auto", "mock", "lgpio", "rpigpio", "pigpio"),
                  "doc": "gpiozero pin factory; 'mock' simulates the header"},
    )
    cancel_window_s: float = field(
        default=60.0, metadata={"min": 1.0, "max": 3600.0,
                                "doc": "cancel button cancels alarms raised this recently"},
    )
    storm_events: int = field(
        default=20, metadata={"min": 2, "max": 10000,
                              "doc": "edges within storm_window_s that make a bounce storm"},
    )
    storm_window_s: float = field(default=10.0, metadata={"min": 0.1, "max": 3600.0})
    delivered_show_s: float = field(
        default=30.0, metadata={"min": 0.0, "max": 3600.0,
                                "doc": "status LED shows 'alarm delivered' this long"},
    )
    devices: tuple[GpioDevice, ...] = ()

    def validate(self, path: str) -> list[str]:
        return unique_entries(self.devices, f"{path}.devices", "pin", lambda d: d.pin,
                              show=lambda pin: f"pin {pin}")
