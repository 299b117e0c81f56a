"""The serial unit driver on real pty pairs: ACK/NAK, supervision, unplug/replug, escalation.

The test plays the telecare unit on the pty's master side; the driver opens the slave path
(through a symlink standing in for /dev/serial/by-id/..., so a replug can re-point it).
The agent side is a small fake context that "commits" each published reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
import tty
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.model import Event, Priority
from drivers.serial.config import SerialConfig, SerialUnit
from drivers.serial.contact_id import ACK, DC4, NAK, decode
from drivers.serial.unit import SerialDriver
from tests.contact_id_variants import RECEIVER_VARIANTS
from tests.fake_context import FakeContext

DATA = Path(__file__).resolve().parents[1] / "data" / "serial"
HEARTBEAT = (DATA / "heartbeat.bin").read_bytes()
PENDANT = (DATA / "pendant_101_new.bin").read_bytes()
NOISE = (DATA / "noise_burst.bin").read_bytes()          # 300 bytes, no terminator


class Pty:
    """The unit's end of a pty pair, reached by the driver through ``link`` (a symlink)."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)
        self.link.unlink()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read(self, n: int = 1, timeout: float = 3.0) -> bytes:
        """Exactly ``n`` bytes, or fail after ``timeout``."""
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"expected {n} bytes from the driver, got {out!r}")
            out += os.read(self.master, n - len(out))
        return out

    def read_frame(self, timeout: float = 3.0) -> bytes:
        out = b""
        while not out.endswith(bytes([DC4])):
            out += self.read(1, timeout)
        return out

    def quiet(self, seconds: float) -> bytes:
        """Whatever the driver writes in ``seconds`` (should usually be nothing)."""
        out = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.master], [], [], left)[0]:
                out += os.read(self.master, 256)
        return out

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


async def until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return value


async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "usb-Telecare_Unit-if00-port0")
    yield p
    p.close()


def unit(pty: Pty, **kw: Any) -> SerialUnit:
    base: dict[str, Any] = {"id": "unit-1", "port": str(pty.link), "room": "hall",
                            "role": "telecare_unit", "supervision_s": 0.0}
    return SerialUnit(**{**base, **kw})


@contextlib.asynccontextmanager
async def started(driver: SerialDriver, ctx: FakeContext) -> AsyncIterator[SerialDriver]:
    """The driver, started on ``ctx`` and stopped again however the test body ends."""
    await driver.start(ctx)
    try:
        yield driver
    finally:
        await driver.stop()


