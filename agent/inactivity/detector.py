"""``InactivityDetector``: the rules engine as an agent component.

Runs on the agent loop: readings arrive through ``ctx.subscribe_readings``; a timer task
wakes at the engine's next due time (and at least every ``max_sleep_s``, so a stalled
schedule can never hide an alarm). Alerts become events through ``ctx.submit_event``;
the pre-warning drives ``ctx.set_prewarning("inactivity", ...)`` (LED and buzzer).

State is saved to the agent database. A snapshot that records an alarm as raised is only
written once that alarm's event is committed, so a crash in between re-raises it after
the restart instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import Any

from agent.aio import cancel_and_wait
from agent.clock import Clock, downtime_s, read_boot_id
from agent.errors import StoreError
from agent.inactivity.engine import EngineOptions, RulesEngine
from agent.inactivity.home import Alert, Instant
from agent.inactivity.persistence import InactivityStore
from agent.inactivity.routine import learn
from agent.inactivity.ruleset import RuleSet, derive_rules
from agent.inactivity.sensors import DeviceMap, classify, device_map_from_config
from agent.model import Event, Reading
from agent.ports import AgentContext, ComponentState, DeviceInfo

log = logging.getLogger(__name__)

_KEEP_BOOT = object()


class InactivityDetector:
    name = "inactivity"

    def __init__(
        self,
        config: Any,
        state_db: ComponentState | sqlite3.Connection | None = None,
        clock: Clock | None = None,
        device_map: DeviceMap | None = None,
        *,
        boot_id: Any = _KEEP_BOOT,
        options: EngineOptions | None = None,
        max_sleep_s: float = 60.0,
        persist_every_s: float = 60.0,
        idle_persist_s: float = 600.0,
    ) -> None:
        """``config`` is the agent :class:`~agent.config.Config` (``inactivity`` and
        ``agent.timezone`` are used). ``state_db`` (tests, benchmarks) defaults to the
        detector's state from ``ctx.component_state``; ``clock`` to ``ctx.clock``;
        ``device_map`` to the configured devices."""
        self.config = config
        self.settings = config.inactivity
        self._fixed_map = device_map
        self.device_map: DeviceMap = (device_map if device_map is not None
                                      else device_map_from_config(config))
        self.ruleset: RuleSet = derive_rules(self.settings, self.device_map)
        self.tz = config.agent.timezone
        self._db = state_db
        self._clock = clock
        self._boot_id = read_boot_id() if boot_id is _KEEP_BOOT else boot_id
        self._options = options
        self.max_sleep_s = max_sleep_s
        self.persist_every_s = persist_every_s    # after readings, at most this often
        self.idle_persist_s = idle_persist_s      # when only time passes (spares the SD card)
        self.engine: RulesEngine | None = None
        self.store: InactivityStore | None = None
        self.ctx: AgentContext | None = None
        self.prewarning = False
        self._awaiting_commit: set[str] = set()
        self._last_persist = float("-inf")
        self._unsaved_activity = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.counts: dict[str, int] = {}   # alerts raised, by type
        self.observations = 0               # readings that said something about the person

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def has_rules(self) -> bool:
        rs = self.ruleset
        # Learning needs activity sensors to learn from: a hub with only a pull cord (or
        # pendant) has nothing to judge stillness by, and must not learn from button presses.
        learned = rs.learned is not None and bool(self.device_map)
        return bool(rs.inactivity or learned or rs.not_up or rs.night_out_of_bed
                    or rs.chair_too_long or rs.night_exit or rs.away)

    async def start(self, ctx: AgentContext) -> None:
        if not self.has_rules:
            log.info("inactivity: no rules to run (no activity sensors configured)")
            return
        self.attach(ctx)
        self._wake = asyncio.Event()
        self._task = ctx.loop.create_task(self._run(), name="inactivity")

    def attach(self, ctx: AgentContext) -> None:
        """Build the engine (restoring saved state) and subscribe; no timer task."""
        self.ctx = ctx
        clock = self._clock or ctx.clock
        self._clock = clock
        self.store = InactivityStore(self._db if self._db is not None
                                     else ctx.component_state(self.name))
        now = self._now()
        routine = self.store.load_routine() if self.store else None
        self.engine = RulesEngine(self.ruleset, self.tz, now, routine=routine,
                                  options=self._options)
        if self.store is not None:
            self._load_learning()
            snap = self.store.load_snapshot()
            if snap is not None:
                try:
                    down = downtime_s(snap, now.mono, now.wall, now.synced, self._boot_id)
                    log.info("inactivity: restoring state saved %s ago",
                             "an unknown time" if down is None else f"{down:.0f} s")
                    self.engine.restore(snap, now, down)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    log.error("inactivity: saved state is unusable (%s); starting afresh", exc)
                    self.engine = RulesEngine(self.ruleset, self.tz, now, routine=routine,
                                              options=self._options)
                    self._load_learning()
        for note in self.ruleset.notes:
            (log.warning if note.startswith("warning") else log.info)("inactivity rules: %s", note)
        ctx.subscribe_readings(self.handle_reading)
        ctx.subscribe_events(self._on_committed)
        self._sync_prewarning()
        self.persist(force=True)

    def _load_learning(self) -> None:
        """The stillness samples and household records saved by the previous run."""
        assert self.store is not None and self.engine is not None
        if self.engine.recorder is not None:
            self.engine.recorder.bins.update(self.store.load_bins())
            self.engine.recorder.places.update(self.store.load_places())
        household = self.store.load_household()
        if household is not None:
            self.engine.learning.recorder = household
            # Learned values apply at once (not only from the next midnight).
            self.engine.learning.relearn(self.engine.clock.local_date(self._now().wall))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.engine is not None:
            self.persist(force=True, ignore_pending=True)
        if self.ctx is not None and self.prewarning:
            self.ctx.set_prewarning("inactivity", False)
            self.prewarning = False

    def devices(self) -> list[DeviceInfo]:
        return []

    def reconfigure(self, config: Any) -> None:
        """Swap in a new config without a restart (remote support changing a window).

        Countdowns, presence, away and the learned samples carry over: the person's last
        activity does not change because a threshold did.
        """
        old_learned = self.ruleset.learned
        self.config = config
        self.settings = config.inactivity
        self.tz = config.agent.timezone
        if self._fixed_map is None:
            self.device_map = device_map_from_config(config)
        self.ruleset = derive_rules(self.settings, self.device_map)
        if self.engine is None or self.ctx is None:
            return
        now = self._now()
        snap = self.engine.snapshot(now)
        recorder, routine = self.engine.recorder, self.engine.routine
        household = self.engine.learning.recorder
        self.engine = RulesEngine(self.ruleset, self.tz, now, routine=routine,
                                  options=self._options)
        if recorder is not None and self.engine.recorder is not None:
            self.engine.recorder = recorder
        self.engine.learning.recorder = household
        self.engine.learning.relearn(self.engine.clock.local_date(now.wall))
        self.engine.restore(snap, now, 0.0, live=True)
        learned = self.ruleset.learned
        if learned is not None and learned != old_learned and self.engine.recorder is not None:
            self.engine.set_routine(learn(self.engine.recorder.bins, learned,
                                          self.engine.clock.local_date(now.wall),
                                          self.engine.recorder.places))
            self.engine.routine_changed = True
        log.info("inactivity: reconfigured (%s)", "; ".join(self.ruleset.notes))
        self._after_step(self.engine.advance(now), force=True)
        if self._wake is not None:
            self._wake.set()

    # -- driving ---------------------------------------------------------------------------------
    def _now(self) -> Instant:
        assert self._clock is not None
        c = self._clock
        return Instant(c.monotonic(), c.wall(), c.synced())

    def handle_reading(self, reading: Reading) -> None:
        if self.engine is None:
            return
        obs = classify(reading, self.device_map, self.ruleset.exit_doors)
        if obs is None:
            return
        self.observations += 1
        alerts = self.engine.observe(obs, self._now())
        self._after_step(alerts, force=obs.type not in ("motion", "motion_clear"), seen=True)
        if self._wake is not None:
            self._wake.set()    # the next due time may have moved earlier

    def poll(self) -> None:
        """Let time pass up to the clock's now (the timer task calls this)."""
        if self.engine is None:
            return
        self._after_step(self.engine.advance(self._now()))

    def next_wakeup(self) -> float | None:
        """Monotonic time at which :meth:`poll` must run next."""
        return None if self.engine is None else self.engine.next_due(self._now())

    def wake(self) -> None:
        """Re-evaluate now (tests move a manual clock, then call this)."""
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                self.poll()
                due = self.next_wakeup()
                delay = self.max_sleep_s
                if due is not None:
                    delay = min(delay, max(0.0, due - self._now().mono))
            except Exception:   # never let a bug silence the rules
                log.exception("inactivity: evaluation failed")
                delay = self.max_sleep_s
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay + 0.001)

    def _after_step(self, alerts: list[Alert], force: bool = False, seen: bool = False) -> None:
        assert self.ctx is not None and self.engine is not None
        for alert in alerts:
            self._submit(alert)
        changed = self._sync_prewarning()
        self._unsaved_activity |= seen
        self.persist(force=force or changed or bool(alerts) or self.engine.routine_changed,
                     every_s=(self.persist_every_s if self._unsaved_activity
                              else self.idle_persist_s))

    def _submit(self, alert: Alert) -> None:
        assert self.ctx is not None
        now = self._now()
        event = Event(
            type=alert.type, priority=alert.priority, device_id=alert.device_id or self.name,
            data=alert.data, wall=now.wall, mono=now.mono, clock_synced=now.synced,
        )
        self.counts[alert.type] = self.counts.get(alert.type, 0) + 1
        log.warning("inactivity: raising %s (%s)", alert.type, dict(alert.data))
        self._awaiting_commit.add(event.id)
        self.ctx.submit_event(event)

    def _sync_prewarning(self) -> bool:
        assert self.ctx is not None and self.engine is not None
        active = self.engine.prewarning
        if active == self.prewarning:
            return False
        self.prewarning = active
        self.ctx.set_prewarning("inactivity", active)
        return True

    def _on_committed(self, event: Event) -> None:
        if event.id in self._awaiting_commit:
            self._awaiting_commit.discard(event.id)
            if not self._awaiting_commit:
                self.persist(force=True)

    # -- persistence -----------------------------------------------------------------------------
    def persist(self, force: bool = False, ignore_pending: bool = False,
                every_s: float | None = None) -> None:
        """Save the snapshot (and new learning); at most every ``every_s`` unless ``force``.

        Between saves nothing is lost that a restart cannot rebuild: the downtime since the
        snapshot is counted as still time when it can be measured.
        """
        if self.store is None or self.engine is None:
            return
        if self._awaiting_commit and not ignore_pending:
            return      # wait until the alarms just raised are durable
        now = self._now()
        every = self.persist_every_s if every_s is None else every_s
        if not force and now.mono - self._last_persist < every:
            return
        snap = self.engine.snapshot(now)
        snap.update(saved_mono=now.mono, saved_wall=now.wall, saved_synced=now.synced,
                    boot_id=self._boot_id)
        rec = self.engine.recorder
        bins = {k: rec.bins[k] for k in rec.dirty if k in rec.bins} if rec is not None else None
        places = ({k: rec.places[k] for k in rec.dirty_places if k in rec.places}
                  if rec is not None else None)
        routine = self.engine.routine if self.engine.routine_changed else None
        household = self.engine.learning.recorder
        prune = self.engine.prune_before
        try:
            self.store.save(snapshot=snap, routine=routine, bins=bins, prune_before=prune,
                            household=household if household.dirty else None, places=places)
        except StoreError as exc:
            log.error("inactivity: cannot save state: %s (will retry)", exc)
            return
        self._last_persist = now.mono
        self._unsaved_activity = False
        if rec is not None:
            rec.dirty.clear()
            rec.dirty_places.clear()
        self.engine.routine_changed = False
        self.engine.prune_before = None
        household.dirty = False
