"""Fault injection through the store's ``connect`` seam: a real SQLite connection that
fails the statements a test chooses, with the error codes SQLite itself would give."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any


class FaultPlan:
    """Which statements fail next. Thread-safe: tests arm it from their own thread while
    the agent's loop runs the store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[list[Any]] = []   # [statement prefix, times left (-1: always), code]
        self.failed = 0

    def fail(self, prefix: str, times: int = 1, code: int = sqlite3.SQLITE_IOERR,
             message: str = "disk I/O error") -> None:
        with self._lock:
            self._rules.append([prefix.upper(), times, code, message])

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def check(self, sql: str) -> None:
        head = sql.lstrip().upper()
        with self._lock:
            for rule in self._rules:
                if head.startswith(rule[0]) and rule[1] != 0:
                    if rule[1] > 0:
                        rule[1] -= 1
                    self.failed += 1
                    exc = sqlite3.OperationalError(rule[3])
                    exc.sqlite_errorcode = rule[2]
                    raise exc

    def connect(self, *args: Any, **kw: Any) -> sqlite3.Connection:
        conn = sqlite3.connect(*args, factory=FaultyConnection, **kw)
        assert isinstance(conn, FaultyConnection)
        conn.plan = self
        return conn


class FaultyConnection(sqlite3.Connection):
    plan: FaultPlan | None = None

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if self.plan is not None:
            self.plan.check(sql)
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if self.plan is not None:
            self.plan.check(sql)
        return super().executemany(sql, *args)
