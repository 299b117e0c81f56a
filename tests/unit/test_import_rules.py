"""The import rules of ARCHITECTURE.md, checked on the source (``ast``, nothing imported).

Every module of ``agent/`` and ``drivers/`` is read; each ``import``/``from ... import`` it
makes (at module level or inside a function; ``if TYPE_CHECKING:`` blocks are marked, as
they cost nothing at run time) is mapped to a *unit*: a package (``agent.store``,
``drivers.serial``), a top-level module of ``agent`` (``agent.app``), a config-section module
(``agent.remote.config``: leaf schemas that ``agent.config`` gathers) or a tools package
(``drivers.ble.tools``). The rules below are about units.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a driver may use of the agent: the value types, the ports, the clock, errors and the
# config helpers. Nothing that stores, sends, wires or reconfigures.
DRIVER_MAY_USE = {"agent", "agent.aio", "agent.clock", "agent.config_checks", "agent.errors",
                  "agent.model", "agent.ports"}
# Tools (capture, replay, fake peers) may in addition run detectors offline.
TOOLS_MAY_USE = DRIVER_MAY_USE | {"agent.conditions", "agent.offline"}
# The store sits under everything but the value types and errors.
STORE_MAY_USE = {"agent", "agent.errors", "agent.model"}
# The composition root is entered only from the top: the entry point, the CLI, the runner,
# and the commissioning walk (which drives a running Agent).
APP_IMPORTERS = {"agent.__main__", "agent.cli", "agent.runtime", "agent.commission", "agent.sim"}
# Third-party libraries wrapped in one place.
ONLY_IMPORTER = {"paho": {"agent.uplink.transport"}}
# Cycles between units that exist today (each a set of units importing each other, directly
# or through others). A new cycle fails the test; so does one of these going away (then
# delete it here and from ARCHITECTURE.md).
# (None today: agent.components <-> agent.remote ended when remote control began to ask the
# agent for the change plan through the port, RemoteHost.plan_change.)
KNOWN_CYCLES: set[frozenset[str]] = set()


@dataclass(frozen=True)
class Import:
    module: str        # the importing module, dotted
    target: str        # the imported module (or package), dotted
    line: int
    type_only: bool    # inside ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    p = ROOT.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.out: list[tuple[str, int, bool]] = []
        self._type_only = 0

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            self._type_only += 1
            for n in node.body:
                self.visit(n)
            self._type_only -= 1
            for n in node.orelse:
                self.visit(n)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.out.append((alias.name, node.lineno, self._type_only > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            pkg = self.module.split(".")
            if not self.is_package:
                pkg = pkg[:-1]
            pkg = pkg[:len(pkg) - (node.level - 1)]
            base = ".".join([*pkg, base] if base else pkg)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            target = sub if _is_module(sub) else base
            self.out.append((target, node.lineno, self._type_only > 0))


def imports_in(source: str, module: str, is_package: bool = False) -> list[Import]:
    c = _Collector(module, is_package)
    c.visit(ast.parse(source, module))
    return [Import(module, t, line, tc) for t, line, tc in c.out]


def collect(paths: Iterable[Path]) -> list[Import]:
    found = []
    for path in paths:
        found += imports_in(path.read_text(), _module_name(path), path.name == "__init__.py")
    return found


def unit(dotted: str) -> str:
    """The unit a module belongs to (see the module docstring)."""
    parts = dotted.split(".")
    if parts[0] not in ("agent", "drivers") or len(parts) == 1:
        return parts[0]
    if parts[0] == "drivers" and len(parts) >= 3 and parts[2] == "tools":
        return ".".join(parts[:3])
    if parts[0] == "agent" and len(parts) >= 3 and parts[2] == "config" and parts[1] != "config":
        return ".".join(parts[:3])          # a section schema: agent.remote.config
    return ".".join(parts[:2])


def project_files() -> list[Path]:
    return sorted([*ROOT.joinpath("agent").rglob("*.py"), *ROOT.joinpath("drivers").rglob("*.py")])


def violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        src, dst = unit(imp.module), unit(imp.target)
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        ours = imp.target.split(".")[0] in ("agent", "drivers")
        if src == dst:
            continue
        if src.startswith("drivers.") and ours and not dst.startswith("drivers."):
            allowed = TOOLS_MAY_USE if src.endswith(".tools") else DRIVER_MAY_USE
            if dst not in allowed:
                bad.append(f"{where}: a driver uses only {sorted(allowed)} of the agent")
        if src == "agent.store" and ours and dst not in STORE_MAY_USE:
            bad.append(f"{where}: the store imports only {sorted(STORE_MAY_USE)}")
        if dst == "agent.app" and src not in APP_IMPORTERS:
            bad.append(f"{where}: only {sorted(APP_IMPORTERS)} import the composition root")
        lib = imp.target.split(".")[0]
        if lib in ONLY_IMPORTER and imp.module not in ONLY_IMPORTER[lib]:
            bad.append(f"{where}: only {sorted(ONLY_IMPORTER[lib])} import {lib}")
    return bad


def cycles(imports: list[Import]) -> set[frozenset[str]]:
    """Strongly connected sets of more than one unit, over run-time imports."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        src, dst = unit(imp.module), unit(imp.target)
        if imp.type_only or src == dst or imp.target.split(".")[0] not in ("agent", "drivers"):
            continue
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:          # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.add(frozenset(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_read() -> None:
    imports = collect(project_files())
    modules = {i.module for i in imports}
    assert {"agent.app", "agent.uplink.transport", "drivers.serial.line"} <= modules


