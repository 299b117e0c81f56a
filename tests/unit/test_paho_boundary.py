"""paho-mqtt stays behind one module: ``agent/uplink/transport.py`` is the only file of the
agent and its drivers that imports it, nothing there touches a private attribute of a paho
client, and nothing in them calls ``select()`` (past descriptor 1,023 it fails)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = Path("agent/uplink/transport.py")


def _modules() -> list[tuple[Path, ast.Module]]:
    out = []
    for top in ("agent", "drivers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            out.append((path.relative_to(ROOT), ast.parse(path.read_text(), str(path))))
    return out


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_transport_imports_paho() -> None:
    importers = sorted(str(path) for path, tree in _modules()
                       if any(n == "paho" or n.startswith("paho.") for n in _imports(tree)))
    assert importers == [str(TRANSPORT)]


def test_the_transport_touches_no_private_attribute_of_paho() -> None:
    tree = ast.parse((ROOT / TRANSPORT).read_text())
    private = sorted({f"{ast.unparse(node.value)}.{node.attr}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr.startswith("_")
                      and not node.attr.startswith("__")
                      and ast.unparse(node.value) in ("client", "c", "self._client", "mqtt")})
    assert private == []


# The simulated telecare unit plays the unit's end of a pty for ``tec-agent simulate``: a
# tool beside the agent, one per simulation, not part of an agent.
SELECT_ALLOWED = {"drivers/serial/sim.py"}


def test_no_select_in_the_agent_or_its_drivers() -> None:
    users = sorted(str(path) for path, tree in _modules()
                   if {"select", "selectors"} & _imports(tree))
    assert [u for u in users if u not in SELECT_ALLOWED] == []
