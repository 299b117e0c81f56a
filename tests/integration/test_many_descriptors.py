"""Past descriptor 1,023: the MQTT connection and a serial line still work.

``select()`` cannot watch a descriptor above 1,023, which capped one process at ~75 agents
while paho's network thread and pyserial's reads used it. Both now run on the asyncio loop
(``add_reader``/``add_writer`` on an epoll loop), so an agent whose socket and a unit whose
pty get high descriptor numbers work as any other.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.model import Priority, Reading
from agent.sim.scenarios import SimSource
from drivers.serial.config import SerialConfig
from drivers.serial.contact_id import ACK
from drivers.serial.unit import SerialDriver
from tests.harness import AgentRunner, make_config, wait_until
from tests.integration.test_serial_unit import (  # noqa: F401 - pty is a fixture
    HEARTBEAT,
    FakeContext,
    Pty,
    blocking,
    pty,
    started,
)
from tests.integration.test_serial_unit import unit as serial_unit

HIGH = 1100


@pytest.fixture
def low_descriptors_taken() -> Iterator[None]:
    """Fill descriptors up to ``HIGH`` so whatever opens next gets a number above 1,023."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < HIGH + 200:
        if hard != resource.RLIM_INFINITY and hard < HIGH + 200:
            pytest.skip(f"descriptor limit {hard} too low for this test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH + 200, hard))
    taken = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            taken.append(fd)
            if fd >= HIGH:
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_agent_delivers_an_alarm_over_a_socket_above_1023(
    tmp_path: Path, mqtt_broker, low_descriptors_taken: None
) -> None:
    # (No subscriber of our own here: a test client with a network thread would select().)
    sim = SimSource()
    with AgentRunner(make_config(tmp_path, mqtt_broker), components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        sim.emit_from_thread([Reading("cord", "pull_cord", Priority.ALARM, {})], 0).join()
        wait_until(lambda: runner.agent.uplink.acked == 1, what="PUBACK for the alarm")
        wait_until(lambda: runner.agent.state.backlog == 0, what="backlog empty")


def test_serial_unit_answered_on_a_descriptor_above_1023(
    pty: Pty, low_descriptors_taken: None
) -> None:
    # The pty pair (the unit's side, read with select()) was made first, below 1,024; the
    # driver opens the slave path again and gets a descriptor above it.
    async def body() -> None:
        ctx = FakeContext(asyncio.get_running_loop())
        driver = SerialDriver(SerialConfig(units=(serial_unit(pty),)))
        async with started(driver, ctx):
            await blocking(lambda: wait_until(
                lambda: driver.devices()[0].details["port_open"], what="port open"))
            pty.write(HEARTBEAT)
            assert await blocking(pty.read, 1) == bytes([ACK])

    asyncio.run(body())
