"""``[arc]``: the alarm path to the Alarm Receiving Centre (SIA DC-09 over IP).

The names ``account``, ``supervision_s``, ``priorities``, ``receivers`` and, per receiver,
``host``, ``port``, ``protocol``, ``key_file`` are fixed by issue 19 (contracts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The standard's limits (SIA DC-09): account 3-16 hex digits, receiver/line prefixes 1-6,
# AES-128/192/256 keys. Here, not in dc09.py: agent.config loads this schema without the codec.
ACCOUNT_PATTERN = r"[0-9A-Fa-f]{3,16}"
PREFIX_PATTERN = r"[0-9A-Fa-f]{1,6}"
KEY_SIZES = (16, 24, 32)


@dataclass(frozen=True, slots=True)
class ArcReceiver:
    host: str = field(metadata={"doc": "receiver host name or address"})
    port: int = field(metadata={"min": 1, "max": 65535})
    protocol: str = field(default="tcp", metadata={"choices": ("tcp", "udp")})
    key_file: str | None = field(
        default=None, metadata={"file": True,
                                "doc": "AES-128/192/256 key as 32/48/64 hex digits; encrypts"
                                       " when set"},
    )
    receiver_prefix: str = field(
        default="0", metadata={"pattern": f"|{PREFIX_PATTERN}", "pattern_hint":
                               "must be 1-6 hex digits (or empty: no receiver field)",
                               "doc": "DC-09 receiver number (Rrcvr), as the ARC assigned"},
    )
    line_prefix: str = field(
        default="0", metadata={"pattern": PREFIX_PATTERN, "pattern_hint": "must be 1-6 hex digits",
                               "doc": "DC-09 account prefix (Lpref), as the ARC assigned"},
    )

    def validate(self, path: str) -> list[str]:
        if self.key_file is None:
            return []
        try:
            read_key(self.key_file)
        except ValueError as exc:
            return [f"{path}.key_file: {exc}"]
        except OSError:
            return []  # reported by the file check
        return []


def read_key(path: str) -> bytes:
    """The AES key in ``path``: 32, 48 or 64 hex digits on the first line. The message
    never shows the key."""
    with open(path, encoding="ascii", errors="replace") as fh:
        text = fh.readline().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("the first line must be the key in hex (not shown)") from None
    if len(key) not in KEY_SIZES:
        raise ValueError(f"key must be 32, 48 or 64 hex digits (AES-128/192/256), got"
                         f" {len(text)} characters (not shown)")
    return key


@dataclass(frozen=True, slots=True)
class ArcConfig:
    account: str = field(
        default="", metadata={"pattern": f"|{ACCOUNT_PATTERN}",
                              "pattern_hint": "must be 3-16 hex digits, as the ARC assigned",
                              "doc": "account at the ARC; empty: no ARC path"},
    )
    supervision_s: int = field(
        default=300, metadata={"min": 0, "max": 86400, "doc": "NULL (link test) interval; 0 = off"}
    )
    priorities: tuple[str, ...] = field(
        default=("alarm",), metadata={"choices": ("alarm", "warning", "info"),
                                      "doc": "which event priorities go to the ARC"},
    )
    warning_types: tuple[str, ...] = field(
        default=(), metadata={"doc": "when 'warning' is in priorities: only these warning types"
                                     " (empty: every mapped warning)"},
    )
    format: str = field(default="ADM-CID", metadata={"choices": ("ADM-CID", "SIA-DCS")})
    timeout_s: float = field(
        default=5.0, metadata={"min": 0.2, "max": 60.0,
                               "doc": "wait this long for ACK/NAK/DUH before sending again"},
    )
    retries: int = field(
        default=3, metadata={"min": 1, "max": 20,
                             "doc": "attempts on one receiver before moving to the next"},
    )
    retry_max_s: float = field(
        default=30.0, metadata={"min": 0.5, "max": 600.0,
                                "doc": "pause cap between rounds over all receivers"},
    )
    receivers: tuple[ArcReceiver, ...] = field(default=())

    @property
    def enabled(self) -> bool:
        return bool(self.account and self.receivers)

    def validate(self, path: str) -> list[str]:
        prefix = f"{path}." if path else ""
        problems = []
        if self.account and not self.receivers:
            problems.append(f"{prefix}receivers: at least one receiver is needed with an account")
        if self.receivers and not self.account:
            problems.append(f"{prefix}account: required when receivers are configured")
        if "alarm" not in self.priorities and self.priorities:
            problems.append(f"{prefix}priorities: must include 'alarm' (alarms always go to"
                            " the ARC)")
        return problems
