"""Durable event store (SQLite, WAL)."""

from agent.store.sqlite_store import Backlog, PendingEvent, SqliteStore, write_many

__all__ = ["Backlog", "PendingEvent", "SqliteStore", "write_many"]
