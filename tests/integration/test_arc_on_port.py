"""The ARC component needs nothing but the port: run against the one test fake
(tests/fake_context.py, no agent, no store file) and pysiaalarm as the receiving centre, an
alarm reaches the ARC (early, before its 'commit'), its acknowledgement lands in the port's
delivery rows, and a receiver that stops answering raises the hub condition the LED shows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.arc.component import PATH_DOWN, ArcComponent
from agent.arc.config import ArcConfig
from agent.arc.config import ArcReceiver as ReceiverConfig
from agent.errors import StoreError
from agent.model import Event, Priority
from agent.store.arc_delivery import MemoryArcDeliveryStore
from tests.arc_receiver import ACCOUNT, ArcReceiver, free_port
from tests.fake_context import FakeContext


async def until(pred: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _alarm() -> Event:
    return Event(type="pull_cord", priority=Priority.ALARM, device_id="cord",
                 data={"contact_id": 101}, clock_synced=True)


def test_an_alarm_reaches_the_arc_and_its_ack_is_kept_through_the_port() -> None:
    receiver = ArcReceiver("tcp").start()
    cfg = ArcConfig(account=ACCOUNT, supervision_s=0, timeout_s=2.0,
                    receivers=(ReceiverConfig("127.0.0.1", receiver.port),))

    async def main() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        arc = ArcComponent(cfg, zone_of=lambda d: 3 if d == "cord" else 0)
        await arc.start(ctx)
        try:
            first, second = _alarm(), _alarm()
            ctx.submit_event(first)
            await until(lambda: (row := ctx.arc_delivery().get(first.id)) is not None
                        and row.state == "acked", "the first ACK")
            ctx.submit_event(second)          # connection open now: sent before the commit
            await until(lambda: (row := ctx.arc_delivery().get(second.id)) is not None
                        and row.state == "acked", "the second ACK")
            assert arc.transmitter is not None and arc.transmitter.sent_early == 1
            row = ctx.arc_delivery().get(second.id)
            assert row is not None and row.receiver == f"tcp://127.0.0.1:{receiver.port}"
            assert ctx.arc_delivery().pending() == []
            assert PATH_DOWN not in ctx.state.conditions
        finally:
            await arc.stop()
            ctx.close()

    try:
        asyncio.run(main())
        alarms = receiver.alarms()
        assert [(a.account, a.event_type, a.ri) for a in alarms] == [(ACCOUNT, "101", "003")] * 2
    finally:
        receiver.close()


def test_a_silent_receiver_raises_arc_path_down_and_stop_clears_it() -> None:
    cfg = ArcConfig(account=ACCOUNT, supervision_s=0, timeout_s=0.2, retries=1,
                    retry_max_s=0.5, receivers=(ReceiverConfig("127.0.0.1", free_port()),))

    async def main() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        arc = ArcComponent(cfg)
        await arc.start(ctx)
        try:
            alarm = _alarm()
            ctx.submit_event(alarm)
            await until(lambda: PATH_DOWN in ctx.state.conditions, "arc_path_down condition")
            assert any(e.type == "arc_path_down" and e.priority == Priority.WARNING
                       for e in ctx.events)
            row = ctx.arc_delivery().get(alarm.id)
            assert row is not None and row.state == "pending" and row.attempts >= 1
        finally:
            await arc.stop()
        assert PATH_DOWN not in ctx.state.conditions   # a stopped path shows nothing
        ctx.close()

    asyncio.run(main())


class _FullCard(MemoryArcDeliveryStore):
    """Delivery rows on a card that refuses every write (full or failing)."""

    def _refuse(self, *_: object, **__: object) -> None:
        raise StoreError("disk I/O error")

    add = attempted = acked = refused = set_state = _refuse


def test_alarms_reach_the_arc_when_their_rows_cannot_be_written() -> None:
    """The record of an ARC delivery failing must not stop the alarm or the path (the
    sender used to die on the first failed write)."""
    receiver = ArcReceiver("tcp").start()
    cfg = ArcConfig(account=ACCOUNT, supervision_s=0, timeout_s=2.0,
                    receivers=(ReceiverConfig("127.0.0.1", receiver.port),))

    async def main() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        ctx.arc_rows = _FullCard()
        arc = ArcComponent(cfg)
        await arc.start(ctx)
        try:
            for n in (1, 2):
                ctx.submit_event(_alarm())
                await until(lambda n=n: len(receiver.alarms()) == n, f"alarm {n} at the ARC")
        finally:
            await arc.stop()
            ctx.close()

    try:
        asyncio.run(main())
    finally:
        receiver.close()
