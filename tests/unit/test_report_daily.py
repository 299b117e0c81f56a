"""The daily ``summary`` component: connected time measured on an injected clock, the
summary sent once per day after ``daily_at``, state kept across restarts, missed days
caught up. No real waits: the test moves a ManualClock and calls ``check_now``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.clock import ManualClock
from agent.config import parse_config_text
from agent.model import Priority
from agent.ports import DeviceInfo
from agent.report.config import ReportConfig
from agent.report.daily import DailySummary
from agent.report.summary import DeviceFacts
from tests.fake_context import FakeContext
from tests.unit.report_helpers import DAYS, HUB, at, write_week


def inventory() -> list[DeviceInfo]:
    return [DeviceInfo("pendant-1", "bthome", "ble", online=True, battery_pct=55.0, rssi=-71)]


def make(store: Path, **kw) -> DailySummary:
    return DailySummary(
        ReportConfig(daily_at="00:05"), store_path=store, timezone="Europe/London",
        configured=[DeviceFacts("cord-bath", "pull_cord"), DeviceFacts("pendant-1", "")],
        inventory=inventory, check_every_s=3600.0, **kw,
    )


async def started(comp: DailySummary, ctx: FakeContext) -> DailySummary:
    await comp.start(ctx)  # type: ignore[arg-type]
    await asyncio.sleep(0)   # let the periodic task make its first (empty) check
    return comp


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_week(tmp_path / "events.db").store_path


def test_one_summary_per_day_with_measured_offline_minutes(store: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(mono=100.0, wall=at(6, 10))          # DST day, 10:00 BST
        ctx = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp = await started(make(store), ctx)
        assert ctx.events == []          # installed today: nothing to report for yesterday
        ctx.set_online(True)
        clock.advance(10 * 3600)         # connected 10:00 -> 20:00
        ctx.set_online(False)
        clock.advance(4 * 3600)          # midnight
        assert await comp.check_now() == []          # not yet 00:05
        clock.advance(6 * 60)
        (event,) = await comp.check_now()
        assert await comp.check_now() == []          # once per day
        await comp.stop()

        assert (event.type, event.priority, event.device_id) == ("summary", Priority.INFO, "hub")
        d = event.data
        assert d["date"] == DAYS[6].isoformat() and d["partial"] is False
        # Measured from 10:00 (first start): 14 h covered, 10 h connected.
        assert d["offline_minutes"] == pytest.approx(240.0)
        assert d["agent_running_minutes"] == pytest.approx(14 * 60.0)
        assert d["alarms_total"] == 4 and d["alarms_by_type"] == {"pull_cord": 2, "pendant": 2}
        assert d["undelivered_alarms"] == 1
        assert d["alarm_latency_ms"]["median"] == pytest.approx(150.0, abs=0.01)
        assert (d["backlog"]["alarm"], d["backlog"]["total"]) == (1, 8)
        pendant = next(x for x in d["devices"] if x["device_id"] == "pendant-1")
        # The live inventory (55 %) is newer than the day's battery_low event (18 %).
        assert (pendant["kind"], pendant["battery_pct"], pendant["rssi"]) == ("bthome", 55.0, -71)
        assert pendant["battery_low"] is True

    asyncio.run(scenario())


def test_restart_keeps_connected_time_and_never_sends_a_day_twice(store: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(mono=100.0, wall=at(5, 12))
        ctx = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp = await started(make(store), ctx)
        ctx.set_online(True)
        clock.advance(2 * 3600)             # connected 12:00 -> 14:00
        await comp.stop()                   # restart: the agent is down 14:00 -> 15:00
        clock.advance(3600)
        ctx2 = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp2 = await started(make(store), ctx2)
        ctx2.set_online(True)
        clock.advance(9 * 3600 + 6 * 60)    # connected 15:00 -> 00:06
        (event,) = await comp2.check_now()
        # Covered 12:00 -> 24:00 = 720 min; connected 2 h + 9 h = 660 min.
        assert event.data["date"] == DAYS[5].isoformat()
        assert event.data["offline_minutes"] == pytest.approx(60.0)
        await comp2.stop()

        ctx3 = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp3 = await started(make(store), ctx3)
        assert await comp3.check_now() == []
        await comp3.stop()

    asyncio.run(scenario())


def test_days_missed_while_off_are_caught_up_in_order(store: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(mono=100.0, wall=at(4, 9))
        ctx = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp = await started(make(store), ctx)
        await comp.stop()
        clock.advance(3 * 86400 - 3600)     # off until day 7 08:00 (DST: clock reads 09:00)
        ctx2 = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp2 = await started(make(store), ctx2)
        sent = await comp2.check_now()
        assert [e.data["date"] for e in sent] == [d.isoformat() for d in DAYS[4:7]]
        # Off all of days 5 and 6 (23 h, DST), and day 4 from 09:00.
        assert [e.data["offline_minutes"] for e in sent] == pytest.approx([900.0, 1440.0, 1380.0])
        assert [e.data["alarms_total"] for e in sent] == [1, 2, 4]
        await comp2.stop()

    asyncio.run(scenario())


def test_nothing_is_sent_while_the_clock_is_unsynchronised(store: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(mono=100.0, wall=at(5, 12), synced=False)
        ctx = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp = await started(make(store), ctx)
        clock.advance(13 * 3600)
        assert await comp.check_now() == []
        clock.set_synced(True)
        (event,) = await comp.check_now()
        assert event.data["date"] == DAYS[5].isoformat()
        await comp.stop()

    asyncio.run(scenario())


def test_a_corrupt_state_file_is_ignored_with_a_warning(store: Path, caplog) -> None:
    state = store.with_name("summary-state.json")
    state.write_text("{not json")

    async def scenario() -> None:
        clock = ManualClock(mono=100.0, wall=at(5, 12))
        ctx = FakeContext(asyncio.get_running_loop(), clock, hub_id=HUB)
        comp = await started(make(store), ctx)
        await comp.stop()

    asyncio.run(scenario())
    assert "cannot read" in caplog.text
    assert '"last_sent": "2025-03-28"' in state.read_text()


def test_the_agent_builds_the_component_unless_disabled(tmp_path: Path) -> None:
    from agent.app import Hardware, build_components

    on = parse_config_text(f'hub_id = "h"\n[store]\npath = "{tmp_path / "e.db"}"\n')
    off = parse_config_text('hub_id = "h"\n[report]\ndaily_summary = false\n')
    assert any(isinstance(c, DailySummary) for c in build_components(on, Hardware()))
    assert not any(isinstance(c, DailySummary) for c in build_components(off, Hardware()))
    with pytest.raises(ValueError, match="report.daily_at"):
        parse_config_text('hub_id = "h"\n[report]\ndaily_at = "7:5"\n')
