"""One component registry (agent/components.py), read by the agent, live reconfiguration
and the change plan; live reconfiguration and remote control never import the app."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from agent.components import REGISTRY, Hardware, build_components, spec_of
from agent.config import Config
from agent.remote.plan import plan_change
from tests.harness import make_config

ROOT = Path(__file__).resolve().parents[2]
# Config sections that configure the agent itself, not a component.
AGENT_SECTIONS = {"hub_id", "mqtt", "store", "agent"}


def test_every_config_section_is_the_agents_or_a_registered_components() -> None:
    sections = {f.name for f in dataclasses.fields(Config)}
    registered = {spec.section for spec in REGISTRY}
    assert registered <= sections
    assert sections - AGENT_SECTIONS == registered
    assert len({spec.name for spec in REGISTRY}) == len(REGISTRY)


def test_built_components_carry_their_registry_names(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, extra=(
        '[[gpio.devices]]\nid = "cord"\nkind = "pull_cord"\npin = 17\n'
        '[gpio]\npin_factory = "mock"\n[report]\ndaily_summary = true\n'))
    names = [c.name for c in build_components(config, Hardware())]
    assert all(spec_of(n) is not None for n in names)
    assert names[0] == "gpio" and "daily_summary" in names and "alarm-canceller" in names


def test_the_plan_reads_the_inputs_from_the_registry(tmp_path: Path) -> None:
    old = make_config(tmp_path, None)
    new = dataclasses.replace(old, gpio=dataclasses.replace(old.gpio, cancel_window_s=99.0))
    plan = plan_change(old, new)
    assert plan.affects("alarm-canceller") and plan.affects("gpio")
    assert not plan.affects("ble") and not plan.affects("remote")
    assert plan.affects("daily_summary")          # no inputs listed: any component change


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_reconfiguration_remote_and_the_registry_do_not_import_the_app() -> None:
    files = [ROOT / "agent" / "reconfigure.py", ROOT / "agent" / "components.py",
             *sorted((ROOT / "agent" / "remote").glob("*.py"))]
    offenders = {str(f.relative_to(ROOT)) for f in files if "agent.app" in _imports(f)}
    assert offenders == set()
