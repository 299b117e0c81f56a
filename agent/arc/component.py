"""The ARC path as an agent component: committed events -> DC-09 transmitter -> ARC.

What it uses of the port (:class:`agent.ports.AgentContext`), nothing else of the agent:

- ``ctx.subscribe_events``: every committed event; the ones ``[arc]`` selects are queued in
  the ARC's delivery rows and handed to the transmitter at once, in parallel with the MQTT
  uplink;
- ``ctx.arc_delivery()``: those rows (:class:`agent.ports.ArcDeliveryStore`, the
  ``arc_delivery`` table beside the events, :mod:`agent.store.arc_delivery`), which
  ``report`` and ``status`` read;
- ``ctx.submit_event``: ``arc_path_down`` (warning) / ``arc_path_up`` (info) and
  ``arc_refused`` (warning) events to MQTT;
- ``ctx.set_condition("arc_path_down", down)``: the status LED shows a receiver that
  stopped answering;
- ``ctx.subscribe_before_commit``: an alarm's first frame leaves while the store's commit
  runs (as the MQTT uplink's early send); its ACK is recorded only after the commit.

At start, pending rows from an earlier run are sent again, and alarms committed in the last
day that never got a row (a crash between the commit and the queueing) get one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from agent.arc.codes import arc_code
from agent.arc.config import ArcConfig
from agent.arc.transmitter import Outcome, Transmitter
from agent.errors import StoreError
from agent.model import Event, Priority
from agent.ports import AgentContext, ArcDeliveryStore, DeviceInfo
from agent.store.arc_delivery import ACKED, ArcRow

log = logging.getLogger(__name__)
ARC_DEVICE = "arc"
PATH_DOWN = "arc_path_down"     # the hub condition the LED shows
ADOPT_WINDOW_S = 24 * 3600.0
_PRIORITY_NAMES = {"alarm": Priority.ALARM, "warning": Priority.WARNING,
                   "info": Priority.INFO}


class ArcComponent:
    name = "arc"

    def __init__(self, config: ArcConfig,
                 zone_of: Callable[[str], int] = lambda _d: 0) -> None:
        self.config = config
        self.zone_of = zone_of
        self.ctx: AgentContext | None = None
        self.store: ArcDeliveryStore | None = None
        self.transmitter: Transmitter | None = None
        self._prios = {_PRIORITY_NAMES[p] for p in config.priorities}
        self._mono_of: dict[str, float] = {}

    def wanted(self, event: Event) -> bool:
        """Whether ``event`` goes to the ARC. Our own ARC warnings never do (a loop), and
        the commissioning test always does (its purpose is to prove this path)."""
        if event.type.startswith("arc_") or event.device_id == ARC_DEVICE:
            return False
        if event.type == "test" and event.data.get("source") == "commission":
            return True
        if event.priority not in self._prios:
            return False
        return not (event.priority == Priority.WARNING and self.config.warning_types
                    and event.type not in self.config.warning_types)

    async def start(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.store = store = ctx.arc_delivery()
        last = store.get_state("dc09_seq")
        self.transmitter = Transmitter(
            self.config, self._outcome, self._path,
            on_attempt=lambda event_id: self._record(store.attempted, event_id),
            wall=ctx.clock.wall, seq_start=int(last) if last and last.isdigit() else 0,
            on_seq_block=lambda n: self._record(store.set_state, "dc09_seq", str(n)))
        self._adopt_unqueued()
        pending = self.store.pending()
        if pending:
            log.warning("%d events from an earlier run are still unacknowledged by the ARC:"
                        " sending them again", len(pending))
        for row in pending:
            self.transmitter.enqueue(row.event_id, int(row.priority),
                                     arc_code(row.type, row.priority), row.zone)
        ctx.subscribe_events(self._on_event)
        ctx.subscribe_before_commit(self._before_commit)
        self.transmitter.start()

    async def stop(self) -> None:
        if self.transmitter is not None:
            await self.transmitter.stop()
            if self.ctx is not None and any(v is False
                                            for v in self.transmitter.path_up().values()):
                self.ctx.set_condition(PATH_DOWN, False)  # a stopped path shows nothing

    def devices(self) -> list[DeviceInfo]:
        return []

    # -- events in ------------------------------------------------------------------------
    def _before_commit(self, alarms: list[Event]) -> None:
        """Alarms about to be committed: the first frame goes to the primary receiver now,
        overlapping the store's fsync (the MQTT uplink does the same). Nothing is recorded
        until the commit has happened (:meth:`_on_event`)."""
        if self.transmitter is None:
            return
        for event in alarms:
            if self.wanted(event):
                self.transmitter.send_early(event.id, int(event.priority),
                                            arc_code(event.type, event.priority, event.data),
                                            self.zone_of(event.device_id))
                return

    def _on_event(self, event: Event) -> None:
        if not self.wanted(event) or self.store is None or self.transmitter is None:
            return
        code = arc_code(event.type, event.priority, event.data)
        zone = self.zone_of(event.device_id)
        # Sent even when its row cannot be written (a full or failing card): the ARC hears
        # of the alarm now; only the record of its ACK (and a resend after a restart) is lost.
        self._record(self.store.add, [ArcRow(event.id, event.seq, event.priority, event.type,
                                             event.device_id, code.contact_id, zone,
                                             event.wall, time.time())])
        self._mono_of[event.id] = event.mono
        self.transmitter.enqueue(event.id, int(event.priority), code, zone, event.mono)

    def _adopt_unqueued(self) -> None:
        assert self.store is not None
        since = time.time() - ADOPT_WINDOW_S
        rows = []
        for event_id, seq, prio, type_, device_id, wall, payload in \
                self.store.unqueued_alarms(since):
            try:
                data = json.loads(payload).get("data") or {}
            except (ValueError, AttributeError):
                data = {}
            code = arc_code(type_, Priority(prio), data)
            rows.append(ArcRow(event_id, seq, Priority(prio), type_, device_id,
                               code.contact_id, self.zone_of(device_id), wall, time.time()))
        if rows:
            log.warning("%d alarms were committed but never queued for the ARC (a crash?):"
                        " queueing them now", len(rows))
            self.store.add(rows)

    @staticmethod
    def _record(write: Callable[..., None], *args: object) -> None:
        """A write to the delivery rows; a failing card is logged, never lets it stop the
        path (it runs inside the transmitter's sender)."""
        try:
            write(*args)
        except StoreError as exc:
            log.error("ARC delivery record not written (%s): the path goes on", exc)

    # -- outcomes -------------------------------------------------------------------------
    def _outcome(self, outcome: Outcome) -> None:
        assert self.store is not None and self.ctx is not None
        mono = self._mono_of.pop(outcome.event_id, None)
        if outcome.acked:
            # Edge to ACK when the event is from this run. One sent again after a restart
            # has no latency: its monotonic time is gone, and the time from this run's queue
            # (what was recorded before) made an alarm that waited minutes through an
            # outage and a restart read as a few ms in `report` and `status`.
            latency = (time.monotonic() - mono) * 1000.0 if mono is not None else None
            self._record(self.store.acked, outcome.event_id, outcome.receiver,
                         outcome.dc09_seq, latency, f"{outcome.answer} code {outcome.code:03d}")
            log.info("ARC %s acknowledged event %s (DC-09 seq %04d) %s",
                     outcome.receiver, outcome.event_id, outcome.dc09_seq,
                     f"in {latency:.0f} ms" if latency is not None
                     else "(sent again after a restart; latency unknown)")
            return
        self._record(self.store.refused, outcome.event_id, outcome.answer)
        self.ctx.submit_event(Event(
            type="arc_refused", priority=Priority.WARNING, device_id=ARC_DEVICE,
            data={"event_id": outcome.event_id, "answer": outcome.answer,
                  "code": outcome.code},
            wall=self.ctx.clock.wall(), clock_synced=self.ctx.clock.synced()))

    def _path(self, receiver: str, up: bool, reason: str) -> None:
        assert self.ctx is not None and self.transmitter is not None
        if up:
            log.warning("ARC receiver %s answers again", receiver)
        else:
            log.error("ARC receiver %s is not answering: %s", receiver, reason)
        self.ctx.submit_event(Event(
            type="arc_path_up" if up else "arc_path_down",
            priority=Priority.INFO if up else Priority.WARNING, device_id=ARC_DEVICE,
            data={"receiver": receiver, "reason": reason,
                  "receivers_down": sorted(k for k, v in self.transmitter.path_up().items()
                                           if v is False)},
            wall=self.ctx.clock.wall(), clock_synced=self.ctx.clock.synced()))
        self.ctx.set_condition(PATH_DOWN,
                               any(v is False for v in self.transmitter.path_up().values()))

    # -- queries (commissioning, status) --------------------------------------------------
    def delivery(self, event_id: str) -> ArcRow | None:
        return self.store.get(event_id) if self.store is not None else None

    def acknowledged(self, event_id: str) -> bool:
        row = self.delivery(event_id)
        return row is not None and row.state == ACKED
