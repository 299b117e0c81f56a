"""Scenarios: scripted days in a simulated home, driven through the real agent.

A scenario acts on the simulated hardware only (MockFactory pins, the simulated reading
source), never on agent internals, so what it exercises is what runs in a home.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from agent.config import Config
from agent.model import Priority, Reading
from agent.ports import AgentContext, DeviceInfo
from drivers.gpio.config import GpioDevice
from drivers.serial.config import SerialUnit

log = logging.getLogger(__name__)

# The simulated home's wired sensors, used when the config defines no GPIO devices.
SIM_DEVICES = (
    GpioDevice(id="pir-hall", kind="pir", pin=4, room="hall"),
    GpioDevice(id="pir-lounge", kind="pir", pin=5, room="lounge"),
    GpioDevice(id="door-front", kind="door", pin=17, room="hall", role="main_entrance_door"),
    GpioDevice(id="cord-bathroom", kind="pull_cord", pin=27, room="bathroom"),
    GpioDevice(id="bed-mat", kind="bed_mat", pin=22, room="bedroom", settle_s=0.5),
)
# The simulated telecare unit (drivers/serial/sim.py), used when the config defines no
# serial units: a pty stands in for its port, passed through Hardware.serial_ports.
SIM_UNIT = SerialUnit(id="telecare-unit", port="sim://telecare-unit", room="hall",
                      role="telecare_unit")


class SimSource:
    """A simulated sensor that emits readings from its own thread, like a driver does."""

    name = "sim-source"

    def __init__(self) -> None:
        self._ctx: AgentContext | None = None
        self._stopped = threading.Event()

    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._stopped = threading.Event()

    async def stop(self) -> None:
        self._ctx = None
        self._stopped.set()

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo("sim-sensor", "simulated", "sim", online=True)]

    def emit_from_thread(self, readings: list[Reading], rate: float) -> threading.Thread:
        ctx = self._ctx
        assert ctx is not None, "SimSource not started"
        stopped = self._stopped

        def run() -> None:
            import time

            last: float | None = None
            for r in readings:
                if rate > 0 and last is not None:
                    # Paced from the previous reading, never caught up in a burst after a
                    # stall: a sensor at `rate` per second never gives two readings in the
                    # same instant, and the soak's distinct stamps rely on that.
                    delay = last + 1.0 / rate - time.monotonic()
                    if delay > 0:
                        stopped.wait(delay)
                if stopped.is_set():
                    return  # the source was stopped (scenario over or cut short): no more
                # Stamped as it is emitted, like a driver's reading (the list was built
                # up front: its own stamps are all the same moment).
                last = time.monotonic()
                ctx.emit_reading(replace(r, mono=last, wall=time.time()))

        t = threading.Thread(target=run, name="sim-source", daemon=True)
        t.start()
        return t


@dataclass
class ScenarioEnv:
    """What a scenario may touch."""

    pin_factory: Any
    sim: SimSource
    config: Config
    options: dict[str, Any]
    units: dict[str, Any] = field(default_factory=dict)   # unit id -> SimulatedUnit

    def pin(self, device_id: str):
        for dev in self.config.gpio.devices:
            if dev.id == device_id:
                return self.pin_factory.pin(dev.pin)
        raise KeyError(device_id)

    def of_kind(self, kind: str, preferred: str = "") -> list[str]:
        """Ids of the wired devices of ``kind``, ``preferred`` first when it is one of them:
        a scenario acts on whatever devices the config has, not on the simulated home's ids."""
        ids = [d.id for d in self.config.gpio.devices if d.kind == kind]
        return sorted(ids, key=lambda i: i != preferred)

    async def press(self, device_id: str, hold_s: float = 0.15) -> None:
        """A contact closes then opens (pull cord, button: active low with pull-up)."""
        pin = self.pin(device_id)
        pin.drive_low()
        await asyncio.sleep(hold_s)
        pin.drive_high()

    async def motion(self, device_id: str, hold_s: float = 0.4) -> None:
        pin = self.pin(device_id)
        pin.drive_high()
        await asyncio.sleep(hold_s)
        pin.drive_low()

    def close_doors(self) -> None:
        """Doors start closed (the reed contact pulls the input low)."""
        for dev in self.config.gpio.devices:
            if dev.kind == "door":
                self.pin_factory.pin(dev.pin).drive_low()

    def has(self, device_id: str) -> bool:
        return any(d.id == device_id for d in self.config.gpio.devices) or device_id in self.units

    def mat(self, device_id: str, occupied: bool) -> None:
        """A pressure mat's contact closes under weight (pull-up: low = occupied)."""
        pin = self.pin(device_id)
        pin.drive_low() if occupied else pin.drive_high()

    async def unit_sends(self, unit_id: str, event_code: str, qualifier: str = "1") -> bool:
        """The simulated telecare unit sends a Contact ID event and waits for the hub's ACK."""
        unit = self.units[unit_id]
        return bool(await asyncio.get_running_loop().run_in_executor(
            None, unit.send, unit.frame(event_code, qualifier)))

    async def door(self, device_id: str, open_s: float = 0.4) -> None:
        pin = self.pin(device_id)
        pin.drive_high()   # reed contact with pull-up: magnet away -> high -> open
        await asyncio.sleep(open_s)
        pin.drive_low()


