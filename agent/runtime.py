"""Run the agent until told to stop: signals, exit codes, the simulate harness."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agent.app import Agent, Hardware, build_components
from agent.config import Config
from agent.model import Event
from agent.ports import Component

log = logging.getLogger(__name__)


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass


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


async def run_simulation(
    config: Config,
    scenario: str,
    timeout_s: float,
    options: dict[str, Any],
    emit: Callable[[Event], None],
    watch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[int, str]:
    """Run the real agent with simulated hardware through ``scenario``.

    Returns (exit code, message): 0 once the scenario is over and every event is
    acknowledged by the broker; 1 on timeout (the message says how many are pending).
    """
    from gpiozero.pins.mock import MockFactory

    from agent.sim.scenarios import (
        SCENARIOS,
        ScenarioEnv,
        SimSource,
        start_sim_units,
        with_sim_devices,
    )

    if scenario not in SCENARIOS:
        return 2, f"unknown scenario {scenario!r} (choose from {', '.join(SCENARIOS)})"
    config = with_sim_devices(config)
    factory = MockFactory()
    units = start_sim_units(config)
    hardware = Hardware(pin_factory=factory,
                        serial_ports={uid: u.path for uid, u in units.items()})
    sim = SimSource()
    components: list[Component] = [*build_components(config, hardware), sim]
    agent = Agent(config, hardware=hardware, components=components, on_stored=emit)
    watcher = _BrokerWatcher(config, watch) if watch else None
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop)
    deadline = time.monotonic() + timeout_s
    if watcher:
        await asyncio.get_running_loop().run_in_executor(None, watcher.start)
    await agent.start()
    try:
        env = ScenarioEnv(factory, sim, agent.config, options, units)
        script = asyncio.create_task(SCENARIOS[scenario](env))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({script, stopper},
                                     timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if script not in done:
            script.cancel()
            return 1, ("scenario interrupted" if stop.is_set()
                       else f"timeout after {timeout_s:.0f} s")
        script.result()
        while agent.state.backlog > 0 and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.02)
        pending = agent.state.backlog
        if pending:
            return 1, f"timeout: {pending} events not yet acknowledged by the broker"
        if watcher:
            watcher.wait_for(agent.stats["stored"], max(0.5, min(5.0, deadline - time.monotonic())))
        return 0, (f"scenario {scenario} done: {agent.stats['stored']} events stored"
                   " and acknowledged")
    finally:
        await agent.stop()
        if watcher:
            watcher.stop()
        for unit in units.values():
            unit.close()


class _BrokerWatcher:
    """Subscribes to the hub's event topic and reports each event as the broker delivers it."""

    def __init__(self, config: Config, callback: Callable[[dict[str, Any]], None]) -> None:
        import json

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from agent.uplink.mqtt_uplink import read_password
        from agent.uplink.topics import event_topic

        self.received = 0
        cfg = config.mqtt
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"tec-watch-{config.hub_id}-{time.monotonic_ns()}")
        if cfg.username:
            self._client.username_pw_set(
                cfg.username, read_password(cfg.password_file) if cfg.password_file else None)
        if cfg.tls_ca_file:
            self._client.tls_set(ca_certs=cfg.tls_ca_file)
        topic = event_topic(config.hub_id)

        self._subscribed = threading.Event()

        def on_connect(client, userdata, flags, rc, props):
            client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props):
            self._subscribed.set()

        def on_message(client, userdata, msg):
            self.received += 1
            try:
                callback(json.loads(msg.payload))
            except ValueError:
                callback({"raw": msg.payload.decode(errors="replace")})

        self._client.on_connect = on_connect
        self._client.on_message = on_message
        self._client.on_subscribe = on_subscribe
        self._cfg = cfg

    def start(self) -> None:
        self._client.connect(self._cfg.host, self._cfg.port, 30)
        self._client.loop_start()
        if not self._subscribed.wait(5.0):
            log.warning("watcher could not subscribe to the event topic within 5 s")

    def wait_for(self, n: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.received < n and time.monotonic() < end:
            time.sleep(0.02)

    def stop(self) -> None:
        from agent.uplink.mqtt_uplink import release_client

        self._client.disconnect()
        self._client.loop_stop()
        release_client(self._client)


def with_broker(config: Config, host: str, port: int, username: str, password_file: str) -> Config:
    mqtt = replace(config.mqtt, host=host, port=port, username=username,
                   password_file=password_file, tls_ca_file=None, tls_cert_file=None,
                   tls_key_file=None)
    return replace(config, mqtt=mqtt)


def print_json_line(doc: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()