def test_import_rules_hold() -> None:
    assert violations(collect(project_files())) == []


def test_no_new_cycles_between_units() -> None:
    assert cycles(collect(project_files())) == KNOWN_CYCLES


# -- the rules can fail: imports planted in source text ---------------------------------------
PLANTED = [
    ("drivers.gpio.driver", "from agent.store.sqlite_store import SqliteStore\n",
     "a driver uses only"),
    ("drivers.serial.line", "def f():\n    import agent.uplink.delivery\n", "a driver uses only"),
    ("drivers.ble.component", "from agent import app\n", "a driver uses only"),
    ("agent.store.history", "from agent.report.records import Record\n",
     "the store imports only"),
    ("agent.remote.control", "from agent.app import Agent\n",
     "import the composition root"),
    ("agent.uplink.delivery", "import paho.mqtt.client as mqtt\n", "import paho"),
    ("drivers.ble.tools.replay", "from agent.uplink import build_uplink\n",
     "a driver uses only"),
]


def test_planted_bad_imports_are_caught() -> None:
    for module, source, why in PLANTED:
        found = violations(imports_in(source, module))
        assert found and any(why in f for f in found), (module, source, found)


def test_allowed_imports_pass() -> None:
    ok = [("drivers.gpio.driver", "from agent.model import Reading\nfrom agent import ports\n"),
          ("drivers.ble.tools.replay", "from agent.offline import OfflineContext\n"),
          ("agent.store.history", "from agent.model import Event\nfrom . import rows\n"),
          ("agent.runtime", "from agent.app import Agent\n"),
          ("agent.uplink.transport", "import paho.mqtt.client as mqtt\n"),
          ("agent.app", "if TYPE_CHECKING:\n    from agent.report.summary import Summary\n")]
    for module, source in ok:
        assert violations(imports_in(source, module)) == [], (module, source)


def test_relative_imports_resolve() -> None:
    (imp,) = imports_in("from ..store import history\n", "agent.uplink.delivery")
    assert imp.target == "agent.store.history"
    (imp,) = imports_in("from .rows import check_row\n", "agent.store", is_package=True)
    assert imp.target == "agent.store.rows"


def test_a_planted_cycle_is_caught() -> None:
    imports = collect(project_files()) + imports_in(
        "from agent.report.summary import summarise\n", "agent.store.history")
    assert cycles(imports) - KNOWN_CYCLES, "agent.store -> agent.report -> agent.store"
    type_only = collect(project_files()) + imports_in(
        "if TYPE_CHECKING:\n    from agent.report.summary import Summary\n",
        "agent.store.history")
    assert cycles(type_only) == KNOWN_CYCLES   # costs nothing at run time
    # Remote control reading the registry again (as agent/remote/plan.py did) is the old
    # circle: the registry names remote control's factory.
    back = collect(project_files()) + imports_in(
        "from agent.components import spec_of\n", "agent.remote.apply")
    assert frozenset({"agent.components", "agent.remote"}) in cycles(back)