async def _demo(env: ScenarioEnv) -> None:
    """A morning at home: out of bed, through the hall, out for the paper, the telecare unit's
    daily test call, then a pull-cord alarm in the bathroom."""
    env.close_doors()
    for mat in env.of_kind("bed_mat", "bed-mat")[:1]:
        env.mat(mat, True)                     # still in bed
        await asyncio.sleep(0.8)               # mat settles: bed_occupied
        env.mat(mat, False)                    # gets up
        await asyncio.sleep(0.8)               # bed_vacated
    await asyncio.sleep(0.3)
    pirs = env.of_kind("pir", "pir-hall")
    hall = pirs[0] if pirs else None
    if hall:
        await env.motion(hall)
        await asyncio.sleep(0.3)
    for other in pirs[1:2]:
        await env.motion(other)
    for door in env.of_kind("door", "door-front")[:1]:
        await env.door(door)
        await asyncio.sleep(0.3)
    if hall:
        await env.motion(hall)
        await asyncio.sleep(0.3)
    for unit_id in list(env.units)[:1]:
        await env.unit_sends(unit_id, "602")   # the unit's periodic test report
    await env.press(env.of_kind("pull_cord", "cord-bathroom")[0])
    await asyncio.sleep(0.5)


async def _pull_cord(env: ScenarioEnv) -> None:
    await asyncio.sleep(0.3)
    await env.press(env.of_kind("pull_cord", "cord-bathroom")[0])
    await asyncio.sleep(0.3)


async def _soak(env: ScenarioEnv) -> None:
    """A stream of ``count`` events (default 1000) at ``rate`` per second (default 200): one
    alarm and one warning in ten, the rest telemetry. ``--count 0`` sends nothing: the run
    only delivers what an earlier run left in the store (a drain)."""
    count = env.options.get("count")
    count = 1000 if count is None else int(count)
    rate = float(env.options.get("rate") or 200.0)
    readings = []
    for n in range(count):
        if n % 10 == 0:
            readings.append(Reading("sim-sensor", "pull_cord", Priority.ALARM,
                                    {"n": n, "contact_id": 101, "source": "sim"}))
        elif n % 10 == 5:
            readings.append(Reading("sim-sensor", "battery_low", Priority.WARNING,
                                    {"n": n, "source": "sim"}))
        else:
            readings.append(Reading("sim-sensor", "telemetry", Priority.TELEMETRY,
                                    {"n": n, "source": "sim"}))
    thread = env.sim.emit_from_thread(readings, rate)
    while thread.is_alive():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)


SCENARIOS: dict[str, Callable[[ScenarioEnv], Coroutine[Any, Any, None]]] = {
    "demo": _demo,
    "pull-cord": _pull_cord,
    "soak": _soak,
}
# The wired device kinds each scenario cannot do without (it uses others when configured:
# the demo also walks past PIRs, a door, a bed mat and the telecare unit if there are any).
NEEDS: dict[str, tuple[str, ...]] = {
    "demo": ("pull_cord",),
    "pull-cord": ("pull_cord",),
    "soak": (),
}


def missing_devices(config: Config, scenario: str) -> str | None:
    """Why ``config`` cannot run ``scenario`` (None: it can), saying what to add."""
    have = {d.kind for d in config.gpio.devices}
    missing = [k for k in NEEDS.get(scenario, ()) if k not in have]
    if not missing:
        return None
    listed = ", ".join(f"{d.id} ({d.kind})" for d in config.gpio.devices) or "none"
    need = ", ".join(f'kind = "{k}"' for k in missing)
    return (f"scenario {scenario} needs a wired device of {need} in [[gpio.devices]]; this"
            f" config has: {listed}. Add one (any free pin: simulate mocks the pins), or run"
            " without --config to use the simulated home")


def with_sim_devices(config: Config) -> Config:
    """The config, with the simulated home's sensors when it defines no GPIO devices."""
    gpio = config.gpio
    if not gpio.devices:
        gpio = replace(gpio, devices=SIM_DEVICES)
    serial = config.serial
    if not serial.units:
        serial = replace(serial, units=(SIM_UNIT,))
    return replace(config, gpio=replace(gpio, pin_factory="mock"), serial=serial)


def start_sim_units(config: Config) -> dict[str, Any]:
    """A simulated telecare unit (on a pty) for every ``sim://`` serial port in the config."""
    from drivers.serial.sim import SimulatedUnit

    return {u.id: SimulatedUnit(u.id) for u in config.serial.units
            if u.port.startswith("sim://")}
