"""The application: wires drivers, detectors, store and uplink in one place.

``Agent`` implements :class:`agent.ports.AgentContext`. It owns the single asyncio loop's
state: readings arrive (from any thread) through :meth:`emit_reading`, are fanned out to
subscribers, and the ones that are events are committed to the store in batches (one
transaction per loop turn) before anyone else hears of them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.alarm_outputs import AlarmOutputs
from agent.change_plan import ChangePlan, plan_change
from agent.clock import Clock, SystemClock
from agent.components import Hardware, build_components
from agent.config import Config, MqttConfig
from agent.errors import StoreError, StoreWriteError
from agent.model import Event, Priority, Reading
from agent.ports import (
    AgentState,
    AlarmOutput,
    ArcDeliveryStore,
    Component,
    DeviceInfo,
    HubMessage,
    InboundMessage,
    StoreFigures,
    Unsubscribe,
    UplinkFigures,
    condition_name,
    merge_devices,
)
from agent.reconfigure import apply_live
from agent.store.component_state import SqliteComponentState
from agent.store.lock import STORE_CREATED_META, StoreLock
from agent.store.sqlite_store import SqliteStore, StoreNotice
from agent.systemd_notify import notify, watchdog_interval_s
from agent.uplink import build_uplink, topics
from agent.uplink.delivery import Delivery

log = logging.getLogger(__name__)


DEVICE_STATE_DELAY_S = 0.02  # retained device state follows the events of the same moment
STORE_RETRY_S = (1.0, 30.0)  # storing held alarms again: first wait, doubling to this cap
STATUS_EVERY_S = 2.0         # systemd StatusText: at most this often (state changes coalesced)
MAINTAIN_EVERY_S = 10.0      # store upkeep (reserve re-armed, disk-full state left)
STORE_DEVICE = "store"       # device_id of the store's own warnings
STORE_BUSY_EXTEND_S = 60.0   # start time asked of systemd per salvage progress report
# How systemd's status line names a hub condition (others: the name, underscores as spaces).
CONDITION_TEXT = {"arc_path_down": "ARC path down"}


class HubTopics:
    """The port's publish/subscribe on the hub's topics, over whichever uplink is current.

    A thin adapter: it holds who listens to what and the latest retained payload per topic,
    so a new uplink (a changed ``[mqtt]``) is given them without anyone reading the old
    one's insides. Loop only."""

    def __init__(self, hub_id: str, topic_prefix: str = "") -> None:
        self.prefix = f"{topics.root(topic_prefix)}/{hub_id}/"
        self._handlers: dict[str, list[Callable[[HubMessage], None]]] = {}
        self._retained: dict[str, bytes] = {}
        self._uplink: Delivery | None = None

    def _check(self, topic: str) -> None:
        if not topic.startswith(self.prefix):
            raise ValueError(f"topic {topic!r} is not one of this hub's ({self.prefix}...)")

    def attach(self, uplink: Delivery) -> None:
        """Use ``uplink`` from now on: it is given every subscription and retained payload
        (retained state is sent again on the new connection; it is the latest per topic)."""
        self._uplink = uplink
        for topic in self._handlers:
            uplink.subscribe(topic, self._dispatcher(topic))
        for topic, payload in self._retained.items():
            uplink.publish_retained(topic, payload)

    def _dispatcher(self, topic: str) -> Callable[[InboundMessage], None]:
        def dispatch(msg: InboundMessage) -> None:
            for handler in list(self._handlers.get(topic, ())):
                try:
                    handler(msg)
                except Exception:
                    log.exception("handler %r of %s failed", handler, topic)
        return dispatch

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                qos: int = 1) -> bool:
        self._check(topic)
        uplink = self._uplink
        if retain:
            self._retained[topic] = payload
            if uplink is not None:
                uplink.publish_retained(topic, payload)
            return True
        if uplink is None or not uplink.connected:
            return False
        uplink.publish(topic, payload, qos=qos)
        return True

    def subscribe(self, topic: str, handler: Callable[[HubMessage], None]) -> Unsubscribe:
        self._check(topic)
        handlers = self._handlers.get(topic)
        if handlers is None:
            handlers = self._handlers[topic] = []
            if self._uplink is not None:
                self._uplink.subscribe(topic, self._dispatcher(topic))
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)
        return unsubscribe


