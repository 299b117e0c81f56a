"""What the one-port redesign (issue 18 part B) keeps out: SQL outside agent/store, a
component reaching for the store's connection, a driver importing its own tools."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"\.execute(many|script)?\(|\b(SELECT|INSERT|UPDATE|DELETE)\s+(\w+\s+)*"
                 r"(FROM|INTO|OR)\b|CREATE TABLE")


def _sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


# The service side's own database (issue 20's ingester, not the hub's store) keeps its SQL in
# its database modules; the PostgreSQL test fixture creates the database it runs on.
SERVICE_DB = {"agent/ingest/db.py", "agent/ingest/postgres_db.py", "agent/ingest/sqlite_db.py",
              "agent/sim/local_postgres.py"}


def test_no_sql_outside_the_store() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _sources("agent", "drivers")
                 if "agent/store/" not in p.as_posix() and SQL.search(p.read_text())]
    assert sorted(set(offenders) - SERVICE_DB) == []


def test_no_component_reaches_for_the_store_connection() -> None:
    pattern = re.compile(r"getattr\(\s*ctx\s*,|\.store\.db\b")
    offenders = [str(p.relative_to(ROOT)) for p in _sources("agent", "drivers")
                 if "agent/store/" not in p.as_posix() and pattern.search(p.read_text())]
    assert offenders == []


def test_the_ble_driver_does_not_import_its_tools() -> None:
    driver = [p for p in _sources("drivers/ble") if "tools" not in p.relative_to(ROOT).parts]
    for path in driver:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("drivers.ble.tools"), path


def test_no_component_widens_the_port_on_its_own() -> None:
    """A component that needs more than AgentContext gets it on the port (every
    implementation, contract tests), not through a protocol of its own that only the agent
    satisfies (the ARC's ArcContext with state_db/set_arc_path was one)."""
    offenders = []
    for path in _sources("agent", "drivers"):
        if path == ROOT / "agent" / "ports.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    (isinstance(b, ast.Name) and b.id == "AgentContext")
                    or (isinstance(b, ast.Attribute) and b.attr == "AgentContext")
                    for b in node.bases):
                offenders.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert offenders == []
