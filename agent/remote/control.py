"""The ``remote`` component: signed config pushes and commands over MQTT.

Topics (under ``tec/v1/{hub_id}/``):

- ``config/set``     in:  a signed config (full or merge); retained by support tooling
- ``config/result``  out: accepted / rejected / rolled_back with reasons (retained: the last)
- ``config/current`` out: the effective config, secrets redacted, and its version (retained)
- ``config/request`` out: on every connect, QoS 0, ``{"hub_id", "version", "ts"}`` (the
  config version it runs); the service side (``tec-agent ingest``) answers on ``config/desired``
- ``config/desired`` in:  the newest full config support pushed, if newer than ``version``
  (the same signed message as on ``config/set``; handled like its retained copy)
- ``cmd/{name}``     in:  a signed command
- ``cmd/{name}/result`` out: ok / rejected / error

Offline hubs: a full config is published *retained* on ``config/set``: the broker keeps the
latest desired config per hub and hands it over whenever the hub (re)subscribes, even
after the MQTT session expired, the broker restarted (with persistence), or the hub was
re-imaged. Because a broker cluster may keep retained messages per node (RabbitMQ), the hub
also asks for it on every connect (``config/request``): the ingester keeps the newest full
push in its database and answers from any node. A merge, and every command, rides the
hub's persistent MQTT session (QoS 1, ``session_expiry_s``, a week by default), which keeps
them in order while it is offline. The
version counter makes redelivery harmless: a retained config seen again is ignored
without a word, and a stale command is refused as expired. See packaging/mosquitto/README.md.

Every message handler runs as its own task on the agent loop and catches everything: a
malformed, hostile or fuzzed message yields a rejection result, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.model import iso_utc
from agent.ports import (
    AgentContext,
    AgentState,
    DeviceInfo,
    HubMessage,
    RemoteHost,
    Unsubscribe,
)
from agent.remote import envelope as env
from agent.remote.apply import ConfigApplier
from agent.remote.commands import Commands
from agent.remote.config import RemoteConfig
from agent.remote.documents import redact
from agent.remote.envelope import Rejected
from agent.remote.keys import KeyStore
from agent.remote.log_ring import LogRing
from agent.remote.verifier import ReplayGuard, Topic, Verifier
from agent.remote.walk_test import WalkTest
from agent.uplink import topics

log = logging.getLogger(__name__)

_OUTBOX = 32  # command results kept while offline (the newest win)
_CONFIG_QUEUE = 16  # config messages waiting for the one being applied; more are refused
# A connection lost this soon after the hub asked for its desired config is taken as the
# broker refusing config/request (mosquitto 2.0 with max_queued_messages 0, as
# packaging/mosquitto sets it, closes the connection after a PUBLISH its ACL denies): the
# hub stops asking for a while (doubling up to an hour), so an ACL without the new line
# costs one reconnect, not one per connect.
#
# The request goes at QoS 0. At QoS 1 the session sent it again on every following
# connection until a PUBACK for it was read, and the broker's PUBACK (Not authorized) is
# read only when the hub wrote nothing after the request before the broker closed: packets
# the broker had not read yet (the SUBSCRIBEs, the next events) made that PUBACK get lost
# in about half the tries (a plain paho client: 14 of 30 with five publishes after it, 0 of
# 30 with none), each loss one more reconnect. Under CPU load the refused request cost 3
# reconnects instead of 2 in 4 of 8 runs of the desired-config test. Asked on every
# connect anyway, a request lost with its connection is asked again on the next one. The
# price: a broker may not keep a QoS 0 request for an ingester that is away (mosquitto
# does not, queue_qos0_messages false); there the retained config/set still carries it.
_REQUEST_QOS = 0
_REQUEST_SUSPECT_S = 10.0
_REQUEST_BACKOFF_S = (60.0, 3600.0)


def _sigterm_self(reason: str) -> None:
    log.warning("restarting: %s (systemd starts the agent again)", reason)
    os.kill(os.getpid(), signal.SIGTERM)


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


class RemoteControl:
    """Component ``remote``. Needs a :class:`agent.ports.RemoteHost` as its context (the
    agent): it asks it to reconfigure, reads its figures and devices."""

    name = "remote"

    def __init__(self, config: RemoteConfig, restart: Callable[[str], None] | None = None,
                 config_file: str | None = None) -> None:
        """``config_file``: the file the agent was started from; accepted pushes are
        written there unless ``config.config_path`` names another file."""
        self.config = config
        self.config_file = config_file
        self._restart = restart or _sigterm_self
        self.host: RemoteHost | None = None
        self._unsubscribe: list[Unsubscribe] = []
        self.ring = LogRing(config.log_ring_lines)
        self.walk = WalkTest(config.walk_test_max_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox: deque[tuple[str, bytes]] = deque(maxlen=_OUTBOX)
        self._online = False
        self._stopped = False
        self._request_sent_at: float | None = None   # monotonic
        self._request_backoff = 0.0
        self._request_not_before = 0.0               # monotonic
        self._last_quiet: tuple[int, str] | None = None
        self._config_lock = asyncio.Lock()  # FIFO: pushes apply one at a time, in order
        self._config_waiting = 0
        self.applier: ConfigApplier | None = None
        self.verifier: Verifier | None = None
        self.commands: Commands | None = None
        self.stats = {"config": 0, "cmd": 0, "rejected": 0}

    # -- Component ---------------------------------------------------------------------------
    async def start(self, ctx: AgentContext) -> None:
        if not isinstance(ctx, RemoteHost):
            raise TypeError("the remote component needs the agent itself as its context")
        host = ctx
        self.host = host
        logging.getLogger().addHandler(self.ring)
        self._update_secrets()
        self.verifier = Verifier(host.hub_id, KeyStore(self.config.keys_dir),
                                 ReplayGuard(host.get_meta, host.set_meta),
                                 self.config.max_message_bytes, self.config.max_clock_skew_s)
        applier = ConfigApplier(host, self.config.config_path or self.config_file,
                                self.config.rollback_after_s,
                                host.get_meta, host.set_meta, self._restart)
        self.applier = applier
        self.commands = Commands(host, self.walk, self.ring, lambda: applier.version,
                                 self._restart)
        self.walk.attach(ctx)
        ctx.subscribe_state(self._on_state)
        self._unsubscribe = [
            host.subscribe(topics.config_topic(host.hub_id, "set", host.topic_prefix),
                           self._on_config),
            host.subscribe(topics.cmd_topic(host.hub_id, "+", host.topic_prefix),
                           self._on_cmd),
            host.subscribe(topics.config_topic(host.hub_id, "desired", host.topic_prefix),
                           self._on_desired),
        ]
        self.publish_current()
        keys = self.verifier.keys.key_ids()
        if keys:
            log.info("remote management on: %d trusted key(s) (%s); accepted configs are "
                     "written to %s", len(keys), ", ".join(keys), applier.config_path)
        else:
            log.warning("remote management on but no trusted key in %s: every push and "
                        "command will be rejected", self.config.keys_dir)

    async def stop(self) -> None:
        # The agent goes offline after its components stop: that is its own doing, not the
        # broker refusing config/request (commissioning stops within seconds of connecting);
        # _on_state ignores it.
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self.walk.detach()
        logging.getLogger().removeHandler(self.ring)

    def devices(self) -> list[DeviceInfo]:
        return []

    @property
    def _host(self) -> RemoteHost:
        if self.host is None:
            raise RuntimeError("the remote component is not started")
        return self.host

    # -- inbound -----------------------------------------------------------------------------
    def _on_config(self, msg: HubMessage) -> None:
        self._spawn(self._handle_config(msg.payload, msg.retain))

    def _on_desired(self, msg: HubMessage) -> None:
        # The desired state, as its retained copy on config/set: seen before, said nothing.
        self._spawn(self._handle_config(msg.payload, True))

    def _on_cmd(self, msg: HubMessage) -> None:
        name = msg.topic.rsplit("/", 1)[-1]
        self._spawn(self._handle_cmd(name, msg.payload))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _now(self) -> tuple[float, bool]:
        clock = self._host.clock
        return clock.wall(), clock.synced()

    async def _handle_config(self, raw: bytes, retained: bool) -> None:
        """One at a time, in arrival order: merges queued for an offline hub build on each
        other, and each is checked against the state its predecessor left."""
        if not raw:
            return  # someone cleared the retained desired config: nothing to do
        if self._config_waiting >= _CONFIG_QUEUE:
            self._publish_config_result(self._rejection(
                Rejected(env.BUSY, f"{_CONFIG_QUEUE} config messages already waiting"), raw))
            return
        self._config_waiting += 1
        try:
            await self._config_lock.acquire()
        finally:
            self._config_waiting -= 1
        try:
            await self._handle_config_now(raw, retained)
        finally:
            self._config_lock.release()

    async def _handle_config_now(self, raw: bytes, retained: bool) -> None:
        assert self.verifier is not None and self.applier is not None
        self.stats["config"] += 1
        try:
            e = self.verifier.check(raw, Topic("config"), *self._now())
            self.verifier.accept(e)
            log.info("config version %d (%s) from key %s", e.version, e.mode, e.key_id)
            outcome = await self.applier.apply(e)
            doc = outcome.to_json_dict(self._host.hub_id)
            if outcome.status == "accepted":
                self._update_secrets()
                self._reconfigure_self()
                self.publish_current()
        except Rejected as rej:
            if retained and rej.reason == env.REPLAYED:
                log.debug("retained config already seen: %s", rej.detail)
                return  # the desired config we already acted on, handed over again
            if retained and self._last_quiet == (self._version_of(rej, raw), rej.reason):
                return  # the same stale retained message on every reconnect: said once
            if retained:
                self._last_quiet = (self._version_of(rej, raw), rej.reason)
            doc = self._rejection(rej, raw)
        except Exception as exc:  # a bug must never take the agent down
            log.exception("config message handling failed")
            doc = {"hub_id": self._host.hub_id, "status": "rejected", "reason": env.INTERNAL_ERROR,
                   "detail": type(exc).__name__, "ts": iso_utc(time.time()),
                   **env.peek(raw)}
        self._publish_config_result(doc)

    def _publish_config_result(self, doc: dict[str, Any]) -> None:
        if doc.get("status") != "accepted":
            self.stats["rejected"] += 1
        host = self._host
        host.publish(topics.config_topic(host.hub_id, "result", host.topic_prefix), _dump(doc),
                     retain=True)

    async def _handle_cmd(self, name: str, raw: bytes) -> None:
        assert self.verifier is not None and self.commands is not None
        self.stats["cmd"] += 1
        doc: dict[str, Any] = {"hub_id": self._host.hub_id, "name": name}
        try:
            e = self.verifier.check(raw, Topic("cmd", name), *self._now())
            handler = self.commands.handlers.get(e.name)
            if handler is None:
                raise Rejected(env.UNKNOWN_COMMAND, f"no command {e.name!r} (have: "
                               f"{', '.join(sorted(self.commands.handlers))})", e)
            self.verifier.accept(e)
            log.info("command %s (version %d) from key %s", e.name, e.version, e.key_id)
            doc.update(version=e.version, key_id=e.key_id)
            doc["result"] = await handler(e.args)
            doc["status"] = "ok"
        except Rejected as rej:
            doc.update(self._rejection(rej, raw))
            self.stats["rejected"] += 1
        except Exception as exc:
            log.exception("command %s failed", name)
            doc.update(status="error", reason=env.INTERNAL_ERROR, detail=type(exc).__name__,
                       **env.peek(raw))
        doc["ts"] = iso_utc(time.time())
        self._send(topics.cmd_topic(self._host.hub_id, f"{name}/result",
                                   self._host.topic_prefix), _dump(doc))

    @staticmethod
    def _version_of(rej: Rejected, raw: bytes) -> int:
        if rej.envelope is not None:
            return rej.envelope.version
        return int(env.peek(raw).get("version", -1))

    def _rejection(self, rej: Rejected, raw: bytes) -> dict[str, Any]:
        log.warning("remote message rejected: %s", rej)
        doc: dict[str, Any] = {"hub_id": self._host.hub_id, "status": "rejected",
                               "reason": rej.reason, "detail": rej.detail,
                               "ts": iso_utc(time.time())}
        if rej.envelope is not None:
            doc.update(version=rej.envelope.version, key_id=rej.envelope.key_id)
        else:
            doc.update(env.peek(raw))
        if rej.reason == env.REPLAYED and self.verifier is not None and rej.envelope is not None:
            doc["last_version"] = self.verifier.guard.last(rej.envelope.kind)
        if isinstance(rej.__cause__, Exception) and hasattr(rej.__cause__, "problems"):
            doc["problems"] = list(rej.__cause__.problems)[:50]
        return doc

    # -- outbound ----------------------------------------------------------------------------
    def publish_current(self) -> None:
        """Retained ``config/current``: what runs now, secrets redacted, with its version."""
        assert self.applier is not None
        doc = {"hub_id": self._host.hub_id, **self.applier.provenance(),
               "ts": iso_utc(time.time()), "config": redact(self._host.config)}
        self._host.publish(topics.config_topic(self._host.hub_id, "current",
                                                 self._host.topic_prefix), _dump(doc),
                          retain=True)

    def _send(self, topic: str, payload: bytes) -> None:
        if self.host is None or not self._host.publish(topic, payload):
            self._outbox.append((topic, payload))

    def _request_desired(self) -> None:
        """Ask the service side for the desired config (not relying on retained delivery)."""
        if self.host is None or self.verifier is None:
            return
        now = time.monotonic()
        if now < self._request_not_before:
            return
        doc = {"hub_id": self._host.hub_id, "version": self.verifier.guard.last("config"),
               "ts": iso_utc(time.time())}
        if self._host.publish(topics.config_topic(self._host.hub_id, "request",
                                                    self._host.topic_prefix), _dump(doc),
                              qos=_REQUEST_QOS):
            self._request_sent_at = now

    def _connection_lost(self) -> None:
        sent, self._request_sent_at = self._request_sent_at, None
        if sent is None:
            return
        if time.monotonic() - sent >= _REQUEST_SUSPECT_S:
            self._request_backoff = 0.0
            return
        first, cap = _REQUEST_BACKOFF_S
        self._request_backoff = min(cap, max(first, 2 * self._request_backoff))
        self._request_not_before = time.monotonic() + self._request_backoff
        log.warning("MQTT connection lost within %.0f s of asking for the desired config "
                    "(config/request): the broker may refuse that topic (ACL: 'pattern write "
                    "tec/v1/%%u/config/request', see packaging/mosquitto); not asking again "
                    "for %.0f s", _REQUEST_SUSPECT_S, self._request_backoff)

    def _on_state(self, state: AgentState) -> None:
        if self._stopped:
            return
        was_online, self._online = self._online, state.online
        if was_online and not state.online:
            self._connection_lost()
        if state.online and not was_online:
            self._request_desired()
        if state.online and self._outbox and self.host is not None:
            pending, self._outbox = list(self._outbox), deque(maxlen=_OUTBOX)
            for topic, payload in pending:
                self._send(topic, payload)

    # -- own settings --------------------------------------------------------------------------
    def _update_secrets(self) -> None:
        from agent.redaction import config_secrets
        from agent.systemd_notify import update_log_secrets

        secrets = config_secrets(self._host.config)
        self.ring.set_secrets(secrets)
        update_log_secrets(secrets)  # the journal too: a pushed bindkey is redacted at once

    def _reconfigure_self(self) -> None:
        """The ``[remote]`` section changed: take the new settings without a restart."""
        new = getattr(self._host.config, "remote", None)
        if new is None or new == self.config or self.verifier is None or self.applier is None:
            return
        self.config = new
        self.verifier.keys = KeyStore(new.keys_dir)
        self.verifier.max_bytes = new.max_message_bytes
        self.verifier.max_skew_s = new.max_clock_skew_s
        self.applier.rollback_after_s = new.rollback_after_s
        self.walk.max_s = new.walk_test_max_s
        self.ring.resize(new.log_ring_lines)
