"""MQTT topics. These names are a contract other people script against.

``prefix`` is the tenant level above ``tec/v1`` (``mqtt.topic_prefix``, e.g. ``council-a``
gives ``council-a/tec/v1/{hub_id}/event``); empty, the default, keeps ``tec/v1`` exactly.
"""

from __future__ import annotations

import re

from agent.config import TOPIC_PREFIX_PATTERN

PREFIX = "tec/v1"


def root(prefix: str = "") -> str:
    """``tec/v1``, or ``{prefix}/tec/v1`` for a tenant."""
    return f"{prefix}/{PREFIX}" if prefix else PREFIX


def check_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a tenant prefix, or None if it can."""
    if prefix == "" or re.fullmatch(TOPIC_PREFIX_PATTERN, prefix):
        return None
    return ("must be empty or 1-4 topic levels of A-Z a-z 0-9 _ - separated by '/' "
            "(no wildcards, no '$', no leading or trailing '/')")


def event_topic(hub_id: str, prefix: str = "") -> str:
    return f"{root(prefix)}/{hub_id}/event"


def status_topic(hub_id: str, prefix: str = "") -> str:
    return f"{root(prefix)}/{hub_id}/status"


def device_topic(hub_id: str, device_id: str, prefix: str = "") -> str:
    return f"{root(prefix)}/{hub_id}/device/{device_id}"


def config_topic(hub_id: str, name: str, prefix: str = "") -> str:
    return f"{root(prefix)}/{hub_id}/config/{name}"


def cmd_topic(hub_id: str, name: str, prefix: str = "") -> str:
    return f"{root(prefix)}/{hub_id}/cmd/{name}"


def receipt_topic(hub_id: str, prefix: str = "") -> str:
    """The ingester's end-to-end receipts to the hub (``{"ids": [...]}``: stored)."""
    return f"{root(prefix)}/{hub_id}/receipt"


def split(topic: str, prefix: str = "") -> tuple[str, str] | None:
    """``(hub_id, rest)`` of a topic under this tenant's root (``rest`` e.g. ``event``,
    ``status``, ``device/cord-1``), or None for a topic outside it."""
    head = root(prefix) + "/"
    if not topic.startswith(head):
        return None
    hub_id, sep, rest = topic[len(head):].partition("/")
    if not hub_id or not sep or not rest:
        return None
    return hub_id, rest
