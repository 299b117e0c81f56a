"""The remote commands: what support can ask a hub to do or tell.

Each handler takes the verified envelope's ``args`` and returns a JSON-able dict (the
``result`` of ``cmd/{name}/result``) or raises :class:`Rejected` for bad arguments. None
of them changes configuration; all of them are cheap enough to run on the agent loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.model import Priority, Reading, iso_utc
from agent.ports import RemoteHost
from agent.remote import envelope as env
from agent.remote.envelope import Rejected
from agent.remote.log_ring import LogRing
from agent.remote.walk_test import WalkTest

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR}


def _arg(args: dict[str, Any], key: str, kind: type, default: Any, lo: float | None = None,
         hi: float | None = None, choices: tuple[Any, ...] | None = None) -> Any:
    value = args.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise Rejected(env.INVALID_ARGS, f"args.{key}: expected {kind.__name__}")
    number: Any = value
    if lo is not None and number < lo or hi is not None and number > hi:
        raise Rejected(env.INVALID_ARGS, f"args.{key}: expected {lo}..{hi}")
    if choices is not None and value not in choices:
        raise Rejected(env.INVALID_ARGS, f"args.{key}: expected one of {', '.join(choices)}")
    return value


def _no_other_args(args: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(args) - allowed)
    if extra:
        raise Rejected(env.INVALID_ARGS, f"unknown argument(s): {', '.join(extra)}")


class Commands:
    def __init__(self, host: RemoteHost, walk: WalkTest, ring: LogRing,
                 config_version: Callable[[], int], restart: Callable[[str], None]) -> None:
        self.host = host
        self.walk = walk
        self.ring = ring
        self._config_version = config_version
        self._restart = restart
        self.handlers: dict[str, Handler] = {
            "test_alarm": self.test_alarm,
            "walk_test": self.walk_test,
            "device_inventory": self.device_inventory,
            "status": self.status,
            "log_tail": self.log_tail,
            "restart": self.restart,
        }

    async def test_alarm(self, args: dict[str, Any]) -> dict[str, Any]:
        """A ``test`` event through the whole path: reading, store, broker. The result says
        whether the broker acknowledged it within ``wait_s``."""
        _no_other_args(args, {"wait_s"})
        wait_s = _arg(args, "wait_s", float, 10.0, 0.0, 60.0)
        reading = Reading("remote", "test", Priority.INFO,
                          {"source": "remote", "room": "", "role": ""})
        self.host.emit_reading(reading)
        deadline = time.monotonic() + wait_s
        while self.host.event_delivered(reading.id) is not True and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return {"event_id": reading.id, "delivered": self.host.event_delivered(reading.id) is True}

    async def walk_test(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_other_args(args, {"action", "duration_s"})
        action = _arg(args, "action", str, "status", choices=("start", "stop", "status"))
        if action == "start":
            duration = _arg(args, "duration_s", float, 900.0, 10.0, self.walk.max_s)
            return self.walk.start(duration)
        if action == "stop":
            return self.walk.stop([dev for _, dev in self.host.config.device_ids()])
        return self.walk.status()

    async def device_inventory(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_other_args(args, set())
        devices = [dataclasses.asdict(d) for d in self.host.devices()]
        configured = [{"section": s, "id": d} for s, d in self.host.config.device_ids()]
        reported = {d["device_id"] for d in devices}
        return {"devices": devices, "configured": configured,
                "not_reported": sorted(c["id"] for c in configured if c["id"] not in reported)}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_other_args(args, set())
        host = self.host
        store = host.store_figures()
        store_dir = Path(host.config.store.path).resolve().parent
        try:
            usage = shutil.disk_usage(store_dir)
            disk = {"path": str(store_dir), "free_mb": round(usage.free / 2**20, 1),
                    "total_mb": round(usage.total / 2**20, 1)}
        except OSError as exc:
            disk = {"path": str(store_dir), "error": str(exc)}
        uplink = host.uplink_figures()
        state = host.state
        return {
            "versions": {"agent": __version__, "python": sys.version.split()[0],
                         "platform": platform.platform()},
            "uptime_s": round(host.uptime_s(), 1),
            "online": uplink.online,
            "backlog": {"total": store.backlog_total, **store.backlog_counts},
            "oldest_pending_age_s": {k: round(max(0.0, time.time() - v), 1)
                                     for k, v in store.oldest_wall.items()},
            "alarm_pending": state.alarm_pending,
            "clock": {"synced": host.clock.synced(), "wall": iso_utc(host.clock.wall())},
            "disk": disk,
            "store": {"used_mb": round(store.used_bytes / 2**20, 2),
                      "evicted": dict(store.evicted), "dropped": dict(store.dropped)},
            "uplink": {"connects": uplink.connects, "published": uplink.published,
                       "acked": uplink.acked, "inflight": uplink.inflight},
            "config_version": self._config_version(),
            "components": host.component_names(),
            "walk_test": self.walk.active,
        }

    async def log_tail(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_other_args(args, {"lines", "level"})
        n = _arg(args, "lines", int, 100, 1, 1000)
        level = _arg(args, "level", str, "DEBUG", choices=tuple(_LEVELS))
        return {"lines": self.ring.tail(n, _LEVELS[level])}

    async def restart(self, args: dict[str, Any]) -> dict[str, Any]:
        """Answer first, then restart (systemd starts us again: ``Restart=always``)."""
        _no_other_args(args, set())
        asyncio.get_running_loop().call_later(0.5, self._restart, "remote restart command")
        return {"restarting": True}
