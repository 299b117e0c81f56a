"""Config for wired sensors and outputs on the hub's GPIO header (``[gpio]``)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
# BCM numbering: GPIO0..27 exist on every 40-pin Pi header.
_PIN = {"min": 0, "max": 27, "doc": "BCM pin number"}
_ID = {
    "pattern": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
    "pattern_hint": "must be 1-64 of A-Z a-z 0-9 _ . - (it stands in an MQTT topic level)",
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
    settle_s: float = field(
        default=5.0, metadata={"min": 0.0, "max": 600.0, "doc": "mats: settle before state change"}
    )
    hold_s: float = field(
        default=3.0, metadata={"min": 0.5, "max": 30.0, "doc": "cancel_button: long press"}
    )
    room: str = field(default="", metadata={"doc": "room label for rules and reports"})
    role: str = field(default="", metadata={"doc": "e.g. main_entrance_door, bedroom"})

    def validate(self, path: str) -> list[str]:
        problems = []
        if self.pull_up is not None and self.active_high is not None:
            problems.append(f"{path}: set pull_up or active_high, not both (entry '{self.id}')")
        if self.kind in OUTPUT_KINDS and (self.pull_up is not None or self.bounce_s is not None):
            problems.append(f"{path}: pull_up/bounce_s do not apply to output '{self.id}'")
        return problems


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
    devices: tuple[GpioDevice, ...] = ()

    def validate(self, path: str) -> list[str]:
        problems: list[str] = []
        seen_pins: dict[int, str] = {}
        seen_ids: set[str] = set()
        for i, dev in enumerate(self.devices):
            where = f"{path}.devices[{i}]"
            if dev.pin in seen_pins:
                problems.append(
                    f"{where}.pin: pin {dev.pin} of '{dev.id}' already used by '{seen_pins[dev.pin]}'"
                )
            else:
                seen_pins[dev.pin] = dev.id
            if dev.id in seen_ids:
                problems.append(f"{where}.id: duplicate device id '{dev.id}'")
            seen_ids.add(dev.id)
        return problems
