"""The simulated telecare unit (used by the demo) against the real serial driver."""

from __future__ import annotations

import asyncio
import time

from agent.escalation import EscalationDetector
from agent.model import Event, Priority
from drivers.serial.config import SerialConfig, SerialUnit
from drivers.serial.contact_id import decode
from drivers.serial.sim import SimulatedUnit
from drivers.serial.unit import SerialDriver
from tests.integration.test_serial_unit import FakeContext, until


def test_simulated_unit_heartbeats_sends_and_takes_escalations() -> None:
    async def body() -> None:
        unit = SimulatedUnit("sim-unit", heartbeat_s=0.2)
        cfg = SerialUnit(id="sim-unit", port="sim://sim-unit", escalate_after_s=0.1,
                         supervision_s=5.0)
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(cfg,)), ports={"sim-unit": unit.path})
        escalation = EscalationDetector(driver.config)
        await driver.start(ctx)
        await escalation.start(ctx)
        loop = asyncio.get_running_loop()
        try:
            await until(lambda: driver.devices()[0].details["heartbeats"] >= 2, what="heartbeats")
            assert driver.devices()[0].online is True
            ok = await loop.run_in_executor(None, unit.send, unit.frame("101"))
            assert ok is True
            await until(lambda: "pendant" in ctx.types(), what="pendant")
            ctx.submit_event(Event("fall", Priority.ALARM, "wearable-1", {}))
            await until(lambda: unit.received, what="escalated frame at the unit")
            assert decode(unit.received[0]).event_code == "100"  # type: ignore[union-attr]
            await until(lambda: any(e.type == "alarm_escalated" for e in ctx.events))
        finally:
            await escalation.stop()
            await driver.stop()
            t0 = time.monotonic()
            unit.close()
            assert time.monotonic() - t0 < 3

    asyncio.run(asyncio.wait_for(body(), 30))
