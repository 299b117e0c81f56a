"""MQTT topics. These names are a contract other people script against."""

from __future__ import annotations

PREFIX = "tec/v1"


def event_topic(hub_id: str) -> str:
    return f"{PREFIX}/{hub_id}/event"


def status_topic(hub_id: str) -> str:
    return f"{PREFIX}/{hub_id}/status"


def device_topic(hub_id: str, device_id: str) -> str:
    return f"{PREFIX}/{hub_id}/device/{device_id}"


def config_topic(hub_id: str, name: str) -> str:
    return f"{PREFIX}/{hub_id}/config/{name}"


def cmd_topic(hub_id: str, name: str) -> str:
    return f"{PREFIX}/{hub_id}/cmd/{name}"
