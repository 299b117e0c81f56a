"""The escalation rule (agent/escalation.py), a detector apart from the serial driver: when
it raises an alarm on a unit's alarm output, what it records, what it counts.

The output here is a small recording one behind the same port (``ctx.register_alarm_output``)
the serial driver uses; the bytes on a real line are tested in
tests/integration/test_serial_unit.py (pty pairs) and test_serial_e2e.py (the whole agent)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agent.escalation import EscalationDetector
from agent.model import Event, Priority
from agent.ports import AlarmOutcome, AlarmRequest, merge_devices
from drivers.serial.config import SerialConfig, SerialUnit
from tests.fake_context import FakeContext

UNIT = "unit-1"


@dataclass(eq=False)
class Raised:
    request: AlarmRequest
    done: Callable[[AlarmOutcome], None]
    on_wire: bool = False
    withdrawn: bool = False

    def withdraw(self) -> bool:
        if not self.on_wire:
            self.withdrawn = True
        return self.withdrawn

    def finish(self, ok: bool = True, attempts: int = 1, code: str = "100",
               error: str = "") -> None:
        self.done(AlarmOutcome(self.request, sent=not self.withdrawn, ok=ok,
                               attempts=0 if self.withdrawn else attempts, code=code,
                               error=error))


class RecordingOutput:
    def __init__(self) -> None:
        self.raised: list[Raised] = []

    def raise_alarm(self, request: AlarmRequest,
                    done: Callable[[AlarmOutcome], None]) -> Raised:
        self.raised.append(Raised(request, done))
        return self.raised[-1]


async def until(pred: Callable[[], Any], what: str, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return value


@pytest.fixture
def run() -> Iterator[Callable[..., None]]:
    def go(body: Callable[[FakeContext, EscalationDetector, RecordingOutput], Any],
           after_s: float = 0.05, pending: list[Event] | None = None,
           register: bool = True) -> None:
        async def main() -> None:
            ctx = FakeContext(asyncio.get_running_loop())
            ctx.pending = list(pending or [])
            output = RecordingOutput()
            if register:
                ctx.register_alarm_output(UNIT, output)
            unit = SerialUnit(id=UNIT, port="/dev/null", room="hall", role="telecare_unit",
                              escalate_after_s=after_s)
            detector = EscalationDetector(SerialConfig(units=(unit,)),
                                          zone_of=lambda dev: {"wearable-1": 4}.get(dev, 0))
            await detector.start(ctx)
            try:
                await body(ctx, detector, output)
            finally:
                await detector.stop()
                ctx.close()
        asyncio.run(asyncio.wait_for(main(), 20))
    yield go


def _alarm(ctx: FakeContext, type_: str = "fall", data: dict[str, Any] | None = None,
           device: str = "wearable-1") -> Event:
    ctx.submit_event(Event(type_, Priority.ALARM, device, data or {}))
    return ctx.events[-1]


def _details(detector: EscalationDetector) -> dict[str, Any]:
    return merge_devices(detector.devices())[0].details


def test_an_alarm_not_acknowledged_in_time_is_raised_and_recorded(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        t0 = time.monotonic()
        alarm = _alarm(ctx, "pull_cord", {"contact_id": 101})
        raised = await until(lambda: output.raised, "the alarm on the output")
        assert time.monotonic() - t0 >= 0.04
        assert raised[0].request == AlarmRequest(alarm.id, "pull_cord", 4, 101)
        raised[0].on_wire = True
        raised[0].finish(attempts=2, code="101")
        rec = ctx.events[-1]
        assert (rec.type, rec.priority, rec.device_id) == ("alarm_escalated", Priority.INFO, UNIT)
        # The record's JSON as the driver wrote it before the rule moved here: same keys,
        # same order, same values.
        assert list(rec.data.items()) == [
            ("path", "serial"), ("event_id", alarm.id), ("event_type", "pull_cord"),
            ("contact_id", "101"), ("attempts", 2), ("unit", UNIT), ("source", "serial"),
            ("room", "hall"), ("role", "telecare_unit")]
        assert _details(detector) == {"escalated": 1, "failed": 0, "skipped_delivered": 0}
    run(body)


def test_broker_ack_in_time_stops_the_timer(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        first = _alarm(ctx)
        ctx.ack(first)
        second = _alarm(ctx)
        raised = await until(lambda: output.raised, "the second alarm on the output")
        assert [r.request.event_id for r in raised] == [second.id]
        await asyncio.sleep(0.1)            # past first's due time: must stay unraised
        assert len(output.raised) == 1
    run(body)


def test_withdrawn_before_it_went_out_is_not_recorded(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        alarm = _alarm(ctx)
        raised = await until(lambda: output.raised, "the alarm on the output")
        ctx.submit_event(Event("alarm_cancelled", Priority.INFO, "hub-btn",
                               {"cancelled_ids": [alarm.id]}))
        assert raised[0].withdrawn and len(output.raised) == 1    # no cancel frame needed
        raised[0].finish()
        assert [e.type for e in ctx.events] == ["fall", "alarm_cancelled"]
        assert _details(detector)["escalated"] == 0
    run(body)


def test_delivered_by_the_time_it_is_due_is_counted_not_raised(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        alarm = _alarm(ctx)
        ctx.delivered[alarm.id] = True      # acknowledged, the ack callback not heard
        await until(lambda: _details(detector)["skipped_delivered"] == 1, "the skip counted")
        assert output.raised == []
    run(body)


def test_alarms_left_pending_are_armed_at_start(run) -> None:
    old = Event("smoke", Priority.ALARM, "smoke-1", {"zone": 9}, seq=7)

    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        raised = await until(lambda: output.raised, "the pending alarm on the output")
        assert raised[0].request == AlarmRequest(old.id, "smoke", 9, None)
    run(body, pending=[old])


def test_an_alarm_the_store_refused_is_raised_once(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        alarm = Event("fall", Priority.ALARM, "wearable-1", {})
        ctx.refuse(alarm)
        ctx.submit_event(alarm)             # stored on a retry: the same alarm, now with a seq
        raised = await until(lambda: output.raised, "the refused alarm on the output")
        raised[0].finish()
        await asyncio.sleep(0.1)
        assert [r.request.event_id for r in output.raised] == [alarm.id]
    run(body)


def test_cancel_before_due_drops_it_after_sending_raises_a_cancel(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        early = _alarm(ctx)
        ctx.submit_event(Event("alarm_cancelled", Priority.INFO, "hub-btn",
                               {"cancelled_ids": [early.id]}))
        late = _alarm(ctx)
        raised = await until(lambda: output.raised, "the late alarm on the output")
        assert [r.request.event_id for r in raised] == [late.id]
        raised[0].on_wire = True
        raised[0].finish()
        ctx.submit_event(Event("alarm_cancelled", Priority.INFO, "hub-btn",
                               {"cancelled_ids": [late.id]}))
        cancel = output.raised[-1].request
        assert cancel.cancel and cancel.event_type == "alarm_cancelled"
        assert cancel.event_id == ctx.events[-1].id
    run(body, after_s=0.1)


def test_alarms_from_the_unit_itself_and_non_alarms_are_not_raised(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        _alarm(ctx, "pendant", device=UNIT)
        ctx.submit_event(Event("door_open", Priority.WARNING, "door", {}))
        await asyncio.sleep(0.15)
        assert output.raised == []
    run(body)


def test_failure_and_a_missing_output_are_recorded_as_failed(run) -> None:
    async def body(ctx: FakeContext, detector: EscalationDetector,
                   output: RecordingOutput) -> None:
        alarm = _alarm(ctx)
        failed = await until(lambda: [e for e in ctx.events
                                      if e.type == "alarm_escalation_failed"], "failure")
        assert failed[0].priority == Priority.WARNING
        assert failed[0].data["event_id"] == alarm.id
        assert failed[0].data["error"] == "no line to the unit"
        assert _details(detector)["failed"] == 1
    run(body, register=False)
