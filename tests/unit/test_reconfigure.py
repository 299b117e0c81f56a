"""Live reconfiguration (agent/reconfigure.py) on a stand-in for the agent: which
components it stops, starts and leaves alone, read from the registry."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from agent.clock import SystemClock
from agent.components import Hardware, build_components
from agent.config import Config, MqttConfig
from agent.ports import Component, DeviceInfo, UplinkFigures
from agent.reconfigure import apply_live
from agent.store.sqlite_store import SqliteStore
from tests.harness import make_config


class Stub:
    def __init__(self, name: str) -> None:
        self.name = name
        self.running = True

    async def start(self, ctx: object) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def devices(self) -> list[DeviceInfo]:
        return []


class StandIn:
    """What apply_live needs of the agent (LiveAgent), and nothing else."""

    def __init__(self, config: Config, components: list[Component], store: SqliteStore) -> None:
        self.config = config
        self.clock = SystemClock(True)
        self.hardware = Hardware()
        self.components = components
        self.store = store
        self.started: list[str] = []
        self.stopped: list[str] = []

    def uplink_config(self) -> MqttConfig | None:
        return None

    def uplink_figures(self) -> UplinkFigures:
        return UplinkFigures()

    async def swap_uplink(self, mqtt_config: MqttConfig) -> None:
        raise AssertionError("no uplink here")

    async def start_component(self, comp: Component) -> None:
        self.started.append(comp.name)     # the agent would start it against itself

    async def stop_component(self, comp: Component, timeout: float) -> None:
        self.stopped.append(comp.name)
        await comp.stop()


def test_a_component_the_new_config_drops_is_stopped_others_left_alone(tmp_path: Path) -> None:
    old = make_config(tmp_path, None, extra="[report]\ndaily_summary = true\n")
    new = dataclasses.replace(old, report=dataclasses.replace(old.report, daily_summary=False))
    summary, sim = Stub("daily_summary"), Stub("simulator")
    store = SqliteStore(str(tmp_path / "events.db"), old.hub_id)
    host = StandIn(old, [summary, sim], store)

    problems = asyncio.run(apply_live(host, new))
    assert problems == []
    assert host.config is new
    assert host.stopped == ["daily_summary"] and not summary.running
    assert sim in host.components and sim.running          # not built from the config
    built = [c.name for c in build_components(new, Hardware(), rebuilt_only=True)]
    assert "daily_summary" not in built and "alarm-canceller" in built
    assert host.started == built                           # first built for this hub
    assert [c.name for c in host.components] == ["simulator", *built]
