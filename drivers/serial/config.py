"""Config for telecare units on serial / USB-serial ports (``[[serial.units]]``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.config_checks import unique_entries

_ID = {
    "pattern": r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    "pattern_hint": "must be 1-64 of A-Z a-z 0-9 _ - (it stands in an MQTT topic level; no"
                    " '.': RabbitMQ's MQTT plugin turns '.' into '/', so the device's state"
                    " would land on another topic)",
}
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
# Contact ID account digits: 0-9 and B-F ("A" stands for 0 on the DTMF line, never in data).
ACCOUNT_PATTERN = r"[0-9B-F]{4}"


@dataclass(frozen=True, slots=True)
class SerialUnit:
    id: str = field(metadata=_ID)
    port: str = field(
        metadata={"doc": "device path (prefer /dev/serial/by-id/...), a pty, or a pyserial URL "
                         "(rfc2217://host:port, socket://host:port)"},
    )
    protocol: str = field(default="contact_id", metadata={"choices": ("contact_id",)})
    baudrate: int = field(default=9600, metadata={"choices": BAUDRATES})
    parity: str = field(default="N", metadata={"choices": ("N", "E", "O"),
                                               "doc": "N none, E even, O odd"})
    bytesize: int = field(default=8, metadata={"choices": (7, 8)})
    stopbits: int = field(default=1, metadata={"choices": (1, 2)})
    supervision_s: float = field(
        default=90.0, metadata={"min": 0.0, "max": 86400.0,
                                "doc": "no heartbeat or frame this long -> device_offline "
                                       "(0 = off; units send a heartbeat about every 30 s)"},
    )
    escalate_after_s: float = field(
        default=0.0, metadata={"min": 0.0, "max": 3600.0,
                               "doc": "send alarms not delivered upstream this long to the unit "
                                      "(delivered: the broker's PUBACK, or with mqtt.receipts "
                                      "the ingester's receipt; 0 = off)"},
    )
    account: str = field(
        default="0000", metadata={"pattern": ACCOUNT_PATTERN,
                                  "pattern_hint": "must be 4 Contact ID digits (0-9, B-F)",
                                  "doc": "account code for frames sent to the unit"},
    )
    receiver: str = field(
        default="01", metadata={"pattern": r"[0-9A-F]{2}",
                                "pattern_hint": "must be 2 hex digits",
                                "doc": "receiver number in frames sent to the unit"},
    )
    line: str = field(
        default="1", metadata={"pattern": r"[0-9A-Z]",
                               "pattern_hint": "must be one character 0-9 or A-Z",
                               "doc": "line number in frames sent to the unit"},
    )
    checksum: bool = field(
        default=False,
        metadata={"doc": "frames carry the Contact ID checksum digit after the zone"},
    )
    ack_timeout_s: float = field(default=4.0, metadata={"min": 0.5, "max": 60.0,
                                                        "doc": "wait for the unit's ACK"})
    retries: int = field(default=3, metadata={"min": 0, "max": 10,
                                              "doc": "resends of an unacknowledged frame"})
    room: str = field(default="", metadata={"doc": "where the unit is"})
    role: str = field(default="", metadata={"doc": "e.g. telecare_unit"})

    def validate(self, path: str) -> list[str]:
        problems = []
        entry = f"(unit '{self.id}')"
        if not self.port.strip():
            problems.append(f"{path}.port: must name a device or URL {entry}")
        elif "://" not in self.port and not self.port.startswith("/"):
            problems.append(f"{path}.port: must be an absolute device path or a pyserial URL, "
                            f"got {self.port!r} {entry}")
        if self.bytesize == 7 and self.parity == "N" and self.stopbits == 1:
            problems.append(f"{path}.parity: 7 data bits need parity E or O (7E1, 7O1) or "
                            f"stopbits = 2 {entry}")
        if 0 < self.supervision_s < 5:
            problems.append(f"{path}.supervision_s: below 5 s would flap; use 0 to turn off "
                            f"{entry}")
        return problems


@dataclass(frozen=True, slots=True)
class SerialConfig:
    units: tuple[SerialUnit, ...] = ()

    def validate(self, path: str) -> list[str]:
        return unique_entries(self.units, f"{path}.units", "port", lambda u: u.port,
                              id_label="unit id")
