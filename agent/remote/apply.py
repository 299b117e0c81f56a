"""Apply a verified config push: validate, trial, keep or roll back, persist, audit.

The order is chosen so that no single failure can leave a hub offline:

0. A file the agent could not write is refused at once (``not_writable``): trying a config
   for ``rollback_after_s`` only to lose it at the end would hide the real cause.
1. The new document (full, or an RFC 7396 merge onto the current one) is validated with
   the same schema as the local file. Invalid or forbidden changes are refused untouched.
2. The running agent is switched over in memory (:meth:`Agent.reconfigure`), and then
   watched for ``rollback_after_s``: the broker must be reachable (if it was before) and
   every component must have started. Anything else rolls back to the last good config.
3. Only a config that survived its trial is written to ``config_path`` (temp file, fsync,
   ``os.replace``, fsync of the directory), edited in the installer's own layout (see
   :mod:`agent.remote.toml_edit`). Until then the file holds the last good config,
   so a crash or a crash loop during the trial comes back on the old config by itself:
   systemd restarts the agent and the replay counter stops the push from being re-applied.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.config import Config, config_to_dict, parse_config
from agent.errors import ConfigError
from agent.model import Event, Priority, iso_utc
from agent.ports import UplinkFigures
from agent.remote import envelope as env
from agent.remote.documents import (
    changed_keys,
    merge_patch,
    restore_secrets,
    without_nulls,
)
from agent.remote.envelope import Envelope, Rejected
from agent.remote.keys import KeyStore
from agent.remote.plan import plan_change
from agent.remote.toml_edit import edited_text

log = logging.getLogger(__name__)

META_VERSION = "remote.config_version"
META_KEY_ID = "remote.config_key_id"
META_APPLIED = "remote.config_applied_at"
_POLL_S = 0.05


class ApplyHost(Protocol):
    """What the applier needs of its host (a part of :class:`agent.ports.RemoteHost`)."""

    hub_id: str
    config: Config

    async def reconfigure(self, new_config: Config) -> list[str]: ...

    def submit_event(self, event: Event) -> None: ...

    def uplink_figures(self) -> UplinkFigures: ...


@dataclass
class Outcome:
    """The result of one push, as published on ``config/result``."""

    version: int
    status: str                     # accepted | rejected | rolled_back
    reason: str = ""
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    old_version: int = 0
    key_id: str = ""

    def to_json_dict(self, hub_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"hub_id": hub_id, "version": self.version, "status": self.status,
                               "key_id": self.key_id, "old_version": self.old_version,
                               "changed": self.changed, "ts": iso_utc(time.time())}
        if self.reason:
            doc["reason"] = self.reason
            doc["detail"] = self.detail
        if self.problems:
            doc["problems"] = self.problems[:50]
        return doc


class ConfigApplier:
    def __init__(
        self,
        host: ApplyHost,
        config_path: str | Path | None,
        rollback_after_s: float,
        get_meta: Callable[[str], str | None],
        set_meta: Callable[[str, str], None],
        request_restart: Callable[[str], None],
    ) -> None:
        self.host = host
        self.config_path = Path(config_path) if config_path else None
        self.rollback_after_s = rollback_after_s
        self._get_meta = get_meta
        self._set_meta = set_meta
        self._request_restart = request_restart

    # -- state -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        try:
            return int(self._get_meta(META_VERSION) or 0)
        except ValueError:
            return 0

    def provenance(self) -> dict[str, Any]:
        return {"version": self.version, "key_id": self._get_meta(META_KEY_ID) or "",
                "applied_at": self._get_meta(META_APPLIED) or ""}

    def current_document(self) -> dict[str, Any]:
        """The document a merge applies to: the file, if it is what is running (it keeps
        defaults as defaults); else the running config written out in full."""
        running = self.host.config
        try:
            if self.config_path is None:
                raise OSError("no config file")
            doc = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
            if parse_config(doc) == running:
                return doc
            log.warning("%s differs from the running config; merging onto the running one",
                        self.config_path)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as exc:
            log.info("merging onto the running config (%s unusable: %s)", self.config_path, exc)
        return without_nulls(config_to_dict(running))

    # -- apply -------------------------------------------------------------------------------
    def prepare(self, e: Envelope) -> tuple[Config, dict[str, Any]]:
        """Validate ``e`` into the new config and the document to persist, or raise Rejected."""
        running = self.host.config
        doc = e.config if e.mode == "full" else merge_patch(self.current_document(), e.config)
        doc = restore_secrets(doc, running, Config)
        try:
            new = parse_config(doc, f"config version {e.version}")
        except ConfigError as exc:
            raise Rejected(env.INVALID_CONFIG, f"{len(exc.problems)} problem(s) in the config",
                           e) from exc
        plan = plan_change(running, new)
        forbidden = list(plan.forbidden)
        remote = getattr(new, "remote", None)
        if remote is not None and remote.enabled and plan.touches("remote.keys_dir") \
                and not KeyStore(remote.keys_dir).key_ids():
            forbidden.append(f"remote.keys_dir: no trusted key in {remote.keys_dir}: "
                             "remote support would be locked out")
        if forbidden:
            raise Rejected(env.FORBIDDEN_CHANGE, "; ".join(forbidden), e)
        return new, doc

    async def apply(self, e: Envelope) -> Outcome:
        """Apply a verified, prepared push. Never raises for a bad config: it is an Outcome."""
        old_version = self.version
        base = Outcome(e.version, "rejected", old_version=old_version, key_id=e.key_id)
        unwritable = config_write_problem(self.config_path)
        if unwritable:
            log.error("config version %d refused: %s", e.version, unwritable)
            base.reason = env.NOT_WRITABLE
            base.detail = unwritable
            base.problems = [f"remote.config_path: {unwritable}: set [remote] config_path to a "
                             "file the agent may replace, or fix the file's owner or mode"]
            return base
        try:
            new, doc = self.prepare(e)
        except Rejected as rej:
            base.reason, base.detail = rej.reason, rej.detail
            if isinstance(rej.__cause__, ConfigError):
                base.problems = list(rej.__cause__.problems)
            return base
        old = self.host.config
        changed = changed_keys(old, new)
        base.changed = changed
        if changed:
            problems = await self._trial(old, new)
            if problems:
                return await self._roll_back(e, old, new, changed, problems, base)
        try:
            self._persist(doc, e)
        except OSError as exc:
            log.error("cannot write %s: %s; rolling back", self.config_path, exc)
            return await self._roll_back(e, old, new, changed,
                                         [f"cannot write {self.config_path}: {exc}"], base)
        self._set_meta(META_VERSION, str(e.version))
        self._set_meta(META_KEY_ID, e.key_id)
        self._set_meta(META_APPLIED, iso_utc(time.time()))
        self._audit(e, old_version, changed, "applied")
        log.info("config version %d from key %s applied (%d keys changed)", e.version,
                 e.key_id, len(changed))
        base.status = "accepted"
        return base

    async def _trial(self, old: Config, new: Config) -> list[str]:
        was_online = self.host.uplink_figures().online
        log.info("trying the new config for %.1f s", self.rollback_after_s)
        problems = await self.host.reconfigure(new)
        if problems:
            return problems
        deadline = time.monotonic() + self.rollback_after_s
        while time.monotonic() < deadline:
            if not self.host.uplink_figures().alive:
                return ["uplink: network thread or sender stopped"]
            await asyncio.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        if was_online and not self.host.uplink_figures().online:
            return [f"broker {new.mqtt.host}:{new.mqtt.port} not reachable within "
                    f"{self.rollback_after_s:g} s"]
        return []

    async def _roll_back(self, e: Envelope, old: Config, new: Config, changed: list[str],
                         problems: list[str], out: Outcome) -> Outcome:
        log.error("config version %d failed its trial (%s); rolling back", e.version,
                  "; ".join(problems))
        back = await self.host.reconfigure(old)
        if back:
            # The file still holds the last good config: a restart is a complete rollback.
            log.critical("rollback incomplete (%s); restarting on the last good config",
                         "; ".join(back))
            self._request_restart("rollback incomplete")
        self._audit(e, out.old_version, changed, "rolled_back", problems)
        out.status, out.reason = "rolled_back", env.HEALTH_CHECK_FAILED
        out.detail, out.problems = "the new config failed its health check", problems + back
        return out

    # -- persistence and audit ---------------------------------------------------------------
    def _persist(self, doc: dict[str, Any], e: Envelope) -> None:
        header = (f"Written by tec-agent: remote config version {e.version}, key {e.key_id},\n"
                  f"{iso_utc(time.time())}. Local edits are fine; the agent merges onto this\n"
                  "file while it matches the running config.")
        path = self.config_path
        assert path is not None  # apply() refused the push otherwise
        note = f"config version {e.version}, key {e.key_id}, {iso_utc(time.time())}"
        text = edited_text(path, without_nulls(doc), note, header)
        if path.exists():
            write_atomic(path.with_name(path.name + ".previous"), path.read_bytes())
        write_atomic(path, text.encode("utf-8"))

    def _audit(self, e: Envelope, old_version: int, changed: list[str], status: str,
               problems: list[str] | None = None) -> None:
        data: dict[str, Any] = {"key_id": e.key_id, "old_version": old_version,
                                "new_version": e.version, "mode": e.mode,
                                "changed": changed[:200], "status": status}
        if problems:
            data["problems"] = problems[:20]
        self.host.submit_event(Event(type="config_changed", priority=Priority.INFO,
                                     device_id="remote", data=data))


def config_write_problem(path: Path | str | None) -> str | None:
    """Why :func:`write_atomic` (and the ``.previous`` copy beside it) would fail for
    ``path``, starting with the path; None if it would work, as far as can be told."""
    if path is None:
        return ("(none): this agent has no config file to write (only `run --config FILE` "
                "writes accepted pushes; simulate and commission do not) and "
                "remote.config_path is not set")
    p = Path(path)
    parent = p.parent
    if not parent.is_dir():
        return f"{p}: directory {parent} does not exist"
    if p.exists() and not p.is_file():
        return f"{p}: not a regular file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{p}: cannot create files in {parent} (uid {os.geteuid()})"
    st_dir = parent.stat()
    euid = os.geteuid()
    for f in (p, p.with_name(p.name + ".previous")):
        # In a sticky directory (/etc/tec-agent is 1770) only a file's owner may replace it.
        if f.exists() and st_dir.st_mode & 0o1000 and euid not in (0, st_dir.st_uid) \
                and f.stat().st_uid != euid:
            return (f"{p}: {f.name} is owned by uid {f.stat().st_uid} in sticky directory "
                    f"{parent}: only its owner can replace it")
    return None


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, ``os.replace``, fsync the directory: after a
    power cut the file is either the old one or the new one, never a torn mix."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
