"""Shared fixtures: a real mosquitto on 127.0.0.1 per test, with a password file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from agent.sim.local_broker import find_mosquitto
from agent.sim.local_postgres import LocalPostgres, find_pg_bin
from tests.harness import TestBroker

# CI runs the property tests derandomized (the same examples every run), so a rare
# counterexample shows up in a developer's run, not as a random red CI.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

SHARED_DIR = Path(
    os.environ.get("TEC_SHARED_DIR") or Path(__file__).resolve().parents[1] / ".." / "shared"
).resolve()


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[TestBroker]:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: run ./scripts/setup.sh (it apt-installs it)")
    broker = TestBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[TestBroker]:
    """A broker that keeps sessions across its own restart, and a platform-side subscriber
    with a persistent session on it: what is published while the subscriber reconnects is
    queued for it, as for a real monitoring platform."""
    broker = TestBroker(tmp_path / "durable-broker", persistence=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DIR} (set TEC_SHARED_DIR)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL (Debian's ``postgresql``) on a private port and data directory, one
    per test session; each test takes its own database from it (``postgres_url``)."""
    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: run ./scripts/setup.sh --test (it "
                    "apt-installs postgresql)")
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh database on the session's PostgreSQL server."""
    import re
    import time

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + f"_{time.time_ns()}"
    return postgres_server.create_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def ingest_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ingester's database, once per backend: the same assertions run against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ingest.db'}"
    return request.getfixturevalue("postgres_url")
