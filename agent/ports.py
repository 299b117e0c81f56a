"""Ports: the protocols the application wires together in ``agent/app.py``.

A *component* is anything with a life cycle that plugs into the agent: a driver (GPIO,
serial, BLE), a detector (fall, inactivity), an output (status LED, buzzer). It receives an
:class:`AgentContext` at start and must not construct its own collaborators.

Threading rule: everything on ``AgentContext`` is called on the agent's asyncio loop,
except :meth:`AgentContext.emit_reading`, which any thread may call (it hops to the loop with
``call_soon_threadsafe``). Never block the loop: blocking I/O belongs in a driver thread,
inference in ``ctx.executor``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.clock import Clock
from agent.model import Event, Priority, Reading

if TYPE_CHECKING:
    from agent.config import Config
    from agent.store.arc_delivery import ArcRow, UnqueuedAlarm
    from agent.store.component_state import Json, KeyRange


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a driver knows about one configured device (inventory, supervision, reports)."""

    device_id: str
    kind: str
    driver: str
    online: bool | None = None
    last_seen_wall: float | None = None
    battery_pct: float | None = None
    rssi: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the outputs (LED, buzzer) and commands need to know, as one immutable value."""

    online: bool = False
    backlog: int = 0
    alarm_pending: bool = False          # an alarm is stored but not yet acknowledged
    last_alarm_delivered_mono: float | None = None
    prewarning: bool = False             # a detector is counting down to an alarm
    storage_failed: bool = False         # an alarm/warning could not be stored (held in memory)
    # Hub conditions components raised (ctx.set_condition), e.g. "arc_path_down": an ARC
    # receiver stopped answering. The LED shows the ones it knows (drivers/gpio/outputs.py).
    conditions: frozenset[str] = frozenset()


# -- issue 18 part B: what components reached around the port for ----------------------------
class ComponentState(Protocol):
    """One component's memory across restarts: key -> JSON value (implemented in
    ``agent/store/component_state.py``; in memory offline and in tests)."""

    def get(self, key: str) -> Json:
        """The value saved under ``key``; None if none or unreadable."""

    def items(self, prefix: str = "") -> dict[str, Json]:
        """Every readable ``key -> value`` whose key starts with ``prefix``."""

    def write(self, put: Mapping[str, Json] | None = None, *,
              drop: KeyRange | None = None) -> None:
        """Save ``put`` and remove keys in ``[drop[0], drop[1])``, all or nothing. Raises
        :class:`agent.errors.StoreError`."""


_CONDITION = re.compile(r"[a-z][a-z0-9_]{0,39}")


def condition_name(name: str) -> str:
    """``name`` if it may name a hub condition (``set_condition``), else ValueError: every
    implementation of the port takes the same names."""
    if not _CONDITION.fullmatch(name):
        raise ValueError(f"condition name {name!r}: expected [a-z][a-z0-9_]*")
    return name


class ArcDeliveryStore(Protocol):
    """The ARC path's durable deliveries (``agent/store/arc_delivery.py``; in memory offline
    and in tests): one row per event sent to the receiving centre, ``pending`` until a
    receiver ACKs it (receiver, DC-09 sequence, latency kept for ``report``) or refuses it.
    Loop only. Each write is its own transaction and raises :class:`agent.errors.StoreError`
    when the card refuses it."""

    def add(self, rows: Sequence[ArcRow]) -> None:
        """Queue events for the ARC (an event already queued is left as it is)."""

    def attempted(self, event_id: str) -> None:
        """One more attempt was made to send ``event_id``."""

    def acked(self, event_id: str, receiver: str, dc09_seq: int, latency_ms: float | None,
              answer: str, acked_wall: float | None = None) -> None:
        """A receiver acknowledged ``event_id``."""

    def refused(self, event_id: str, answer: str) -> None:
        """Every receiver refused ``event_id`` (DUH even to the generic code)."""

    def pending(self) -> list[ArcRow]:
        """Unacknowledged rows, by priority then age (an alarm before a warning)."""

    def get(self, event_id: str) -> ArcRow | None:
        """The row of ``event_id``, if it was queued."""

    def unqueued_alarms(self, since_wall: float) -> list[UnqueuedAlarm]:
        """Alarms committed since ``since_wall`` that never got a row (a crash between the
        commit and the queueing)."""

    def get_state(self, key: str) -> str | None:
        """A small value of the ARC path's own (the DC-09 sequence block)."""

    def set_state(self, key: str, value: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HubMessage:
    """A message that arrived on one of the hub's topics."""

    topic: str
    payload: bytes
    retain: bool


Unsubscribe = Callable[[], None]


@dataclass(frozen=True, slots=True)
class UplinkFigures:
    online: bool = False
    alive: bool = False          # connection keeper and sender running (the watchdog's test)
    connects: int = 0
    published: int = 0
    acked: int = 0
    inflight: int = 0


@dataclass(frozen=True, slots=True)
class StoreFigures:
    backlog_total: int = 0
    backlog_counts: dict[str, int] = field(default_factory=dict)
    oldest_wall: dict[str, float] = field(default_factory=dict)
    used_bytes: int = 0
    evicted: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


# -- a second alarm path: outputs that raise an alarm elsewhere (serial telecare unit) ---------
@dataclass(frozen=True, slots=True)
class AlarmRequest:
    """An alarm to raise on an alarm output. The rule that decides *when* lives with the
    detectors (``agent/escalation.py``); the output decides *how* (serial: the Contact ID
    frame, from ``event_type`` and ``code``)."""

    event_id: str            # the alarm (for a cancel: the ``alarm_cancelled`` event)
    event_type: str
    zone: int = 0
    code: object = None      # the alarm's own code (``data.contact_id``), if it carries one
    cancel: bool = False     # withdraw what was raised before (Contact ID 406)


@dataclass(frozen=True, slots=True)
class AlarmOutcome:
    """What became of an :class:`AlarmRequest`, told once on the loop."""

    request: AlarmRequest
    sent: bool               # False: withdrawn before it went out (nothing reached the output)
    ok: bool                 # the output acknowledged it
    attempts: int
    code: str                # what the output sent (serial: the Contact ID event code)
    error: str = ""


class AlarmHandle(Protocol):
    def withdraw(self) -> bool:
        """Take the request back if it has not gone out yet (True: ``done`` will say
        ``sent=False``); False once it is on its way (it runs to its end)."""


class AlarmOutput(Protocol):
    """What a driver offers to raise an alarm on one of its devices (serial: a telecare unit
    whose own dialler calls the monitoring centre). Loop only."""

    def raise_alarm(self, request: AlarmRequest,
                    done: Callable[[AlarmOutcome], None]) -> AlarmHandle:
        """Queue ``request``; ``done(outcome)`` follows on the loop, unless the output stops
        first (then nothing follows: the alarm itself stays in the store)."""


def merge_devices(infos: Iterable[DeviceInfo]) -> list[DeviceInfo]:
    """One entry per device: a later entry for a device already listed adds its ``details``
    (a detector's counters about a driver's device) and changes nothing else."""
    merged: dict[str, DeviceInfo] = {}
    for info in infos:
        first = merged.get(info.device_id)
        merged[info.device_id] = info if first is None else replace(
            first, details={**first.details, **info.details})
    return list(merged.values())


class AgentContext(Protocol):
    hub_id: str
    topic_prefix: str    # mqtt.topic_prefix: the hub's topics are topics.root(prefix)/hub_id/...
    clock: Clock
    loop: asyncio.AbstractEventLoop
    executor: concurrent.futures.Executor   # single worker, for inference

    def emit_reading(self, reading: Reading) -> None:
        """Thread-safe: hand a reading to the loop. Returns at once."""

    def submit_event(self, event: Event) -> None:
        """Loop only: store ``event`` durably (batched commit) and queue it for upload."""

    def subscribe_readings(self, callback: Callable[[Reading], None]) -> None:
        """Loop only: ``callback(reading)`` on the loop for every reading, published or not."""

    def subscribe_events(self, callback: Callable[[Event], None]) -> None:
        """Loop only: ``callback(event)`` on the loop after each event is committed."""

    def subscribe_acks(self, callback: Callable[[int], None]) -> None:
        """Loop only: ``callback(seq)`` when the event ``seq`` is delivered upstream: the
        broker's PUBACK, or with end-to-end receipts on the ingester's receipt."""

    def subscribe_refused(self, callback: Callable[[Event], None]) -> None:
        """Loop only: ``callback(event)`` once for each alarm or warning the store refused
        (a failing or full card): it is held in memory, spilled and retried, but NOT
        committed, so acknowledge nothing upstream on it. A second alarm path (serial
        escalation) may act on it; if it is stored later, ``subscribe_events`` hears of it
        again with its seq."""

    def subscribe_state(self, callback: Callable[[AgentState], None]) -> None:
        """Loop only: ``callback(state)`` whenever :class:`AgentState` changes."""

    def subscribe_before_commit(self, callback: Callable[[list[Event]], None]) -> None:
        """Loop only: ``callback(alarms)`` with the alarms of a batch just before its commit
        (and fsync), then ``subscribe_events`` after it. Not durable yet: acknowledge
        nothing on it; a second alarm path may start sending (as MQTT's early send)."""

    def set_prewarning(self, source: str, active: bool) -> None:
        """A detector says it is (or no longer is) counting down to an alarm."""

    def set_condition(self, name: str, active: bool) -> None:
        """Loop only: a component raises (or clears) hub condition ``name``
        (``[a-z][a-z0-9_]*``, e.g. ``arc_path_down``): it is in
        :attr:`AgentState.conditions` while raised. ValueError for a malformed name."""

    def publish_device_state(self, device_id: str, state: dict[str, Any]) -> None:
        """Loop only: retained device state on ``tec/v1/{hub_id}/device/{device_id}`` (best
        effort; may be sent a moment later than the events emitted with it)."""

    def pending_alarms(self) -> list[Event]:
        """Alarms an earlier run stored that the broker has not acknowledged and no second
        path has taken up yet (serial escalation re-arms them after a restart)."""

    def event_delivered(self, event_id: str) -> bool | None:
        """True if acknowledged by the broker, False if pending, None if unknown."""

    def component_state(self, component: str) -> ComponentState:
        """Loop only: ``component``'s own memory across restarts (no other component's,
        and never the event store's tables). Raises StoreError when it cannot be made."""

    def arc_delivery(self) -> ArcDeliveryStore:
        """Loop only: the ARC path's delivery rows, beside the events (acks kept with them
        for ``report``). Raises StoreError when they cannot be made."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                qos: int = 1) -> bool:
        """Loop only: a non-event message on one of the hub's topics (``tec/v1/{hub_id}/...``;
        ValueError for any other). ``retain``: the latest payload per topic is kept and sent
        on every (re)connect, True is returned. Otherwise sent now at ``qos`` when online
        (True) or not at all (False: the caller keeps it for later). ``qos=0`` for a message
        that is worth nothing once its connection is gone: the session does not send it
        again on the next connection, as it does every QoS 1 message until its PUBACK."""

    def subscribe(self, topic: str, handler: Callable[[HubMessage], None]) -> Unsubscribe:
        """Loop only: ``handler(msg)`` on the loop for messages on ``topic`` (one of the
        hub's; wildcards allowed). Call the returned function to stop hearing them."""

    def register_alarm_output(self, output_id: str, output: AlarmOutput) -> Unsubscribe:
        """Loop only: a driver offers ``output`` under ``output_id`` (its device's id); a
        later registration under the same id replaces it. Call the returned function (at
        the driver's stop) to withdraw it."""

    def alarm_output(self, output_id: str) -> AlarmOutput | None:
        """Loop only: the alarm output registered under ``output_id`` now, if any."""


class ConfigChange(Protocol):
    """What a new config would change (``agent.change_plan.ChangePlan``)."""

    @property
    def forbidden(self) -> tuple[str, ...]:
        """Why the change may not be made remotely (empty: it may)."""

    def touches(self, prefix: str) -> bool:
        """Whether a changed key is ``prefix`` or lies under it."""


class Reconfigurable(Protocol):
    """Live reconfiguration (``agent/reconfigure.py``), as remote control asks for it."""

    def plan_change(self, new_config: Config) -> ConfigChange:
        """What switching from the running config to ``new_config`` would change."""

    async def reconfigure(self, new_config: Config) -> list[str]:
        """Switch to ``new_config`` without a restart; returns what failed (empty: fine)."""


@runtime_checkable
class RemoteHost(AgentContext, Reconfigurable, Protocol):
    """What remote control (``agent/remote/``) needs of the agent beyond the port."""

    config: Config

    @property
    def state(self) -> AgentState: ...

    def devices(self) -> list[DeviceInfo]: ...

    def uptime_s(self) -> float: ...

    def component_names(self) -> list[str]: ...

    def uplink_figures(self) -> UplinkFigures: ...

    def store_figures(self) -> StoreFigures: ...

    def get_meta(self, key: str) -> str | None:
        """A small durable value beside the event store (replay guard, config provenance)."""

    def set_meta(self, key: str, value: str) -> None: ...


@runtime_checkable
class Component(Protocol):
    name: str

    async def start(self, ctx: AgentContext) -> None: ...

    async def stop(self) -> None: ...

    def devices(self) -> list[DeviceInfo]: ...


# -- the uplink's two sides (agent/uplink/delivery.py over agent/uplink/transport.py) ----------


class OutboundEvent(Protocol):
    """A stored event as delivery sees it (``agent.store.sqlite_store.PendingEvent``)."""

    @property
    def seq(self) -> int: ...

    @property
    def priority(self) -> Priority: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def id(self) -> str: ...


class EventStore(Protocol):
    """What delivery needs of the durable store: read pending events past per-priority
    cursors, and drop them once the broker has them."""

    def next_batch(self, after: dict[Priority, int], limit: int) -> Sequence[OutboundEvent]:
        """Up to ``limit`` pending events, alarms first, each priority past its cursor."""
        ...

    def has_pending(self, priority: Priority, after_seq: int,
                    exclude: Iterable[int] = ()) -> bool:
        """Whether an event of ``priority`` above ``after_seq`` (not in ``exclude``) waits."""
        ...

    def ack(self, seqs: Sequence[int], acked_wall: float | None = None) -> None:
        """The broker (or, with receipts, the service's database) has these events: they
        leave the pending set."""
        ...

    def pending_by_seq(self, seqs: Sequence[int]) -> Sequence[OutboundEvent]:
        """Those of ``seqs`` still pending, in seq order (to send again)."""
        ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


# What the transport delivers is what components receive: one type.
InboundMessage = HubMessage


class PublishState(enum.Enum):
    SENT = "sent"          # handed to the connection (goes out now)
    QUEUED = "queued"      # offline: kept by the transport, sent after the next connect
    FAILED = "failed"      # refused (too large, bad topic, ...): never sent


@dataclass(frozen=True, slots=True)
class Published:
    """What :meth:`Transport.publish` did; ``mid`` names the PUBACK that will follow."""

    mid: int
    state: PublishState
    error: str = ""


class TransportListener(Protocol):
    """What the transport tells its owner, always on the loop and never re-entrantly from
    inside :meth:`Transport.publish`. Must not block (they run inside the network code)."""

    def on_connected(self, session_present: bool) -> None: ...

    def on_disconnected(self, reason: str) -> None: ...

    def on_puback(self, mid: int, failed: bool) -> None: ...


class Transport(Protocol):
    """An MQTT connection driven from the asyncio loop: it connects, reconnects with backoff
    (no longer than ``reconnect_alarm_s`` apart while :meth:`set_urgent` says an alarm
    waits), re-subscribes after each connect and keeps QoS 1 messages across reconnects.
    Every method is called on the loop."""

    @property
    def connected(self) -> bool: ...

    def set_listener(self, listener: TransportListener) -> None: ...

    def connect(self) -> None:
        """Start connecting (returns at once; :meth:`TransportListener.on_connected` follows)."""
        ...

    async def close(self, deadline: float) -> None:
        """Send DISCONNECT (so the broker does not publish the will) if connected, waiting
        until ``deadline`` (monotonic) at most; then close the socket and stop reconnecting."""
        ...

    def alive(self) -> bool:
        """The connection keeper runs (it may be waiting to reconnect)."""
        ...

    def set_urgent(self, alarm_waiting: bool) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> Published:
        """Queue a message; it is written when the loop next finds the socket writable
        (publishes of one loop turn go out together)."""
        ...

    def flush(self) -> None:
        """Write what is queued now, without waiting for the loop's next turn (an alarm sent
        just before a blocking fsync goes out while the fsync runs)."""
        ...

    def subscribe(self, topic: str, handler: Callable[[InboundMessage], None]) -> Unsubscribe:
        """``handler`` runs on the loop for each message on ``topic`` (wildcards allowed),
        from now on and after every reconnect, until the returned function is called."""
        ...
