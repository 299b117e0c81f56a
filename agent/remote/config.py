"""Config for remote configuration and commands over MQTT (``[remote]``).

Remote management is off unless ``enabled = true``: a hub only listens on its ``config/``
and ``cmd/`` topics once trusted support keys are provisioned in ``keys_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    enabled: bool = field(
        default=False, metadata={"doc": "accept signed config pushes and commands over MQTT"}
    )
    keys_dir: str = field(
        default="/etc/tec-agent/remote-keys",
        metadata={"doc": "one <key_id>.pub (Ed25519, PEM or OpenSSH) per trusted support key"},
    )
    config_path: str | None = field(
        default=None,
        metadata={"doc": "where an accepted push is written; default: the file the agent "
                         "was started with (run --config FILE)"},
    )
    rollback_after_s: float = field(
        default=30.0,
        metadata={"min": 0.2, "max": 600.0,
                  "doc": "trial period after a push: unhealthy at its end means roll back"},
    )
    max_clock_skew_s: float = field(
        default=300.0,
        metadata={"min": 0.0, "max": 86400.0,
                  "doc": "how far in the future issued_at may be (support's clock vs ours)"},
    )
    max_message_bytes: int = field(
        default=256 * 1024, metadata={"min": 1024, "max": 16 * 1024 * 1024,
                                      "doc": "larger config/cmd messages are rejected unread"},
    )
    log_ring_lines: int = field(
        default=2000, metadata={"min": 10, "max": 100_000,
                                "doc": "log lines kept in memory for the log_tail command"},
    )
    walk_test_max_s: float = field(
        default=7200.0, metadata={"min": 10.0, "max": 86400.0,
                                  "doc": "a walk test stops by itself after this long"},
    )

    def validate(self, path: str) -> list[str]:
        problems = []
        if self.enabled and not self.keys_dir:
            problems.append(f"{path}.keys_dir: required when remote is enabled")
        if self.enabled and self.config_path == "":
            problems.append(f"{path}.config_path: empty (leave it out to mean the file the "
                            "agent was started with)")
        return problems
