"""Apply a new config to the running agent without a restart.

Called through :meth:`agent.app.Agent.reconfigure` (remote control asks for it through the
port, :class:`agent.ports.Reconfigurable`). It works on a :class:`LiveAgent`, never imports
the application, and builds components from the registry (``agent/components.py``).

Order matters: the new MQTT connection is built before the old one is stopped (a password
file that cannot be read fails the change with the old connection still up); components
are stopped, then their replacements built from the new config and started, one at a
time; anything that fails is returned as a problem and the caller (the remote config
applier) rolls back.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from agent.clock import Clock, SystemClock
from agent.components import Hardware, build_components, spec_of
from agent.config import Config, MqttConfig
from agent.ports import Component, UplinkFigures
from agent.remote.plan import ChangePlan, plan_change
from agent.store.sqlite_store import SqliteStore

log = logging.getLogger(__name__)


class LiveAgent(Protocol):
    """What live reconfiguration changes in the running agent."""

    config: Config
    clock: Clock
    hardware: Hardware
    components: list[Component]
    store: SqliteStore

    def uplink_config(self) -> MqttConfig | None: ...

    def uplink_figures(self) -> UplinkFigures: ...

    async def swap_uplink(self, mqtt_config: MqttConfig) -> None: ...

    async def start_component(self, comp: Component) -> None: ...

    async def stop_component(self, comp: Component, timeout: float) -> None: ...


async def apply_live(agent: LiveAgent, new: Config) -> list[str]:
    """Swap ``agent`` to ``new``. Returns what went wrong (empty: everything started)."""
    old = agent.config
    plan = plan_change(old, new)
    if plan.forbidden:
        return list(plan.forbidden)
    problems: list[str] = []
    agent.config = new  # one assignment: whoever reads agent.config sees old or new, whole
    if plan.touches("agent.log_level"):
        logging.getLogger().setLevel(new.agent.log_level)
    if plan.touches("agent.assume_clock_synced"):
        agent.clock = SystemClock(new.agent.assume_clock_synced)
    if plan.touches("store"):
        store = agent.store
        store.max_bytes = new.store.max_mb * 1024 * 1024
        store.reserve_bytes = min(int(new.store.reserve_mb * 1024 * 1024), store.max_bytes // 4)
        store.keep_history_days = new.store.keep_history_days
    current_mqtt = agent.uplink_config()
    if current_mqtt is not None and current_mqtt != new.mqtt:
        try:
            await agent.swap_uplink(new.mqtt)
        except Exception as exc:
            log.exception("new MQTT connection could not be set up")
            problems.append(f"mqtt: {exc}")

    if plan.needs_components():
        problems.extend(await _rebuild_components(agent, new, plan))
    if agent.uplink_config() is not None and not agent.uplink_figures().alive:
        problems.append("uplink: network thread or sender not running")
    return problems


async def _rebuild_components(agent: LiveAgent, new: Config, plan: ChangePlan) -> list[str]:
    """Stop each affected component, start its replacement built from ``new``."""
    fresh: dict[str, list[Component]] = {}
    for comp in build_components(new, agent.hardware, rebuilt_only=True):
        fresh.setdefault(comp.name, []).append(comp)
    timeout = max(0.5, new.agent.shutdown_timeout_s)
    result: list[Component] = []
    to_start: list[Component] = []
    for comp in agent.components:
        if not plan.affects(comp.name):
            result.append(comp)
            continue
        replacements = fresh.get(comp.name)
        if replacements:
            await agent.stop_component(comp, timeout)
            replacement = replacements.pop(0)
            result.append(replacement)
            to_start.append(replacement)
        elif spec_of(comp.name) is not None:
            await agent.stop_component(comp, timeout)  # the new config no longer asks for it
            log.info("stopped %s: no longer configured", comp.name)
        else:
            result.append(comp)  # not built from the config (simulator, tests): leave it be
    running = {c.name for c in agent.components}
    for name, comps in fresh.items():
        if name not in running:  # e.g. the first BLE device of this hub
            result.extend(comps)
            to_start.extend(comps)
    agent.components = result
    problems: list[str] = []
    for comp in to_start:
        problems.extend(await _start(agent, comp))
    return problems


async def _start(agent: LiveAgent, comp: Component) -> list[str]:
    t0 = time.monotonic()
    try:
        await agent.start_component(comp)
    except Exception as exc:
        log.exception("%s failed to start with the new config", comp.name)
        return [f"{comp.name}: failed to start: {exc}"]
    log.info("started %s with the new config (%.0f ms)", comp.name, (time.monotonic() - t0) * 1e3)
    return []