class Agent:
    """The running agent. ``await agent.start()`` ... ``await agent.stop()``."""

    def __init__(
        self,
        config: Config,
        hardware: Hardware | None = None,
        components: list[Component] | None = None,
        clock: Clock | None = None,
        on_stored: Callable[[Event], None] | None = None,
        store: SqliteStore | None = None,
        config_file: str | None = None,
    ) -> None:
        """``store``: the event store to use (tests hand in one with a fault-injecting
        ``connect``); by default one is made from ``config.store``. ``config_file``: the
        file ``config`` was read from (see :func:`build_components`)."""
        self.config = config
        self.hub_id = config.hub_id
        self.topic_prefix = config.mqtt.topic_prefix
        self.hardware = hardware or Hardware()
        self.clock: Clock = clock or SystemClock(config.agent.assume_clock_synced)
        self.components: list[Component] = (
            components if components is not None
            else build_components(config, self.hardware, config_file)
        )
        self.store = store or SqliteStore(
            config.store.path,
            config.hub_id,
            max_bytes=config.store.max_mb * 1024 * 1024,
            reserve_bytes=int(config.store.reserve_mb * 1024 * 1024),
            keep_history_days=config.store.keep_history_days,
        )
        self.store.on_notice = self._store_notice
        self.store.on_progress = self._store_busy
        # One agent per store (see agent/store/lock.py): taken in start(), before the store
        # is opened, and held until stop().
        self.store_lock = StoreLock(self.store.path)
        self.executor: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="inference")
        self.started_mono = time.monotonic()
        self.accepting = False
        self._on_stored = on_stored
        self._reading_subs: list[Callable[[Reading], None]] = []
        self._event_subs: list[Callable[[Event], None]] = []
        self._ack_subs: list[Callable[[int], None]] = []
        self._precommit_subs: list[Callable[[list[Event]], None]] = []
        self._refused_subs: list[Callable[[Event], None]] = []
        self._refused_told: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._state_subs: list[Callable[[AgentState], None]] = []
        self._batch: list[Event] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flush_now = False
        self._device_states: dict[str, bytes] = {}    # device id -> latest retained state
        self._states_handle: asyncio.TimerHandle | None = None
        self._pending_ids: dict[str, int] = {}        # non-telemetry id -> seq, not yet acked
        self._pending_seq: dict[int, tuple[str, Priority]] = {}
        self._delivered: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._backlog = 0
        self._prewarning: set[str] = set()
        self._conditions: set[str] = set()           # raised by components (set_condition)
        self._state = AgentState()
        self._status_sent = ""                        # last StatusText given to systemd
        self._status_mono = -STATUS_EVERY_S
        self._status_handle: asyncio.TimerHandle | None = None
        self._last_alarm_delivered: float | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._notices: list[StoreNotice] = []         # found before intake opened
        self._unstored: list[Event] = []              # alarms/warnings the store refused
        self._store_retry: asyncio.TimerHandle | None = None
        self._store_retry_s = STORE_RETRY_S[0]
        self._storage_failed = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.uplink: Delivery = None  # type: ignore[assignment]
        self.stats: collections.Counter[str] = collections.Counter()
        self._subs_of: dict[int, list[tuple[list[Any], Any]]] = {}  # component -> callbacks
        self._unsubs_of: dict[int, list[Unsubscribe]] = {}  # component -> topic handlers
        self._starting: list[Unsubscribe] | None = None     # collects them during a start
        self.topics = HubTopics(self.hub_id, self.topic_prefix)
        self._alarm_outputs = AlarmOutputs()

    # -- AgentContext -------------------------------------------------------------------------
    def emit_reading(self, reading: Reading) -> None:
        try:
            self.loop.call_soon_threadsafe(self._on_reading, reading)
        except RuntimeError:
            log.error("reading %s from %s arrived after shutdown; not accepted",
                      reading.type, reading.device_id)

    def submit_event(self, event: Event) -> None:
        if not self.accepting:
            log.error("event %s from %s after intake stopped; not accepted",
                      event.type, event.device_id)
            return
        if event.clock_synced is False and self.clock.synced():
            event = replace(event, clock_synced=True)
        self._batch.append(event)
        if event.priority != Priority.TELEMETRY or self.config.store.telemetry_commit_s <= 0:
            self._schedule_flush(0.0)
        else:
            self._schedule_flush(self.config.store.telemetry_commit_s)

    def _schedule_flush(self, delay: float) -> None:
        """Commit now (next loop turn) or within ``delay``; an earlier request wins.
        Everything that arrives in one loop turn is committed in one transaction."""
        if self._flush_handle is not None:
            if delay > 0 or self._flush_now:
                return
            self._flush_handle.cancel()
        self._flush_now = delay <= 0
        self._flush_handle = (self.loop.call_soon(self._flush) if self._flush_now
                              else self.loop.call_later(delay, self._flush))

    def subscribe_readings(self, callback: Callable[[Reading], None]) -> None:
        self._reading_subs.append(callback)

    def subscribe_events(self, callback: Callable[[Event], None]) -> None:
        self._event_subs.append(callback)

    def subscribe_acks(self, callback: Callable[[int], None]) -> None:
        self._ack_subs.append(callback)

    def subscribe_before_commit(self, callback: Callable[[list[Event]], None]) -> None:
        self._precommit_subs.append(callback)

    def subscribe_refused(self, callback: Callable[[Event], None]) -> None:
        self._refused_subs.append(callback)

    def subscribe_state(self, callback: Callable[[AgentState], None]) -> None:
        self._state_subs.append(callback)
        callback(self._state)

    def set_prewarning(self, source: str, active: bool) -> None:
        if active:
            self._prewarning.add(source)
        else:
            self._prewarning.discard(source)
        self._update_state()

    def set_condition(self, name: str, active: bool) -> None:
        condition_name(name)
        if active:
            self._conditions.add(name)
        else:
            self._conditions.discard(name)
        self._update_state()

    def arc_delivery(self) -> ArcDeliveryStore:
        return self.store.arc_delivery()

    def publish_device_state(self, device_id: str, state: dict[str, Any]) -> None:
        """Loop only. Sent :data:`DEVICE_STATE_DELAY_S` later, the latest state per device:
        a driver publishes state right after the reading it emits, and that publish (paho's
        lock, a socket write on the loop) must not run ahead of the reading's alarm. A
        burst of edges also becomes one message."""
        self._device_states[device_id] = json.dumps(
            state, separators=(",", ":"), default=str).encode()
        if self._states_handle is None:
            self._states_handle = self.loop.call_later(DEVICE_STATE_DELAY_S,
                                                       self._send_device_states)

    def _send_device_states(self) -> None:
        if self._states_handle is not None:
            self._states_handle.cancel()
        self._states_handle = None
        states, self._device_states = self._device_states, {}
        for device_id, payload in states.items():
            topic = topics.device_topic(self.hub_id, device_id, self.topic_prefix)
            self.topics.publish(topic, payload, retain=True)

    def pending_alarms(self) -> list[Event]:
        """Alarms stored by an earlier run and still not acknowledged by the broker, and not
        yet escalated (so a second alarm path can take them up after a restart)."""
        out = []
        for doc in self.store.pending_alarms():
            try:
                wall = datetime.fromisoformat(str(doc["ts"]).replace("Z", "+00:00")).timestamp()
                data = doc.get("data")
                out.append(Event(
                    type=str(doc["type"]), priority=Priority.ALARM, device_id=str(doc["device_id"]),
                    data=data if isinstance(data, dict) else {}, wall=wall,
                    clock_synced=bool(doc.get("clock_synced")), id=str(doc["id"]),
                    seq=int(doc["seq"]),
                ))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("pending alarm in the store is unreadable (%s); it is still sent", exc)
        return out

    def event_delivered(self, event_id: str) -> bool | None:
        if event_id in self._pending_ids:
            return False
        if event_id in self._delivered:
            return True
        return None

    def component_state(self, component: str) -> SqliteComponentState:
        return self.store.component_state(component)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                qos: int = 1) -> bool:
        return self.topics.publish(topic, payload, retain=retain, qos=qos)

    def subscribe(self, topic: str, handler: Callable[[HubMessage], None]) -> Unsubscribe:
        unsubscribe = self.topics.subscribe(topic, handler)
        if self._starting is not None:
            self._starting.append(unsubscribe)
        return unsubscribe

    def register_alarm_output(self, output_id: str, output: AlarmOutput) -> Unsubscribe:
        return self._alarm_outputs.register(output_id, output)

    def alarm_output(self, output_id: str) -> AlarmOutput | None:
        return self._alarm_outputs.get(output_id)

    # -- RemoteHost (agent/remote/) -------------------------------------------------------------
    def component_names(self) -> list[str]:
        return [c.name for c in self.components]

    def uplink_figures(self) -> UplinkFigures:
        up = self.uplink
        if up is None:
            return UplinkFigures()
        return UplinkFigures(online=bool(up.connected), alive=up.alive(), connects=up.connects,
                             published=up.published, acked=up.acked, inflight=up.inflight)

    def store_figures(self) -> StoreFigures:
        backlog = self.store.backlog()
        return StoreFigures(backlog_total=backlog.total, backlog_counts=dict(backlog.counts),
                            oldest_wall=dict(backlog.oldest_wall),
                            used_bytes=self.store.used_bytes(), evicted=dict(self.store.evicted),
                            dropped=dict(self.store.dropped))

    def get_meta(self, key: str) -> str | None:
        return self.store.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.store.set_meta(key, value)

    @property
    def state(self) -> AgentState:
        return self._state

    def commit_pending(self) -> bool:
        """Loop only. Commit now what the intake holds (telemetry otherwise waits up to
        ``store.telemetry_commit_s`` for its group commit). Returns True when there was
        something: a caller that waits for "everything sent" must not stop while the last
        events have not even been stored yet."""
        if not self._batch and self._flush_handle is None:
            return False
        self._flush()
        return True

    # -- internals ------------------------------------------------------------------------------
    def _on_reading(self, reading: Reading) -> None:
        if not self.accepting:
            log.error("reading %s from %s after intake stopped; not accepted",
                      reading.type, reading.device_id)
            return
        self.stats["readings"] += 1
        for cb in self._reading_subs:
            try:
                cb(reading)
            except Exception:  # a faulty detector must not stop the others or the intake
                log.exception("reading subscriber %r failed", cb)
        if reading.publish:
            self.submit_event(Event.from_reading(reading, self.clock.synced()))

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = None
        self._flush_now = False
        batch, self._batch = self._batch, []
        if self._unstored and self._store_retry is None:
            batch[:0], self._unstored = self._unstored, []
        if not batch:
            return
        try:
            stored = self.store.append(
                batch, before_commit=lambda rows: self._before_commit(batch, rows))
        except StoreError as exc:
            self._store_failed(batch, exc)
            return
        if self._storage_failed and not self._unstored:
            log.warning("event store accepts alarms again")
            self._storage_failed = False
            self._store_retry_s = STORE_RETRY_S[0]
        self._backlog += len(stored)
        for ev in stored:
            if ev.priority != Priority.TELEMETRY:
                assert ev.seq is not None
                self._pending_ids[ev.id] = ev.seq
                self._pending_seq[ev.seq] = (ev.id, ev.priority)
        self.stats["stored"] += len(stored)
        self.uplink.notify_new()
        for ev in stored:
            if self._on_stored is not None:
                self._on_stored(ev)
            for cb in self._event_subs:
                try:
                    cb(ev)
                except Exception:
                    log.exception("event subscriber %r failed", cb)
        self._update_state()

    def _before_commit(self, batch: list[Event], rows: list[Any]) -> None:
        """Just before the commit's fsync: alarms go out early on every alarm path (MQTT,
        then the ARC's ``subscribe_before_commit``); none is acknowledged before the commit."""
        self.uplink.send_early(rows)
        if not self._precommit_subs:
            return
        ids = {r.id for r in rows if r.priority == Priority.ALARM}
        alarms = [e for e in batch if e.id in ids]
        if not alarms:
            return
        for cb in self._precommit_subs:
            try:
                cb(alarms)
            except Exception:
                log.exception("before-commit subscriber %r failed", cb)

    def _store_failed(self, batch: list[Event], exc: StoreError) -> None:
        """Alarms and warnings the store refused stay in memory and are retried (backing
        off to 30 s); each is sent to the broker once now (alarms were already, before the
        commit), raises ``storage_failed`` (event, LED and buzzer) and is never dropped."""
        urgent = [e for e in batch if e.priority <= Priority.WARNING]
        lost = len(batch) - len(urgent)
        if lost:
            self.stats["dropped_unstored"] += lost
        if isinstance(exc, StoreWriteError):
            self.uplink.send_unstored(exc.rows)
        if not self._storage_failed:
            self._storage_failed = True
            alarms = sum(1 for e in urgent if e.priority == Priority.ALARM)
            log.critical("cannot store %d alarms and %d warnings (%s): sent to the broker"
                         " once, kept in memory, storing again in %.0f s", alarms,
                         len(urgent) - alarms, exc, self._store_retry_s)
            warning = Event(
                type="storage_failed", priority=Priority.WARNING, device_id=STORE_DEVICE,
                data={"reason": str(exc)[:300], "unstored_alarms": alarms,
                      "unstored_warnings": len(urgent) - alarms,
                      "dropped_telemetry_info": lost},
                wall=self.clock.wall(), clock_synced=self.clock.synced())
            # Stored with the next batch if the store recovers; if refused too, it is sent
            # as it is, like the alarms.
            self._batch.append(warning)
            self._schedule_flush(0.0)
        else:
            log.error("still cannot store %d alarms/warnings (%s); again in %.0f s",
                      len(urgent), exc, self._store_retry_s)
        self._unstored[:0] = urgent
        self._tell_refused(urgent)
        if self._store_retry is None:
            self._store_retry = self.loop.call_later(self._store_retry_s, self._retry_store)
            self._store_retry_s = min(self._store_retry_s * 2, STORE_RETRY_S[1])
        self._update_state()

    def _tell_refused(self, events: list[Event]) -> None:
        """Each refused alarm/warning once to ``subscribe_refused`` (a second alarm path)."""
        for ev in events:
            if ev.id in self._refused_told:
                continue
            self._refused_told[ev.id] = None
            if len(self._refused_told) > 10_000:
                self._refused_told.popitem(last=False)
            for cb in self._refused_subs:
                try:
                    cb(ev)
                except Exception:
                    log.exception("refused-event subscriber %r failed", cb)

    def _retry_store(self) -> None:
        self._store_retry = None
        self._schedule_flush(0.0)

    def _store_busy(self, what: str) -> None:
        """A long salvage at start: ask systemd for more start time (it would kill the
        start after TimeoutStartSec and the salvage would begin again, and again)."""
        notify(f"EXTEND_TIMEOUT_USEC={int(STORE_BUSY_EXTEND_S * 1e6)}")
        notify(f"STATUS=starting: {what}")

    def _store_notice(self, notice: StoreNotice) -> None:
        """The store found a loss or a damaged row: report it as a warning event."""
        if not self.accepting:
            self._notices.append(notice)
            return
        self.submit_event(Event(type=notice.type, priority=Priority.WARNING,
                                device_id=STORE_DEVICE, data=notice.data,
                                wall=self.clock.wall(), clock_synced=self.clock.synced()))

    def _acked(self, seqs: list[int]) -> None:
        self._backlog = max(0, self._backlog - len(seqs))
        for seq in seqs:
            entry = self._pending_seq.pop(seq, None)
            if entry is not None:
                event_id, prio = entry
                self._pending_ids.pop(event_id, None)
                self._delivered[event_id] = None
                if len(self._delivered) > 10_000:
                    self._delivered.popitem(last=False)
                if prio == Priority.ALARM:
                    self._last_alarm_delivered = time.monotonic()
            for cb in self._ack_subs:
                try:
                    cb(seq)
                except Exception:
                    log.exception("ack subscriber %r failed", cb)
        self._update_state()

    def _update_state(self) -> None:
        alarm_pending = (any(p == Priority.ALARM for _, p in self._pending_seq.values())
                         or any(e.priority == Priority.ALARM for e in self._unstored))
        if self.uplink is not None:
            self.uplink.set_urgent(alarm_pending)
        new = AgentState(
            online=bool(self.uplink and self.uplink.connected),
            backlog=self._backlog,
            alarm_pending=alarm_pending,
            last_alarm_delivered_mono=self._last_alarm_delivered,
            prewarning=bool(self._prewarning),
            storage_failed=self._storage_failed,
            conditions=frozenset(self._conditions),
        )
        if new != self._state:
            self._state = new
            for cb in self._state_subs:
                try:
                    cb(new)
                except Exception:
                    log.exception("state subscriber %r failed", cb)
            self._notify_status()

    def _status_text(self) -> str:
        s = self._state
        parts = ["online" if s.online else "offline", f"{s.backlog} pending"]
        if s.alarm_pending:
            parts.append("alarm pending")
        if s.storage_failed:
            parts.append("STORAGE FAILED")
        parts.extend(CONDITION_TEXT.get(c, c.replace("_", " ")) for c in sorted(s.conditions))
        if s.last_alarm_delivered_mono is not None:
            at = self.clock.wall() - (time.monotonic() - s.last_alarm_delivered_mono)
            parts.append("last alarm delivered "
                         + time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at)))
        return "; ".join(parts)

    def _notify_status(self) -> None:
        """Keep systemd's StatusText (``systemctl status``) current: sent on a state change,
        at most every STATUS_EVERY_S (a burst of events ends in one update with the final
        figures, from a timer). A datagram to systemd's socket: never blocks the loop."""
        if self._status_handle is not None or self.loop is None:
            return
        wait = self._status_mono + STATUS_EVERY_S - time.monotonic()
        if wait > 0:
            self._status_handle = self.loop.call_later(wait, self._send_status)
        else:
            self._send_status()

    def _send_status(self) -> None:
        self._status_handle = None
        text = self._status_text()
        if text != self._status_sent:
            self._status_sent, self._status_mono = text, time.monotonic()
            notify(f"STATUS={text}")

    def _load_pending(self) -> None:
        self._backlog = self.store.pending_count()
        for event_id, seq, prio in self.store.pending_urgent():
            self._pending_ids[event_id] = seq
            self._pending_seq[seq] = (event_id, Priority(prio))

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.store_lock.acquire()
        try:
            self.store.open()
        except BaseException:
            self.store_lock.release()
            raise
        self._load_pending()
        self._note_store_created()
        if self._backlog:
            log.info("%d events from an earlier run are waiting to be sent", self._backlog)
        self.uplink = self._make_uplink(self.config.mqtt)
        self.topics.attach(self.uplink)
        self.accepting = True
        notices, self._notices = self._notices, []
        for notice in notices:
            self._store_notice(notice)
        for comp in self.components:
            await self.start_component(comp)
            log.info("started %s", comp.name)
        self.uplink.start()
        self._tasks.append(self.loop.create_task(self._housekeeping(), name="housekeeping"))
        interval = watchdog_interval_s()
        if interval:
            self._tasks.append(self.loop.create_task(self._watchdog(interval), name="watchdog"))
        notify("READY=1")
        self._update_state()
        self._send_status()
        log.info("tec-agent running for hub %s (%d components)", self.hub_id, len(self.components))

    async def stop(self) -> None:
        """Stop intake, flush, say offline, close. Bounded by agent.shutdown_timeout_s."""
        deadline = time.monotonic() + self.config.agent.shutdown_timeout_s
        notify("STOPPING=1")
        if self._status_handle is not None:
            self._status_handle.cancel()
            self._status_handle = None
        for comp in reversed(self.components):
            try:
                await asyncio.wait_for(comp.stop(), max(0.1, (deadline - time.monotonic()) / 3))
            except Exception:
                log.exception("stopping %s failed", comp.name)
        await asyncio.sleep(0)  # let readings already handed over reach the loop
        if self._store_retry is not None:
            self._store_retry.cancel()
            self._store_retry = None
        self._flush()
        for ev in self._unstored:
            log.critical("shutting down with %s %s (id %s, from %s) not stored in the"
                         " database: the broker was sent it once, and the store's spill file"
                         " (%s) hands it to the next start", ev.priority.label, ev.type, ev.id,
                         ev.device_id, self.store.spill_path)
        self._send_device_states()
        self.accepting = False
        for task in self._tasks:
            task.cancel()
        if self.uplink is not None:
            await self.uplink.stop(deadline)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        self.store_lock.release()
        log.info("tec-agent stopped (%d events pending for the next start)", self._backlog)

    def _note_store_created(self) -> None:
        """Remember when this store began (reports count device uptime only from then)."""
        try:
            # Only a synchronised clock: a Pi without RTC boots in the past, and a creation
            # dated 1970 would claim every day since was watched.
            if self.clock.synced() and self.store.get_meta(STORE_CREATED_META) is None:
                self.store.set_meta(STORE_CREATED_META, repr(self.clock.wall()))
        except Exception as exc:  # a report figure: never worth failing the start for
            log.warning("could not note the store's creation time: %s", exc)

    def _make_uplink(self, mqtt_config: MqttConfig) -> Delivery:
        return build_uplink(
            mqtt_config, self.hub_id, self.store, self.loop,
            on_acked=self._acked, on_connection=lambda _c: self._update_state(),
        )

    # -- live reconfiguration (remote support: agent/remote/) -----------------------------------
    async def reconfigure(self, new_config: Config) -> list[str]:
        """Switch to ``new_config`` without a restart: rebuild the components whose settings
        changed, swap the MQTT connection if ``[mqtt]`` changed. Returns what failed (empty:
        all started); the caller decides whether to roll back."""
        return await apply_live(self, new_config)

    def plan_change(self, new_config: Config) -> ChangePlan:
        return plan_change(self.config, new_config)

    def uplink_config(self) -> MqttConfig | None:
        return self.uplink.cfg if self.uplink is not None else None

    async def start_component(self, comp: Component) -> None:
        """Start ``comp``, remembering the callbacks it subscribes so that
        :meth:`stop_component` can take them away again."""
        lists: list[list[Any]] = [self._reading_subs, self._event_subs, self._ack_subs,
                                  self._state_subs, self._refused_subs, self._precommit_subs]
        before = [len(lst) for lst in lists]
        unsubs: list[Unsubscribe] = []
        self._starting = unsubs
        try:
            await comp.start(self)
        finally:
            self._starting = None
            self._subs_of[id(comp)] = [(lst, cb) for lst, n in zip(lists, before, strict=True)
                                       for cb in lst[n:]]
            self._unsubs_of[id(comp)] = unsubs

    async def stop_component(self, comp: Component, timeout: float) -> None:
        """Stop ``comp`` and unsubscribe its callbacks (a stopped detector hears nothing more)."""
        try:
            await asyncio.wait_for(comp.stop(), timeout)
        except Exception:
            log.exception("stopping %s failed", comp.name)
        for lst, cb in self._subs_of.pop(id(comp), []):
            if cb in lst:
                lst.remove(cb)
        for unsubscribe in self._unsubs_of.pop(id(comp), []):
            unsubscribe()

    async def swap_uplink(self, mqtt_config: MqttConfig) -> None:
        """Replace the MQTT connection. The new one is built before the old one stops (so a
        bad credential file fails here, with the old connection still up). Events stay in
        the store; what the old connection had not got acknowledged is sent again."""
        new = self._make_uplink(mqtt_config)
        old = self.uplink
        await old.stop(time.monotonic() + self.config.agent.shutdown_timeout_s)
        self.topics.attach(new)   # the components' subscriptions and retained state
        self.uplink = new
        new.start()
        self._update_state()

    async def _watchdog(self, interval: float) -> None:
        while True:
            if self.uplink.alive():
                notify("WATCHDOG=1")
            else:
                log.error(
                    "uplink is not alive: withholding the watchdog ping so systemd restarts us"
                )
            await asyncio.sleep(interval)

    async def _housekeeping(self) -> None:
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(MAINTAIN_EVERY_S)
            try:
                self.store.maintain()
                if time.monotonic() - last_prune >= 3600:
                    last_prune = time.monotonic()
                    removed = self.store.prune_history()
                    if removed:
                        log.info("pruned %d old delivered events from history", removed)
            except Exception:
                log.exception("housekeeping failed")

    def devices(self) -> list[DeviceInfo]:
        # A detector's counters about a driver's device (escalation) join its entry.
        return merge_devices(d for comp in self.components for d in comp.devices())

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_mono

    def store_path(self) -> Path:
        return Path(self.config.store.path)
