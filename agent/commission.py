"""Installer commissioning: prove, in the home, that every part of the hub works.

Runs the real agent (same config, store, drivers and broker as the service) and walks the
installer through it, printing progress as it goes:

1. broker: the hub connects to the monitoring platform's broker;
2. devices: every configured device with its driver status and when it was last seen;
3. walk test: the installer triggers each sensor; each one ticks as its first reading
   arrives (and a ``walk_test`` info event tells the platform), until all have or time
   runs out;
4. test alarm: a ``test`` event through the whole path, shown once the broker
   acknowledged it (PUBACK);
5. ``installation_complete``: an info event with the device inventory (ids, kinds, rooms,
   battery, signal, walk-test result) so the referrer can be told, sent only when
   everything above passed, and shown acknowledged.

Triggering an alarm sensor during the walk test raises a real alarm (nothing is
suppressed): the installer tells the monitoring centre the hub is on test first.

Every configured device is walk-tested or explicitly skipped with a reason (``--skip
ID=REASON``, recorded in ``installation_complete``); an alarm device (pull cord, button,
smoke, flood, a BLE pendant or wearable, the telecare unit) cannot pass untested unless
``--allow-untested ID`` names it as well. A run cut short (Ctrl-C) prints what was done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import __version__
from agent.app import Agent, Hardware
from agent.config import Config
from agent.model import MEASUREMENT, Event, Priority, Reading, iso_utc
from agent.ports import DeviceInfo
from agent.remote.walk_test import WalkTest
from drivers.gpio.kinds import KINDS as GPIO_KINDS

log = logging.getLogger(__name__)

HUB_DEVICE_ID = "hub"
OUTPUT_KINDS = frozenset({"led", "buzzer"})
# Readings that arrive without anyone touching the sensor: not a walk-test trigger.
NOT_TRIGGERS = frozenset({
    "motion_samples", "telemetry", "device_online", "device_offline", "battery_low",
    "bounce_storm", "cold_home", "walk_test", "motion_clear", MEASUREMENT,
})


@dataclass(frozen=True, slots=True)
class CommissionOptions:
    walk_timeout_s: float = 600.0
    connect_timeout_s: float = 30.0
    ack_timeout_s: float = 30.0
    # Devices that cannot be triggered today: id -> the installer's reason (recorded). A
    # tuple of ids (no reasons) is accepted for older callers; each then fails for want of one.
    skip: Any = ()
    installer: str | None = None
    allow_untested: tuple[str, ...] = ()  # alarm devices allowed to pass skipped
    reminder_every_s: float = 30.0


@dataclass
class DeviceCheck:
    device_id: str
    kind: str
    section: str
    room: str = ""
    role: str = ""
    driver: str = ""
    online: bool | None = None
    error: str | None = None
    last_seen_wall: float | None = None
    battery_pct: float | None = None
    rssi: int | None = None
    triggered_by: str | None = None
    skipped: bool = False
    skip_reason: str = ""
    alarm: bool = False                   # raises alarms: cannot pass untested unless allowed
    reported: bool = False                # some driver lists it in its inventory

    @property
    def is_output(self) -> bool:
        return self.kind in OUTPUT_KINDS

    @property
    def walk_result(self) -> str:
        if self.is_output:
            return "output"
        if self.skipped:
            return "skipped"
        return "passed" if self.triggered_by else "not_triggered"

    def inventory(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id, "kind": self.kind, "driver": self.driver,
            "room": self.room, "role": self.role, "online": self.online,
            "battery_pct": self.battery_pct, "rssi": self.rssi,
            "last_seen": iso_utc(self.last_seen_wall) if self.last_seen_wall else None,
            "walk_test": self.walk_result, "triggered_by": self.triggered_by,
            "alarm_device": self.alarm,
            "skip_reason": self.skip_reason or None,
        }


@dataclass
class CommissionResult:
    devices: list[DeviceCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    test_event_id: str | None = None
    test_ack_ms: float | None = None
    installation_event: Event | None = None
    interrupted: bool = False
    broker_ok: bool | None = None         # None: not checked yet

    @property
    def ok(self) -> bool:
        return not self.failures


def configured_devices(config: Config) -> list[DeviceCheck]:
    """Every device in the config, in config order, with its kind, room and role."""
    out = []
    sections: list[tuple[str, Any]] = [("gpio.devices", config.gpio.devices),
                                       ("ble.devices", config.ble.devices),
                                       ("serial.units", config.serial.units)]
    for name, items in sections:
        for i, dev in enumerate(items):
            kind = "telecare_unit" if name == "serial.units" else str(dev.kind)
            role = getattr(dev, "role", "") or ""
            out.append(DeviceCheck(dev.id, kind, f"{name}[{i}]",
                                   room=getattr(dev, "room", "") or "", role=role,
                                   alarm=is_alarm_device(name, kind, role)))
    return out


def is_alarm_device(section: str, kind: str, role: str) -> bool:
    """Does this device raise alarms (somebody needs help)? Those must be walk-tested.

    Wired: the kinds whose reading is an alarm (pull cord, button, smoke, flood). BLE: a
    wearable, or a BTHome device whose role says it is a pendant (a thermometer cannot be
    told from a button by its config). Serial: the telecare unit (it carries the pendants)."""
    if section == "gpio.devices":
        spec = GPIO_KINDS.get(kind)
        return spec is not None and spec.priority == Priority.ALARM
    if section == "ble.devices":
        return kind == "wearable" or role == "pendant"
    return section == "serial.units"


def parse_skip(values: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--skip ID=REASON`` values -> ({id: reason}, problems)."""
    skips: dict[str, str] = {}
    problems = []
    for value in values:
        dev_id, sep, reason = value.partition("=")
        dev_id, reason = dev_id.strip(), reason.strip()
        if not sep or not reason:
            problems.append(f"--skip {value}: give the reason it cannot be tested today,"
                            f" e.g. --skip '{dev_id or 'ID'}=resident asleep in that room'")
        else:
            skips[dev_id] = reason
    return skips, problems


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _label(dev: DeviceCheck) -> str:
    where = ", ".join(x for x in (dev.kind, dev.room) if x)
    return f"{dev.device_id} ({where})"


