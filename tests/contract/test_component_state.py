"""The per-component state store: the same assertions against the SQLite implementation
(the agent's) and the in-memory one (offline replays, tests)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.inactivity.persistence import InactivityStore
from agent.inactivity.routine import HourStat
from agent.ports import ComponentState
from agent.store.component_state import (
    MemoryComponentState,
    SqliteComponentState,
    read_component_state,
)


@pytest.fixture(params=["sqlite", "memory"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ComponentState]:
    if request.param == "memory":
        yield MemoryComponentState("widget")
        return
    db = sqlite3.connect(tmp_path / "agent.db", isolation_level=None)
    yield SqliteComponentState(db, "widget")
    db.close()


def test_values_round_trip_and_ranges_drop(state: ComponentState) -> None:
    assert state.get("a") is None and state.items() == {}
    state.write({"a": {"x": [1, 2.5, None]}, "b/1": 1, "b/2": "two", "c": True})
    assert state.get("a") == {"x": [1, 2.5, None]}
    assert state.items("b/") == {"b/1": 1, "b/2": "two"}
    state.write({"b/3": 3}, drop=("b/", "b/3"))           # one transaction: put and drop
    assert state.items("b/") == {"b/3": 3}
    assert set(state.items()) == {"a", "b/3", "c"}


def test_a_value_that_is_not_json_changes_nothing(state: ComponentState) -> None:
    state.write({"a": 1})
    with pytest.raises(TypeError):
        state.write({"a": 2, "b": object()})  # type: ignore[dict-item]
    assert state.items() == {"a": 1}


def test_components_do_not_see_each_other(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "agent.db", isolation_level=None)
    SqliteComponentState(db, "one").write({"k": 1})
    assert SqliteComponentState(db, "two").get("k") is None
    with pytest.raises(ValueError):
        SqliteComponentState(db, "x; DROP TABLE events")


def test_a_read_only_store_refuses_writes_as_store_error(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "agent.db", isolation_level=None)
    SqliteComponentState(db, "widget").write({"k": 1})
    ro = sqlite3.connect(f"file:{tmp_path / 'agent.db'}?mode=ro", uri=True, isolation_level=None)
    state = SqliteComponentState(ro, "widget", create=False)
    assert state.get("k") == 1
    with pytest.raises(StoreError):
        state.write({"k": 2})
    assert read_component_state(tmp_path / "agent.db", "widget") == {"k": 1}
    assert read_component_state(tmp_path / "agent.db", "nothing") == {}


def test_an_older_agents_stillness_table_is_kept(tmp_path: Path) -> None:
    """A hub upgraded in place keeps the hours its routine learns from."""
    path = tmp_path / "agent.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "CREATE TABLE inactivity_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE inactivity_stillness(day TEXT NOT NULL, hour INTEGER NOT NULL,"
        " max_still_s REAL NOT NULL, observed_s REAL NOT NULL, PRIMARY KEY (day, hour));"
        "INSERT INTO inactivity_stillness VALUES ('2025-01-14', 7, 1800.0, 3600.0);"
        "INSERT INTO inactivity_stillness VALUES ('2025-01-15', 13, 60.0, 900.0);")
    expected = {(date(2025, 1, 14), 7): HourStat(1800.0, 3600.0),
                (date(2025, 1, 15), 13): HourStat(60.0, 900.0)}
    # Read-only (``tec-agent routine`` before the agent restarted): seen, not moved.
    ro = read_component_state(path, "inactivity")
    assert InactivityStore(MemoryComponentState.of(ro)).load_bins() == expected
    store = InactivityStore(db)               # the agent's start moves the rows
    assert store.load_bins() == expected
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name='inactivity_stillness'"
                      ).fetchone()[0] == 0
    store.save(prune_before=date(2025, 1, 15))
    assert InactivityStore(db).load_bins() == {(date(2025, 1, 15), 13): HourStat(60.0, 900.0)}
