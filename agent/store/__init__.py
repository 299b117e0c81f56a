"""Durable event store (SQLite, WAL)."""

from agent.store.sqlite_store import (
    Backlog,
    PendingEvent,
    SqliteStore,
    StoreNotice,
    write_many,
)

__all__ = ["Backlog", "PendingEvent", "SqliteStore", "StoreNotice", "write_many"]
