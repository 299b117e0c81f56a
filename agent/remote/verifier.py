"""Is a received message authentic, for us, current and new? Only then is it acted on.

Checks run in this order so that nobody learns anything about our state from an
unsigned message: shape, topic, signature, hub, validity period, replay. The version
counter per kind (``config``, ``cmd``) is persisted in the store's meta table, so a
replayed message stays rejected across restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.remote import envelope as env
from agent.remote.envelope import Envelope, Rejected
from agent.remote.keys import KeyStore

_META_KEY = "remote.last_version.{kind}"


class ReplayGuard:
    """Highest accepted version per kind, in the store's meta table."""

    def __init__(self, get_meta: Callable[[str], str | None], set_meta: Callable[[str, str], None]):
        self._get = get_meta
        self._set = set_meta

    def last(self, kind: str) -> int:
        value = self._get(_META_KEY.format(kind=kind))
        try:
            return int(value) if value is not None else 0
        except ValueError:
            return 0

    def record(self, kind: str, version: int) -> None:
        if version > self.last(kind):
            self._set(_META_KEY.format(kind=kind), str(version))


@dataclass(frozen=True, slots=True)
class Topic:
    """What the topic a message arrived on says it is: ("config", "") or ("cmd", name)."""

    kind: str
    name: str = ""


class Verifier:
    def __init__(self, hub_id: str, keys: KeyStore, guard: ReplayGuard, max_bytes: int,
                 max_skew_s: float) -> None:
        self.hub_id = hub_id
        self.keys = keys
        self.guard = guard
        self.max_bytes = max_bytes
        self.max_skew_s = max_skew_s

    def check(self, raw: bytes, topic: Topic, now_wall: float, clock_synced: bool) -> Envelope:
        """The envelope if it may be acted on; else :class:`Rejected` with the reason.

        Without a synchronised clock (a Pi without RTC before NTP), validity periods cannot
        be judged; they are then not enforced and only the version counter protects against
        replay. Refusing instead would lock support out of exactly the hubs that need help.
        """
        e = env.parse(raw, self.max_bytes)
        if e.kind != topic.kind or (topic.kind == "cmd" and e.name != topic.name):
            what = f"cmd/{e.name}" if e.kind == "cmd" else "config/set"
            raise Rejected(env.WRONG_TOPIC, f"a {what} message on the wrong topic", e)
        ok = self.keys.verify(e.key_id, e.signature, e.signed_bytes)
        if ok is None:
            raise Rejected(env.UNKNOWN_KEY, f"no trusted key {e.key_id!r} on this hub", e)
        if not ok:
            raise Rejected(env.BAD_SIGNATURE, f"signature does not verify with key {e.key_id!r}", e)
        if e.hub_id != self.hub_id:
            raise Rejected(env.WRONG_HUB,
                           f"signed for hub {e.hub_id!r}, this is {self.hub_id!r}", e)
        if clock_synced:
            if now_wall >= e.expires_at:
                raise Rejected(env.EXPIRED, f"expired {now_wall - e.expires_at:.0f} s ago", e)
            if e.issued_at > now_wall + self.max_skew_s:
                raise Rejected(env.NOT_YET_VALID,
                               f"issued {e.issued_at - now_wall:.0f} s in the future", e)
        last = self.guard.last(e.kind)
        if e.version <= last:
            raise Rejected(env.REPLAYED, f"version {e.version} is not above {last}", e)
        return e

    def accept(self, e: Envelope) -> None:
        """Burn the version: the same message is never acted on twice, whatever follows."""
        self.guard.record(e.kind, e.version)