class Commissioning:
    """One commissioning run. ``out`` receives each line of progress as it happens."""

    def __init__(
        self,
        config: Config,
        hardware: Hardware | None = None,
        out: Callable[[str], None] = print,
        options: CommissionOptions | None = None,
        config_file: str | None = None,
    ) -> None:
        """``config_file``: the file ``config`` came from; a support push that arrives
        while commissioning runs is written there, as the service would."""
        self.config = config
        self.config_file = config_file
        self.hardware = hardware or Hardware()
        self.out = out
        self.options = options or CommissionOptions()
        self.result = CommissionResult(devices=configured_devices(config))
        self._by_id = {d.device_id: d for d in self.result.devices}
        skip = self.options.skip
        self._skips: dict[str, str] = (dict(skip) if isinstance(skip, dict)
                                       else {dev_id: "" for dev_id in skip})
        self._agent: Agent | None = None
        self._walking = False
        self._all_triggered: asyncio.Event | None = None
        self._untested: list[DeviceCheck] = []

    # -- the run ----------------------------------------------------------------------------
    def _check_options(self) -> list[str]:
        """Usage problems found before anything starts (each says what to do)."""
        problems = []
        if not self.result.devices:
            problems.append("no devices configured: add the home's devices to the config"
                            " (gpio.devices, ble.devices, serial.units) and run again")
        known = f" (the config's devices: {', '.join(self._by_id) or 'none'})"
        unknown = sorted(set(self._skips) - set(self._by_id))
        if unknown:
            problems.append(f"--skip names unknown device(s): {', '.join(unknown)}{known}")
        unknown = sorted(set(self.options.allow_untested) - set(self._by_id))
        if unknown:
            problems.append(f"--allow-untested names unknown device(s): {', '.join(unknown)}"
                            f"{known}")
        for dev_id in sorted(self._skips):
            if not self._skips[dev_id] and dev_id in self._by_id:
                problems.append(f"--skip {dev_id}: give the reason it cannot be tested today,"
                                f" e.g. --skip '{dev_id}=resident asleep in that room'")
        return problems

    async def run(self) -> CommissionResult:
        """The whole run. Cancelled (Ctrl-C), it says what was done, then re-raises."""
        try:
            return await self._run()
        except asyncio.CancelledError:
            self.result.interrupted = True
            self._interrupted()
            raise

    async def _run(self) -> CommissionResult:
        started = time.time()
        problems = self._check_options()
        if problems:
            self.result.failures.extend(problems)
            self._finish()
            return self.result
        for dev in self.result.devices:
            dev.skipped = dev.device_id in self._skips
            dev.skip_reason = self._skips.get(dev.device_id, "")
        agent = Agent(self.config, hardware=self.hardware, config_file=self.config_file)
        self._agent = agent
        self._all_triggered = asyncio.Event()
        m = self.config.mqtt
        self.out(f"Commissioning hub {self.config.hub_id} (tec-agent {__version__})")
        self.out(f"  broker {m.host}:{m.port} (TLS {'on' if m.tls_ca_file else 'off'}),"
                 f" store {self.config.store.path}")
        await agent.start()
        try:
            agent.subscribe_readings(self._on_reading)
            connected = await self._step_broker(agent)
            self._step_devices(agent)
            await self._step_walk(agent)
            if connected:
                await self._step_test_alarm(agent)
            else:
                self.result.failures.append("test alarm not attempted: broker not reachable")
            if self.result.ok:
                await self._step_installation_complete(agent, started)
            else:
                self.out("")
                self.out("installation_complete NOT sent: fix the problems below and run again.")
        finally:
            await agent.stop()
        self._finish()
        return self.result

    # -- 1. broker --------------------------------------------------------------------------
    async def _step_broker(self, agent: Agent) -> bool:
        self.out("")
        self.out("1. Broker")
        t0 = time.monotonic()
        ok = await self._wait(lambda: bool(agent.uplink and agent.uplink.connected),
                              self.options.connect_timeout_s)
        m = self.config.mqtt
        self.result.broker_ok = ok
        if ok:
            self.out(f"  [ok]   connected to {m.host}:{m.port} in {time.monotonic() - t0:.1f} s")
        else:
            msg = (f"broker {m.host}:{m.port} not reachable within"
                   f" {self.options.connect_timeout_s:.0f} s (check network, credentials, TLS)")
            self.out(f"  [FAIL] {msg}")
            self.result.failures.append(msg)
        return ok

    # -- 2. devices -------------------------------------------------------------------------
    def _step_devices(self, agent: Agent) -> None:
        self.out("")
        self.out(f"2. Devices ({len(self.result.devices)} configured)")
        if not self.result.devices:
            self.out("  (none configured)")
            self.result.warnings.append("no devices configured")
        self._refresh_inventory(agent.devices())
        now = time.time()
        for dev in self.result.devices:
            seen = dev.last_seen_wall or self._last_stored(agent, dev.device_id)
            dev.last_seen_wall = seen
            # A skipped device's state is reported, not failed: the reason covers it.
            problems = self.result.warnings if dev.skipped else self.result.failures
            if dev.error:
                status = f"ERROR {dev.error}"
                problems.append(f"{_label(dev)}: driver error: {dev.error}")
            elif dev.online is False:
                status = "offline"
            elif dev.online:
                status = "ready"
            elif dev.reported:
                status = "not heard yet"
            else:
                status = "not reported by any driver"
                problems.append(f"{_label(dev)}: not reported by any driver")
            extra = [] if dev.is_output else \
                [f"last seen {_ago(max(0.0, now - seen))}" if seen else "not seen yet"]
            if dev.battery_pct is not None:
                extra.append(f"battery {dev.battery_pct:.0f}%")
            if dev.rssi is not None:
                extra.append(f"signal {dev.rssi} dBm")
            failed = (dev.error or not dev.reported) and not dev.skipped
            tag = "[FAIL]" if failed else "[ok]  "
            self.out(f"  {tag} {_label(dev)}: "
                     f"{'; '.join([status, ', '.join(extra)] if extra else [status])}")

    def _refresh_inventory(self, infos: list[DeviceInfo]) -> None:
        for info in infos:
            dev = self._by_id.get(info.device_id)
            if dev is None:
                continue
            dev.reported = True
            dev.driver = info.driver
            dev.online = info.online
            dev.error = info.details.get("error") if info.details else None
            dev.last_seen_wall = info.last_seen_wall or dev.last_seen_wall
            dev.battery_pct = info.battery_pct if info.battery_pct is not None else dev.battery_pct
            dev.rssi = info.rssi if info.rssi is not None else dev.rssi

    @staticmethod
    def _last_stored(agent: Agent, device_id: str) -> float | None:
        return agent.store.last_wall_of(device_id)

    # -- 3. walk test -----------------------------------------------------------------------
    def _to_trigger(self) -> list[DeviceCheck]:
        return [d for d in self.result.devices if not d.is_output and not d.skipped]

    def _remaining(self) -> list[DeviceCheck]:
        return [d for d in self._to_trigger() if d.triggered_by is None]

    def _on_reading(self, reading: Reading) -> None:
        if not self._walking or reading.type in NOT_TRIGGERS:
            return
        dev = self._by_id.get(reading.device_id)
        if dev is None or dev.is_output or dev.skipped or dev.triggered_by is not None:
            return
        dev.triggered_by = reading.type
        total = len(self._to_trigger())
        done = total - len(self._remaining())
        self.out(f"  [ok]   {done}/{total} {_label(dev)}: {reading.type}")
        if not self._remaining() and self._all_triggered is not None:
            self._all_triggered.set()

    async def _step_walk(self, agent: Agent) -> None:
        targets = self._to_trigger()
        self.out("")
        self.out(f"3. Walk test: trigger each sensor ({len(targets)})")
        for dev in self.result.devices:
            if not dev.skipped:
                continue
            if dev.alarm and dev.device_id not in self.options.allow_untested:
                msg = (f"{_label(dev)}: an alarm device cannot pass untested; walk-test it,"
                       f" or add --allow-untested {dev.device_id} to pass without it")
                self.out(f"  [FAIL] {msg}")
                self.result.failures.append(msg)
                continue
            self.out(f"  [skip] {_label(dev)}: skipped by the installer: {dev.skip_reason}")
            self.result.warnings.append(f"{_label(dev)}: walk test skipped ({dev.skip_reason})"
                                        + (", alarm device allowed untested" if dev.alarm
                                           else ""))
        if not targets:
            self.out("  nothing to trigger")
            return
        self.out("  An alarm sensor raises a real alarm: tell the monitoring centre the hub"
                 " is on test.")
        self.out(f"  Waiting up to {self.options.walk_timeout_s:.0f} s ...")
        walk = WalkTest(self.options.walk_timeout_s)
        walk.attach(agent)  # type: ignore[arg-type]  # Agent is the context (see app.py)
        walk.start(self.options.walk_timeout_s)
        self._walking = True
        assert self._all_triggered is not None
        deadline = time.monotonic() + self.options.walk_timeout_s
        try:
            while self._remaining():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._all_triggered.wait(),
                                           min(left, self.options.reminder_every_s))
                except TimeoutError:
                    remaining = self._remaining()
                    if remaining and deadline - time.monotonic() > 0:
                        self.out(f"  ... still waiting for {len(remaining)}: "
                                 + ", ".join(d.device_id for d in remaining)
                                 + f" ({deadline - time.monotonic():.0f} s left)")
        finally:
            self._walking = False
            walk.stop([d.device_id for d in self.result.devices])
            walk.detach()
        for dev in self._remaining():
            msg = f"{_label(dev)}: never triggered during the walk test"
            self.out(f"  [FAIL] {msg}")
            self.result.failures.append(msg)
            self._untested.append(dev)
        self._refresh_inventory(agent.devices())

    # -- 4. test alarm ----------------------------------------------------------------------
    async def _step_test_alarm(self, agent: Agent) -> None:
        self.out("")
        self.out("4. Test alarm, end to end")
        reading = Reading(HUB_DEVICE_ID, "test", Priority.INFO,
                          {"source": "commission", "room": "", "role": ""})
        t0 = time.monotonic()
        agent.emit_reading(reading)
        self.result.test_event_id = reading.id
        self.out(f"  raised test event {reading.id}")
        ok = await self._wait(lambda: agent.event_delivered(reading.id) is True,
                              self.options.ack_timeout_s)
        if ok:
            self.result.test_ack_ms = (time.monotonic() - t0) * 1000.0
            self.out(f"  [ok]   stored, sent and acknowledged by the broker in"
                     f" {self.result.test_ack_ms:.0f} ms")
        else:
            state = "stored, waiting for the broker" if agent.event_delivered(reading.id) is False \
                else "not stored"
            msg = f"test alarm not acknowledged within {self.options.ack_timeout_s:.0f} s ({state})"
            self.out(f"  [FAIL] {msg}")
            self.result.failures.append(msg)

    # -- 5. installation complete -----------------------------------------------------------
    async def _step_installation_complete(self, agent: Agent, started: float) -> None:
        self.out("")
        self.out("5. Installation complete")
        self._refresh_inventory(agent.devices())
        sensors = [d for d in self.result.devices if not d.is_output]
        data = {
            "agent_version": __version__,
            "installer": self.options.installer,
            "started": iso_utc(started),
            "finished": iso_utc(time.time()),
            "devices": [d.inventory() for d in sensors],
            "outputs": [{"device_id": d.device_id, "kind": d.kind, "online": d.online}
                        for d in self.result.devices if d.is_output],
            "walk_test": {
                "passed": sum(1 for d in sensors if d.walk_result == "passed"),
                "skipped": [d.device_id for d in sensors if d.skipped],
                "skip_reasons": {d.device_id: d.skip_reason for d in sensors if d.skipped},
                "allowed_untested": [d.device_id for d in sensors if d.skipped and d.alarm],
            },
            "test_alarm": {"event_id": self.result.test_event_id,
                           "ack_ms": round(self.result.test_ack_ms or 0.0, 1)},
        }
        clock = agent.clock
        event = Event(type="installation_complete", priority=Priority.INFO,
                      device_id=HUB_DEVICE_ID, data=data, wall=clock.wall(),
                      mono=clock.monotonic(), clock_synced=clock.synced())
        agent.submit_event(event)
        self.result.installation_event = event
        if await self._wait(lambda: agent.event_delivered(event.id) is True,
                            self.options.ack_timeout_s):
            self.out(f"  [ok]   installation_complete ({len(sensors)} devices) acknowledged by"
                     " the broker: the referrer can be informed")
        else:
            msg = (f"installation_complete not acknowledged within"
                   f" {self.options.ack_timeout_s:.0f} s (it stays stored and is sent later)")
            self.out(f"  [FAIL] {msg}")
            self.result.failures.append(msg)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    async def _wait(pred: Callable[[], bool], timeout_s: float, every_s: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(every_s)
        return True

    def _finish(self) -> None:
        r = self.result
        self.out("")
        for w in r.warnings:
            self.out(f"  note: {w}")
        if r.ok:
            sensors = [d for d in r.devices if not d.is_output]
            passed = sum(1 for d in sensors if d.walk_result == "passed")
            skipped = [d for d in sensors if d.skipped]
            tested = (f"{passed} device(s) walk-tested" if not skipped else
                      f"{passed} of {len(sensors)} device(s) walk-tested, {len(skipped)}"
                      " skipped (" + "; ".join(f"{d.device_id}: {d.skip_reason}"
                                               for d in skipped) + ")")
            self.out(f"Commissioning PASSED: {tested}, test alarm acknowledged,"
                     " installation_complete sent.")
        else:
            self.out(f"Commissioning FAILED ({len(r.failures)} problem(s)):")
            for f in r.failures:
                self.out(f"  - {f}")
            if self._untested:
                self.out("To pass without a device that cannot be tested today, skip it with"
                         " the reason (recorded in installation_complete):")
                for dev in self._untested:
                    allow = f" --allow-untested {dev.device_id}" if dev.alarm else ""
                    self.out(f"  --skip '{dev.device_id}=REASON'{allow}")
                if any(d.alarm for d in self._untested):
                    self.out("  (an alarm device also needs --allow-untested: prefer testing"
                             " it, somebody relies on it to call for help)")

    def _interrupted(self) -> None:
        """Ctrl-C: what was done, what was not, and what happens to the events raised."""
        r = self.result
        sensors = [d for d in r.devices if not d.is_output]
        tested = [d.device_id for d in sensors if d.triggered_by]
        waiting = [d.device_id for d in sensors if not d.triggered_by and not d.skipped]
        self.out("")
        self.out("Commissioning INTERRUPTED: installation_complete NOT sent. Done so far:")
        broker = {None: "not checked", True: "connected", False: "NOT reachable"}[r.broker_ok]
        self.out(f"  broker: {broker}")
        self.out(f"  walk test: {len(tested)} of {len(sensors)} triggered"
                 + (f" ({', '.join(tested)})" if tested else "")
                 + (f"; not triggered: {', '.join(waiting)}" if waiting else ""))
        if r.test_ack_ms is not None:
            test = "acknowledged by the broker"
        elif r.test_event_id:
            test = "raised, not acknowledged yet"
        else:
            test = "not sent"
        self.out(f"  test alarm: {test}")
        self.out("  Events raised so far are stored and sent by the next agent to run"
                 " (the service). Run tec-agent commission again to finish.")
