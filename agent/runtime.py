"""Run the agent until told to stop: signals, exit codes, the simulate harness."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from agent.app import Agent, Hardware, build_components
from agent.config import Config
from agent.model import Event
from agent.ports import Component

log = logging.getLogger(__name__)


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)


async def run_agent(
    config: Config,
    hardware: Hardware | None = None,
    stop: asyncio.Event | None = None,
    on_stored: Callable[[Event], None] | None = None,
    config_file: str | None = None,
) -> int:
    """``tec-agent run``: start, wait for SIGTERM/SIGINT (or ``stop``), shut down cleanly.
    ``config_file``: the file ``config`` came from (remote pushes are written there)."""
    stop = stop or asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop)
    agent = Agent(config, hardware=hardware, on_stored=on_stored, config_file=config_file)
    await agent.start()
    try:
        await stop.wait()
        log.info("stop requested: stopping intake, flushing, going offline")
    finally:
        await agent.stop()
    return 0


BROKER_PROBE_S = 3.0   # simulate: say so when no broker answered within this
BROKER_GRACE_S = 5.0   # simulate: after the scenario, wait this long for a broker never seen


async def run_simulation(
    config: Config,
    scenario: str,
    timeout_s: float,
    options: dict[str, Any],
    emit: Callable[[Event], None],
    watch: Callable[[dict[str, Any]], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Run the real agent with simulated hardware through ``scenario``.

    Returns (exit code, message). 0 means: the scenario ran to its end and every event
    handed to ``emit`` (every line printed) was acknowledged by the broker; the message
    counts exactly those. 1: interrupted, timed out, or events left unacknowledged (the
    message says how many and why); 2: the scenario is unknown or the config lacks the
    devices it needs. ``say`` hears progress worth telling at once (no broker reachable).
    """
    from gpiozero.pins.mock import MockFactory

    from agent.sim.scenarios import (
        SCENARIOS,
        ScenarioEnv,
        SimSource,
        missing_devices,
        start_sim_units,
        with_sim_devices,
    )
    from drivers.ble.replay_backend import AdvertFeed
    from drivers.ble.tools.fake_gatt import FakeGattClient

    if scenario not in SCENARIOS:
        return 2, f"unknown scenario {scenario!r} (choose from {', '.join(SCENARIOS)})"
    config = with_sim_devices(config)
    why = missing_devices(config, scenario)
    if why:
        return 2, f"error: {why}"
    factory = MockFactory()
    units = start_sim_units(config)
    # Simulated hardware throughout: mocked pins, pty serial units, a BLE radio that hears
    # nothing unless fed (a config's BLE devices then simply stay unheard).
    hardware = Hardware(pin_factory=factory, ble_backend=AdvertFeed(),
                        ble_client_factory=FakeGattClient,
                        serial_ports={uid: u.path for uid, u in units.items()})
    sim = SimSource()
    components: list[Component] = [*build_components(config, hardware), sim]
    printed: dict[int, str] = {}          # seq -> event id, of every event handed to emit
    acked: set[int] = set()

    def on_stored(event: Event) -> None:
        if event.seq is not None:
            printed[event.seq] = event.id
        emit(event)

    agent = Agent(config, hardware=hardware, components=components, on_stored=on_stored)
    agent.subscribe_acks(acked.add)
    watcher = _BrokerWatcher(config, watch) if watch else None
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop)
    deadline = time.monotonic() + timeout_s
    m = config.mqtt
    where = f"{m.host}:{m.port}"
    no_broker = (f"no MQTT broker reachable at {where}: events are stored and wait for it."
                 " Start one there, or run with --local-broker for a private one")
    ever_connected = False
    code, message = 1, ""

    async def probe() -> None:
        """Tell at once (not after the timeout) that no broker answers, and what to do."""
        nonlocal ever_connected
        end = time.monotonic() + BROKER_PROBE_S
        while not agent.uplink.connected and time.monotonic() < end:
            await asyncio.sleep(0.02)
        ever_connected = ever_connected or agent.uplink.connected
        if not ever_connected and say is not None:
            say(f"warning: {no_broker}")

    if watcher:
        try:
            await asyncio.get_running_loop().run_in_executor(None, watcher.start)
        except OSError:
            watcher = None    # no broker: the probe below says so
    try:
        await agent.start()
    except BaseException:
        _close_sim(watcher, units)
        raise
    prober: asyncio.Task[None] | None = None
    try:
        prober = asyncio.create_task(probe())
        env = ScenarioEnv(factory, sim, agent.config, options, units)
        script = asyncio.create_task(SCENARIOS[scenario](env))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({script, stopper},
                                     timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if script not in done:
            script.cancel()
            message = ("scenario interrupted" if stop.is_set()
                       else f"timeout after {timeout_s:.0f} s: the scenario did not "
                            "finish (give a longer --timeout); what was stored stays in "
                            "the store for the next run")
        else:
            script.result()
            code = 0
            # Drain (see _settle).
            await prober
            ever_connected = await _settle(agent, stop, deadline, ever_connected)
            if watcher:
                watcher.wait_for(len(printed), max(0.5, min(5.0, deadline - time.monotonic())))
    finally:
        if prober is not None:
            prober.cancel()
        await agent.stop()
        _close_sim(watcher, units)
    # Counted after the agent stopped: anything its shutdown stored was printed too.
    why_not = no_broker if not ever_connected else (
        f"not acknowledged by the broker at {where} within the timeout")
    return _outcome(code, message, scenario, printed, acked, why_not,
                    None if ever_connected else no_broker)


def _close_sim(watcher: _BrokerWatcher | None, units: Mapping[str, Any]) -> None:
    if watcher:
        watcher.stop()
    for unit in units.values():
        unit.close()


async def _settle(agent: Agent, stop: asyncio.Event, deadline: float,
                  ever_connected: bool) -> bool:
    """Drain after the scenario: readings handed over reach the loop, what the intake
    holds is committed (the last telemetry would otherwise wait for its group commit and
    be stored only at shutdown, printed but never sent), and the broker acknowledges it
    all. Returns whether a broker was ever connected."""
    give_up = deadline
    if not ever_connected:
        give_up = min(deadline, time.monotonic() + BROKER_GRACE_S)
    quiet = 0
    while quiet < 3 and time.monotonic() < give_up and not stop.is_set():
        await asyncio.sleep(0.02)
        ever_connected = ever_connected or agent.uplink.connected
        if not ever_connected and time.monotonic() >= give_up - 0.05:
            break
        busy = agent.commit_pending() or agent.state.backlog > 0
        quiet = 0 if busy else quiet + 1
    return ever_connected


def _outcome(code: int, message: str, scenario: str, printed: Mapping[int, str],
             acked: set[int], why_not: str, no_broker: str | None) -> tuple[int, str]:
    """The exit code and message of a simulation run: ``why_not`` says why events were
    not acknowledged, ``no_broker`` (None once a broker was seen) what to do about it."""
    unacked = [seq for seq in printed if seq not in acked]
    if code == 0 and unacked:
        return 1, (f"{len(unacked)} of {len(printed)} printed events still pending, not"
                   f" acknowledged: {why_not}. They stay in the store and are sent by the"
                   " next run")
    if code == 0:
        earlier = len(acked) - len(printed)
        return 0, (f"scenario {scenario} done: {len(printed)} events stored and acknowledged"
                   + (f" (and {earlier} left by an earlier run)" if earlier > 0 else ""))
    if unacked:
        message += f"; {len(unacked)} events pending, not yet acknowledged by the broker"
        if no_broker is not None:
            message += f" ({no_broker})"
    return code, message


class _BrokerWatcher:
    """Subscribes to the hub's event topic and reports each event as the broker delivers it.
    Built from the agent's own ``[mqtt]`` settings (TLS client certificate included) by the
    one client builder."""

    def __init__(self, config: Config, callback: Callable[[dict[str, Any]], None]) -> None:
        from agent.uplink.settings import settings_from_config
        from agent.uplink.topics import event_topic

        self.received = 0
        self._callback = callback
        self._topic = event_topic(config.hub_id, config.mqtt.topic_prefix)
        self._settings = settings_from_config(
            config.mqtt, f"tec-watch-{config.hub_id}-{time.monotonic_ns()}", persistent=False)
        self._client: Any = None
        self._subscribed = threading.Event()

    def _on_message(self, msg: Any) -> None:
        import json

        self.received += 1
        try:
            self._callback(json.loads(msg.payload))
        except ValueError:
            self._callback({"raw": msg.payload.decode(errors="replace")})

    # TransportListener (the subscription is renewed by the transport on reconnect)
    def on_connected(self, session_present: bool) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_puback(self, mid: int, failed: bool) -> None:
        pass

    def start(self) -> None:
        from agent.uplink.transport import BlockingClient

        self._client = BlockingClient(self._settings)
        self._client.set_listener(self)
        self._client.subscribe(self._topic, self._on_message,
                               lambda ok: self._subscribed.set())
        try:
            self._client.connect(5.0)
        except BaseException:
            self.stop()
            raise
        if not self._subscribed.wait(5.0):
            log.warning("watcher could not subscribe to the event topic within 5 s")

    def wait_for(self, n: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.received < n and time.monotonic() < end:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()


def with_broker(config: Config, host: str, port: int, username: str, password_file: str) -> Config:
    mqtt = replace(config.mqtt, host=host, port=port, username=username,
                   password_file=password_file, tls_ca_file=None, tls_cert_file=None,
                   tls_key_file=None)
    return replace(config, mqtt=mqtt)


def print_json_line(doc: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()
