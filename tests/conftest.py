"""Shared fixtures: a real mosquitto on 127.0.0.1 per test, with a password file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from agent.sim.local_broker import find_mosquitto
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
