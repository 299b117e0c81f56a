"""Each component's own memory across restarts: key -> JSON value, beside the event store.

Components reach it through the port (``ctx.component_state(name)``), never through the
store's connection: the SQL for it lives here, with the store's. Each component has its own
table (``state_<name>``; the two that existed before the port keep their table and column
names, so an upgraded hub keeps what it learned and an older agent can still read it).

Values are JSON. A write is one transaction, so a component saves what belongs together
(a snapshot and what was learned with it) all or nothing.

Threading: like the event store, a state is used on the agent's loop only.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TypeAlias, Union

from agent.errors import StoreError
from agent.store.sqlite_store import write_many

log = logging.getLogger(__name__)

Json: TypeAlias = Union[None, bool, int, float, str, list["Json"], dict[str, "Json"]]
KeyRange: TypeAlias = tuple[str, str]       # [low, high): keys k with low <= k < high

# component name -> (table, key column) for tables that predate the port
_LEGACY: dict[str, tuple[str, str]] = {
    "inactivity": ("inactivity_state", "key"),
    "ble": ("ble_supervision", "device_id"),
}
# The inactivity detector's hourly stillness had a table of its own; it now lives under
# this key prefix in the detector's state, one key per local day and hour.
STILLNESS_PREFIX = "stillness/"
_LEGACY_STILLNESS = "inactivity_stillness"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def table_of(component: str) -> tuple[str, str]:
    if component in _LEGACY:
        return _LEGACY[component]
    if not _NAME.fullmatch(component):
        raise ValueError(f"component state name {component!r}: expected [a-z][a-z0-9_]*")
    return f"state_{component}", "key"


def _decode(component: str, key: str, text: str) -> Json:
    try:
        value: Json = json.loads(text)
        return value
    except ValueError:
        log.warning("saved state of %s: %r is unreadable, ignored", component, key)
        return None


def _encode(value: Json) -> str:
    return json.dumps(value, separators=(",", ":"))


class SqliteComponentState:
    """One component's table over the agent store's connection (owned by the store)."""

    def __init__(self, db: sqlite3.Connection, component: str, *, create: bool = True) -> None:
        """``create=False``: a read-only look (``tec-agent routine``); a missing table
        reads as empty. Raises :class:`StoreError` when the table cannot be made."""
        self.db = db
        self.component = component
        self.table, self.key_col = table_of(component)
        self._legacy_rows: dict[str, Json] = {}
        if create:
            self._create()
        else:
            self._legacy_rows = self._read_legacy_stillness()

    def _create(self) -> None:
        stmts: list[tuple[str, tuple[object, ...]]] = [
            (f"CREATE TABLE IF NOT EXISTS {self.table}("
             f"{self.key_col} TEXT PRIMARY KEY, value TEXT NOT NULL)", ())]
        legacy = self._read_legacy_stillness()
        if legacy or self._has_table(_LEGACY_STILLNESS):
            stmts += [(f"INSERT OR IGNORE INTO {self.table} VALUES (?, ?)", (k, _encode(v)))
                      for k, v in legacy.items()]
            stmts.append((f"DROP TABLE {_LEGACY_STILLNESS}", ()))
        try:
            write_many(self.db, stmts)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the state table of {self.component}: {exc}") from exc
        if legacy:
            log.info("state of %s: %d hourly stillness rows moved into its table",
                     self.component, len(legacy))

    def _has_table(self, table: str) -> bool:
        try:
            row = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'"
                                  " AND name=?", (table,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the state of {self.component}: {exc}") from exc
        return bool(row and row[0])

    def _read_legacy_stillness(self) -> dict[str, Json]:
        """Rows of the stillness table an older agent wrote (inactivity only)."""
        if self.component != "inactivity" or not self._has_table(_LEGACY_STILLNESS):
            return {}
        out: dict[str, Json] = {}
        try:
            for day, hour, mx, obs in self.db.execute(
                f"SELECT day, hour, max_still_s, observed_s FROM {_LEGACY_STILLNESS}"
            ):
                out[f"{STILLNESS_PREFIX}{day}/{int(hour):02d}"] = [float(mx), float(obs)]
        except (sqlite3.Error, TypeError, ValueError) as exc:
            log.warning("state of %s: old stillness table unreadable (%s), ignored",
                        self.component, exc)
        return out

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> Json:
        """The value saved under ``key``; None if there is none or it is unreadable."""
        if key in self._legacy_rows:
            return self._legacy_rows[key]
        try:
            row = self.db.execute(f"SELECT value FROM {self.table} WHERE {self.key_col}=?",
                                  (key,)).fetchone()
        except sqlite3.Error as exc:
            if not self._has_table(self.table):
                return None
            raise StoreError(f"cannot read the state of {self.component}: {exc}") from exc
        return None if row is None else _decode(self.component, key, row[0])

    def items(self, prefix: str = "") -> dict[str, Json]:
        """Every readable ``key -> value`` whose key starts with ``prefix``."""
        out = {k: v for k, v in self._legacy_rows.items() if k.startswith(prefix)}
        try:
            rows = self.db.execute(
                f"SELECT {self.key_col}, value FROM {self.table} WHERE substr({self.key_col},"
                " 1, ?) = ?", (len(prefix), prefix)).fetchall()
        except sqlite3.Error as exc:
            if not self._has_table(self.table):
                return out
            raise StoreError(f"cannot read the state of {self.component}: {exc}") from exc
        for key, text in rows:
            value = _decode(self.component, str(key), text)
            if value is not None:
                out[str(key)] = value
        return out

    # -- writing -----------------------------------------------------------------------------
    def write(self, put: Mapping[str, Json] | None = None, *,
              drop: KeyRange | None = None) -> None:
        """Save ``put`` and remove the keys in ``drop``, in one transaction (all or
        nothing). Raises :class:`StoreError` (a full or failing card)."""
        stmts: list[tuple[str, tuple[object, ...]]] = [
            (f"INSERT OR REPLACE INTO {self.table}({self.key_col}, value) VALUES (?, ?)",
             (k, _encode(v))) for k, v in (put or {}).items()]
        if drop is not None:
            stmts.append((f"DELETE FROM {self.table} WHERE {self.key_col} >= ?"
                          f" AND {self.key_col} < ?", drop))
        if not stmts:
            return
        try:
            write_many(self.db, stmts)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the state of {self.component}: {exc}") from exc


class MemoryComponentState:
    """The same contract in memory: offline replays, evaluations and tests."""

    def __init__(self, component: str = "test") -> None:
        table_of(component)             # the same names as the agent's, or ValueError
        self.component = component
        self.values: dict[str, str] = {}        # kept encoded: same copies, same errors
        self.writes = 0

    @classmethod
    def of(cls, values: Mapping[str, Json], component: str = "test") -> MemoryComponentState:
        """A state holding ``values`` (a read-only copy of a saved one, tests)."""
        state = cls(component)
        state.values = {k: _encode(v) for k, v in values.items()}
        return state

    def get(self, key: str) -> Json:
        text = self.values.get(key)
        return None if text is None else _decode(self.component, key, text)

    def items(self, prefix: str = "") -> dict[str, Json]:
        out: dict[str, Json] = {}
        for key, text in self.values.items():
            if key.startswith(prefix):
                value = _decode(self.component, key, text)
                if value is not None:
                    out[key] = value
        return out

    def write(self, put: Mapping[str, Json] | None = None, *,
              drop: KeyRange | None = None) -> None:
        encoded = {k: _encode(v) for k, v in (put or {}).items()}   # fails before any change
        self.values.update(encoded)
        if drop is not None:
            for key in [k for k in self.values if drop[0] <= k < drop[1]]:
                del self.values[key]
        self.writes += 1


def read_component_state(path: str | Path, component: str) -> dict[str, Json]:
    """Everything ``component`` saved in the agent database at ``path``, read-only (the
    agent may be running). Raises :class:`StoreError` if the file cannot be read."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no agent database at {p} (has the agent run yet?)")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {p}: {exc}") from exc
    try:
        return SqliteComponentState(db, component, create=False).items()
    except StoreError as exc:
        raise StoreError(f"cannot read {p}: {exc}") from exc
    finally:
        db.close()
