"""Durable event store (SQLite, WAL)."""

from agent.store.sqlite_store import Backlog, PendingEvent, SqliteStore

__all__ = ["Backlog", "PendingEvent", "SqliteStore"]
