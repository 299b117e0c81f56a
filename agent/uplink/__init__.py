"""MQTT uplink: delivery (outbox policy) over a transport (paho on the loop), and topics.

:func:`build_uplink` is the one place either is constructed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.config import MqttConfig
from agent.ports import EventStore
from agent.uplink import topics
from agent.uplink.delivery import Delivery, status_payload
from agent.uplink.settings import Will, settings_from_config


def build_uplink(
    config: MqttConfig,
    hub_id: str,
    store: EventStore,
    loop: asyncio.AbstractEventLoop,
    on_acked: Callable[[list[int]], None],
    on_connection: Callable[[bool], None],
) -> Delivery:
    """The agent's uplink for ``config``: a persistent session as ``tec-agent-{hub_id}``
    (or ``client_id``), with the will ``offline / connection lost`` on the status topic.
    Raises :class:`~agent.errors.ConfigError` for an unreadable password file and
    ``OSError``/``ssl.SSLError`` for unreadable TLS files, before anything connects."""
    from agent.uplink.transport import MqttTransport

    will = Will(topics.status_topic(hub_id, config.topic_prefix),
                status_payload(hub_id, "offline", "connection lost"), delay_s=config.will_delay_s)
    settings = settings_from_config(config, config.client_id or f"tec-agent-{hub_id}",
                                    persistent=True, will=will)
    transport = MqttTransport(settings, loop)
    return Delivery(config, hub_id, store, transport, loop, on_acked, on_connection)
