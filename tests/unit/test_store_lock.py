"""The store lock (agent/store/lock.py): exclusive, names its holder, released on release."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import StoreInUseError, StoreLockedError
from agent.store.lock import StoreLock


def test_a_second_lock_is_refused_naming_the_holder_then_free_after_release(
    tmp_path: Path
) -> None:
    first, second = StoreLock(tmp_path / "events.db"), StoreLock(tmp_path / "events.db")
    first.acquire()
    assert first.path == tmp_path / "events.db.lock"
    assert first.path.read_text().split("\n")[0] == str(os.getpid())
    with pytest.raises(StoreInUseError) as err:
        second.acquire()
    assert err.value.pid == os.getpid()
    assert isinstance(err.value, (StoreLockedError, OSError))
    assert f"in use by another tec-agent (PID {os.getpid()}: " in str(err.value)
    assert "sudo systemctl stop tec-agent" in str(err.value)
    first.release()
    assert first.path.read_text() == ""
    second.acquire()
    assert second.held
    second.release()