def run(body: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def test_frame_is_acked_within_a_second_and_becomes_an_alarm(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            t0 = time.monotonic()
            pty.write(PENDANT)
            assert await blocking(pty.read, 1, 1.0) == bytes([ACK])
            assert time.monotonic() - t0 < 1.0
            await until(lambda: ctx.readings, what="reading")
            r = ctx.readings[0]
            assert (r.type, r.priority, r.device_id) == ("pendant", Priority.ALARM, "unit-1")
            assert dict(r.data) | {} == {
                "contact_id": 101, "qualifier": "new", "zone": 15, "group": "00",
                "account": "1234", "label": "Personal emergency", "receiver": "01",
                "line": "1", "room": "hall", "role": "telecare_unit", "source": "serial"}
            # A whole recorded session: every message ACKed, events in order.
            pty.write((DATA / "session.bin").read_bytes())
            assert await blocking(pty.read, 7, 3.0) == bytes([ACK]) * 7
            await until(lambda: len(ctx.readings) == 5, what="session readings")
            assert ctx.types()[1:] == ["pendant", "pendant_restore", "battery_low", "test"]
            assert ctx.readings[3].priority == Priority.WARNING
            assert driver.devices()[0].details["heartbeats"] == 3

    run(body)


def test_garbage_is_nakked_counted_and_never_stalls(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            pty.write((DATA / "garbage.bin").read_bytes())
            assert await blocking(pty.read, 9, 3.0) == bytes([NAK]) * 9
            noise = bytes(range(256)) * 4 + bytes([DC4])   # contains ACK/NAK/DC4 bytes too
            pty.write(noise)
            await blocking(pty.quiet, 0.3)
            pty.write(PENDANT)
            reply = await blocking(pty.read, 1, 2.0)
            assert reply == bytes([ACK])
            await until(lambda: ctx.types() == ["pendant"], what="good frame after garbage")
            assert driver.devices()[0].details["rejected"] >= 10

    run(body)


def test_noise_burst_then_pause_then_alarm_is_acked_at_once(pty: Pty) -> None:
    # Issue 16 item 8: after an unterminated burst longer than any message, the next alarm
    # got neither ACK nor NAK and the unit had to wait out its ~4 s retry.
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            for burst in (NOISE, NOISE * 20, NOISE[:20]):     # past the limit, far past, short
                pty.write(burst)
                # The pause: the burst is answered once, when the line goes quiet.
                assert await blocking(pty.quiet, 1.6) == bytes([NAK])
                count = len(ctx.events)
                t0 = time.monotonic()
                pty.write(PENDANT)
                assert await blocking(pty.read, 1, 0.9) == bytes([ACK])
                assert time.monotonic() - t0 < 0.5
                await until(lambda: len(ctx.events) == count + 1, what="alarm stored")
                assert ctx.events[-1].type == "pendant"
                assert ctx.events[-1].priority == Priority.ALARM
                assert await blocking(pty.quiet, 0.3) == b""     # one reply, nothing more

    run(body)


def test_slow_store_naks_and_the_resend_is_not_stored_twice(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop(), commit_delay_s=1.2)
        driver = SerialDriver(SerialConfig(units=(unit(pty),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            pty.write(PENDANT)
            assert await blocking(pty.read, 1, 2.0) == bytes([NAK])   # not durable in time
            await until(lambda: ctx.events, what="late commit")
            pty.write(PENDANT)                                       # the unit resends
            assert await blocking(pty.read, 1, 2.0) == bytes([ACK])
            await asyncio.sleep(0.3)
            assert ctx.types() == ["pendant"] and len(ctx.events) == 1

    run(body)


def test_supervision_offline_then_online(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, supervision_s=0.5),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            pty.write(HEARTBEAT)
            assert await blocking(pty.read, 1) == bytes([ACK])
            assert driver.devices()[0].online is True
            await until(lambda: "device_offline" in ctx.types(), what="offline")
            off = ctx.readings[-1]
            assert off.priority == Priority.WARNING and "heartbeat" in off.data["reason"]
            await asyncio.sleep(0.8)
            assert ctx.types().count("device_offline") == 1          # one warning, not a flood
            pty.write(HEARTBEAT)
            await until(lambda: ctx.types()[-1:] == ["device_online"], what="online")
            assert ctx.readings[-1].priority == Priority.INFO

    run(body)


def test_unplug_and_replug_reconnects_and_loses_nothing(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, supervision_s=30.0),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            pty.write(HEARTBEAT)
            assert await blocking(pty.read, 1) == bytes([ACK])
            pty.unplug()
            await until(lambda: "device_offline" in ctx.types(), what="offline on unplug")
            assert "lost" in ctx.readings[-1].data["reason"]
            await asyncio.sleep(1.0)                                   # stays away a while
            assert driver.devices()[0].details["port_open"] is False
            pty.plug()
            await until(lambda: driver.devices()[0].details["port_open"], 10, "reopened")
            pty.write(PENDANT)
            assert await blocking(pty.read, 1, 2.0) == bytes([ACK])
            await until(lambda: ctx.types()[-2:] == ["device_online", "pendant"],
                        what="online + pendant")
            assert ctx.types().count("device_offline") == 1

    run(body)


def test_framing_19200_7e1(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, baudrate=19200, parity="E",
                                                       bytesize=7),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            pty.write(PENDANT)
            assert await blocking(pty.read, 1) == bytes([ACK])

    run(body)


# -- escalation ------------------------------------------------------------------------------

def _alarm(ctx: FakeContext, type_: str = "fall", data: dict[str, Any] | None = None) -> Event:
    ctx.submit_event(Event(type_, Priority.ALARM, "wearable-1", data or {}))
    return ctx.events[-1]


def test_unacknowledged_alarm_is_escalated_and_recorded(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        u = unit(pty, escalate_after_s=0.3, account="4321")
        driver = SerialDriver(SerialConfig(units=(u,)), zone_of=lambda d: 7)
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            alarm = _alarm(ctx)
            t0 = time.monotonic()
            frame = await blocking(pty.read_frame, 3.0)
            assert time.monotonic() - t0 >= 0.25
            decoded = decode(frame[:-1])
            assert frame == b"5011 184321110000007" + bytes([DC4])
            assert decoded.event_code == "100"  # type: ignore[union-attr]
            pty.write(bytes([ACK]))
            rec = await until(lambda: [e for e in ctx.events if e.type == "alarm_escalated"],
                              what="alarm_escalated")
            assert rec[0].data["path"] == "serial" and rec[0].data["event_id"] == alarm.id
            assert rec[0].data["attempts"] == 1 and rec[0].priority == Priority.INFO

    run(body)


def test_broker_ack_in_time_means_nothing_is_sent(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, escalate_after_s=0.3),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            alarm = _alarm(ctx, "pull_cord", {"contact_id": 101})
            ctx.ack(alarm)
            assert await blocking(pty.quiet, 0.8) == b""
            assert [e.type for e in ctx.events] == ["pull_cord"]

    run(body)


def test_unit_silent_retries_then_records_failure(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        u = unit(pty, escalate_after_s=0.1, ack_timeout_s=0.5, retries=3)
        driver = SerialDriver(SerialConfig(units=(u,)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            _alarm(ctx, "smoke")
            frames = [await blocking(pty.read_frame, 2.0) for _ in range(4)]
            assert len(set(frames)) == 1 and b"111" in frames[0]
            failed = await until(
                lambda: [e for e in ctx.events if e.type == "alarm_escalation_failed"],
                what="failure record")
            assert failed[0].priority == Priority.WARNING and failed[0].data["attempts"] == 4
            assert await blocking(pty.quiet, 0.6) == b""             # gave up: no 5th try

    run(body)


def test_nak_from_unit_is_retried(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, escalate_after_s=0.1),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            _alarm(ctx, "pull_cord", {"contact_id": 101})
            first = await blocking(pty.read_frame)
            pty.write(bytes([NAK]))
            second = await blocking(pty.read_frame)
            assert first == second
            pty.write(bytes([ACK]))
            rec = await until(lambda: [e for e in ctx.events if e.type == "alarm_escalated"],
                              what="escalated")
            assert rec[0].data["attempts"] == 2 and rec[0].data["contact_id"] == "101"

    run(body)


def test_cancel_after_escalation_sends_a_406(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, escalate_after_s=0.1),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            alarm = _alarm(ctx, "pull_cord", {"contact_id": 101})
            await blocking(pty.read_frame)
            pty.write(bytes([ACK]))
            await until(lambda: any(e.type == "alarm_escalated" for e in ctx.events))
            ctx.submit_event(Event("alarm_cancelled", Priority.INFO, "hub-btn",
                                   {"cancelled_ids": [alarm.id]}))
            cancel = await blocking(pty.read_frame)
            assert decode(cancel[:-1]).event_code == "406"  # type: ignore[union-attr]
            pty.write(bytes([ACK]))

    run(body)


def test_alarms_from_the_unit_itself_are_not_echoed(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, escalate_after_s=0.1),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            pty.write(PENDANT)
            assert await blocking(pty.read, 1) == bytes([ACK])
            assert await blocking(pty.quiet, 0.6) == b""

    run(body)


# -- what real receivers send (issue 17, "Contact ID from real receivers") ------------------

def test_receiver_variants_are_acked_and_become_the_canonical_event(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            for name, canonical in RECEIVER_VARIANTS:
                pairs = []
                for raw in (canonical + bytes([DC4]), (DATA / name).read_bytes()):
                    count = len(ctx.readings)
                    pty.write(raw)
                    assert await blocking(pty.read, 1, 2.0) == bytes([ACK]), (name, raw)
                    await until(lambda: len(ctx.readings) == count + 1, what=f"{name} reading")
                    r = ctx.readings[-1]
                    pairs.append((r.type, r.priority, dict(r.data)))
                assert pairs[0] == pairs[1], name
            types = ctx.types()[1::2]
            assert types == ["alarm", "duress", "pendant_restore", "smoke", "medical", "duress"]
            clock = ctx.readings[-1].data
            assert clock["unit_time"] == "23:59:07-31/12" and clock["qualifier"] == "new"
            olarm = ctx.readings[1].data
            assert (olarm["account"], olarm["contact_id"], olarm["zone"], olarm["group"],
                    olarm["line"]) == ("0766", 130, 2, "01", "E")
            hexd = ctx.readings[9].data
            assert (hexd["account"], hexd["zone"], hexd["group"]) == ("BC2F", "DEF", "0B")
            assert driver.devices()[0].details["rejected"] == 0

    run(body)


def test_receiver_status_is_acked_and_malformed_variants_are_nakked(pty: Pty) -> None:
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(unit(pty, supervision_s=30.0),)))
        async with started(driver, ctx):
            await until(lambda: driver.devices()[0].details["port_open"], what="port open")
            for name in ("receiver_audio_line4.bin", "receiver_ac_failure_0form.bin",
                         "receiver_ac_restored_sform.bin"):
                pty.write((DATA / name).read_bytes())
                assert await blocking(pty.read, 1, 2.0) == bytes([ACK]), name
            details = driver.devices()[0].details
            assert details["receiver_status"] == 3 and details["rejected"] == 0
            assert driver.devices()[0].online is True
            pty.write((DATA / "garbage_variants.bin").read_bytes())
            assert await blocking(pty.read, 9, 3.0) == bytes([NAK]) * 9
            assert await blocking(pty.quiet, 0.3) == b""
            assert ctx.readings == [] and driver.devices()[0].details["rejected"] == 9

    run(body)
