"""The daily ``summary`` info event: yesterday's outcome figures, sent each morning.

Counts, cancellations and latency come from the store (the same computation as
``tec-agent report``); what only the running agent can know is measured here:

- offline minutes: time in the day the hub was *not* connected to the broker, including
  time the agent was not running at all. Connected seconds are counted on the monotonic
  clock, split across local midnights, and kept in a small state file so a restart does not
  lose them (at most ``persist_every_s`` of connected time is lost to a crash, which then
  counts as offline: the conservative side);
- battery and signal of each device, from the drivers' inventory when the summary is sent;
- the backlog at that moment.

Days missed while the hub was off are sent when it comes back (up to ``catch_up_days``).
No summary is sent while the wall clock is unsynchronised: the day boundaries would be wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.aio import cancel_and_wait
from agent.model import Event, Priority
from agent.ports import AgentContext, AgentState, DeviceInfo
from agent.report.build import SUMMARY_TYPE, backlog_dict, summarise_day
from agent.report.config import ReportConfig
from agent.report.period import day_bounds, day_of
from agent.report.records import open_readonly
from agent.report.summary import DeviceFacts

log = logging.getLogger(__name__)

HUB_DEVICE_ID = "hub"


class DailySummary:
    """Component: measures connected time and sends one ``summary`` event per local day."""

    name = "daily_summary"

    def __init__(
        self,
        config: ReportConfig,
        *,
        store_path: str | Path,
        timezone: str,
        configured: Sequence[DeviceFacts] = (),
        inventory: Callable[[], list[DeviceInfo]] = list,
        check_every_s: float = 30.0,
        persist_every_s: float = 600.0,
        catch_up_days: int = 7,
    ) -> None:
        self.config = config
        self.store_path = Path(store_path)
        self.state_path = Path(config.state_file) if config.state_file else \
            self.store_path.with_name("summary-state.json")
        self.tz = ZoneInfo(timezone)
        self.configured = list(configured)
        self.inventory = inventory
        self.check_every_s = check_every_s
        self.persist_every_s = persist_every_s
        self.catch_up_days = catch_up_days
        hh, mm = config.daily_at.split(":")
        self.due_after = timedelta(hours=int(hh), minutes=int(mm))
        self.sent: list[Event] = []
        self._ctx: AgentContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._online = False
        self._last_mono = 0.0
        self._last_persist_mono = 0.0
        self._connected_s: dict[str, float] = {}   # local day (ISO) -> seconds connected
        self._running_s: dict[str, float] = {}     # local day (ISO) -> seconds the agent ran
        self._tracking_since: float | None = None  # wall time measuring began (first start)
        self._last_sent: str | None = None

    # -- Component ----------------------------------------------------------------------------
    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._load_state()
        now_wall = ctx.clock.wall()
        if self._tracking_since is None:
            self._tracking_since = now_wall
        if self._last_sent is None:
            # First start ever: nothing to report for days before the hub was installed.
            self._last_sent = (day_of(now_wall, self.tz) - timedelta(days=1)).isoformat()
        self._last_mono = self._last_persist_mono = ctx.clock.monotonic()
        ctx.subscribe_state(self._on_state)
        if self.config.daily_summary:
            self._task = ctx.loop.create_task(self._run(), name="daily-summary")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._ctx is not None:
            self._account()
            self._persist()

    def devices(self) -> list[DeviceInfo]:
        return []

    # -- measuring ------------------------------------------------------------------------------
    def _on_state(self, state: AgentState) -> None:
        if state.online != self._online:
            self._account()
            self._online = state.online

    def _account(self) -> None:
        """Attribute the monotonic time since the last call to local days (wall labels)."""
        assert self._ctx is not None
        mono, wall = self._ctx.clock.monotonic(), self._ctx.clock.wall()
        elapsed = max(0.0, mono - self._last_mono)
        self._last_mono = mono
        t0, t1 = wall - elapsed, wall
        while t1 > t0:
            day = day_of(t0, self.tz)
            _, day_end = day_bounds(day, self.tz)
            chunk = min(t1, day_end) - t0
            key = day.isoformat()
            self._running_s[key] = self._running_s.get(key, 0.0) + chunk
            if self._online:
                self._connected_s[key] = self._connected_s.get(key, 0.0) + chunk
            t0 += chunk

    def offline_minutes(self, day: date) -> float | None:
        """Minutes of ``day`` not connected to the broker, from when measuring began."""
        start, end = day_bounds(day, self.tz)
        since = self._tracking_since if self._tracking_since is not None else end
        covered = end - max(start, since)
        if covered <= 0:
            return None
        return max(0.0, covered - self._connected_s.get(day.isoformat(), 0.0)) / 60.0

    # -- sending ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self.check_now()
            except Exception:  # a report must never take the agent down
                log.exception("daily summary failed; will retry")
            await asyncio.sleep(self.check_every_s)

    def due_days(self) -> list[date]:
        """Completed local days whose summary has not been sent and whose send time passed."""
        assert self._ctx is not None
        now = datetime.fromtimestamp(self._ctx.clock.wall(), self.tz)
        today = now.date()
        midnight = datetime.combine(today, datetime.min.time(), tzinfo=self.tz)
        newest = today - timedelta(days=1) if now >= midnight + self.due_after else \
            today - timedelta(days=2)
        oldest = today - timedelta(days=self.catch_up_days)
        if self._last_sent is not None:
            oldest = max(oldest, date.fromisoformat(self._last_sent) + timedelta(days=1))
        days = []
        d = oldest
        while d <= newest:
            days.append(d)
            d += timedelta(days=1)
        return days

    async def check_now(self) -> list[Event]:
        """Account connected time, persist now and then, and send every due summary."""
        ctx = self._ctx
        assert ctx is not None
        self._account()
        sent: list[Event] = []
        if self.config.daily_summary and ctx.clock.synced():
            for day in self.due_days():
                event = await self._summary_event(day)
                ctx.submit_event(event)
                self.sent.append(event)
                sent.append(event)
                self._last_sent = day.isoformat()
                log.info("daily summary for %s: %d alarms, %s offline minutes", day,
                         event.data["alarms_total"], event.data["offline_minutes"])
        if sent or ctx.clock.monotonic() - self._last_persist_mono >= self.persist_every_s:
            self._persist()
        return sent

    async def _summary_event(self, day: date) -> Event:
        ctx = self._ctx
        assert ctx is not None
        now = ctx.clock.wall()
        devices = self._device_facts()
        offline = self.offline_minutes(day)
        running = self._running_s.get(day.isoformat(), 0.0) / 60.0

        def compute() -> dict[str, Any]:
            db = open_readonly(self.store_path)
            try:
                summary = summarise_day(db, day, self.tz, now=now, devices=devices,
                                        offline_minutes=offline, backlog=backlog_dict(db, now))
            finally:
                db.close()
            return summary.to_dict() | {"agent_running_minutes": round(running, 1)}

        data = await asyncio.get_running_loop().run_in_executor(None, compute)
        return Event(type=SUMMARY_TYPE, priority=Priority.INFO, device_id=HUB_DEVICE_ID,
                     data=data, wall=now, mono=ctx.clock.monotonic(),
                     clock_synced=ctx.clock.synced())

    def _device_facts(self) -> list[DeviceFacts]:
        live = {d.device_id: d for d in self.inventory()}
        out = []
        for fact in self.configured:
            info = live.get(fact.device_id)
            if info is None:
                out.append(fact)
            else:
                out.append(DeviceFacts(fact.device_id, fact.kind or info.kind,
                                       info.battery_pct, info.rssi))
        return out

    # -- state across restarts ------------------------------------------------------------------
    def _load_state(self) -> None:
        try:
            doc = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); connected time starts afresh", self.state_path, exc)
            return
        try:
            self._connected_s = {str(k): float(v) for k, v in doc.get("connected_s", {}).items()}
            self._running_s = {str(k): float(v) for k, v in doc.get("running_s", {}).items()}
            since = doc.get("tracking_since")
            self._tracking_since = float(since) if since is not None else None
            self._last_sent = doc.get("last_sent")
            if self._last_sent is not None:
                date.fromisoformat(self._last_sent)
        except (TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring malformed %s (%s)", self.state_path, exc)
            self._connected_s, self._running_s = {}, {}
            self._tracking_since = self._last_sent = None

    def _persist(self) -> None:
        assert self._ctx is not None
        self._last_persist_mono = self._ctx.clock.monotonic()
        keep = {(day_of(self._ctx.clock.wall(), self.tz) - timedelta(days=i)).isoformat()
                for i in range(self.catch_up_days + 2)}
        doc = {
            "connected_s": {k: round(v, 3) for k, v in self._connected_s.items() if k in keep},
            "running_s": {k: round(v, 3) for k, v in self._running_s.items() if k in keep},
            "tracking_since": self._tracking_since,
            "last_sent": self._last_sent,
        }
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.state_path, exc)
