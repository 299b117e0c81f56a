"""Which strings of a config are secrets, so that no log line or answer shows them.

One list for every redactor: the journal/stderr handler (``systemd_notify.RedactFilter``)
and the ``log_tail`` ring (``remote.log_ring``). Secrets are the config fields marked
``metadata["secret"]`` (BLE bindkeys) and the MQTT password, read from its file.
"""

from __future__ import annotations

import logging

from agent.config import Config
from agent.errors import ConfigError

log = logging.getLogger(__name__)


def config_secrets(config: Config) -> list[str]:
    """Every secret string ``config`` holds or names (an unreadable password file is
    skipped with a warning: check-config reports it, the agent cannot log it either)."""
    from agent.remote.documents import secret_values
    from agent.uplink.settings import read_password

    secrets = secret_values(config)
    if config.mqtt.password_file:
        try:
            secrets.append(read_password(config.mqtt.password_file))
        except ConfigError:
            log.warning("cannot read the MQTT password file to redact it from logs")
    return [s for s in secrets if s]
