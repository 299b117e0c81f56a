"""LogRing with many agents in one process (the fleet simulator: one ring per agent on the
root logger)."""

from __future__ import annotations

import logging

import pytest

from agent.remote.log_ring import LogRing


def test_a_record_is_formatted_once_for_all_rings_and_each_ring_redacts_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = logging.Formatter.format

    def counting(self: logging.Formatter, record: logging.LogRecord) -> str:
        calls.append(record)
        return original(self, record)

    monkeypatch.setattr(logging.Formatter, "format", counting)
    rings = [LogRing(10, secrets=[f"secret-of-ring-{i}"]) for i in range(100)]
    log = logging.getLogger("tests.log_ring")
    log.propagate = False
    log.setLevel(logging.WARNING)
    for ring in rings:
        log.addHandler(ring)
    try:
        log.warning("password %s and %s", "secret-of-ring-3", "secret-of-ring-7")
    finally:
        for ring in rings:
            log.removeHandler(ring)
    # 100 formats before: 8 ms a record with 1,000 rings, minutes of loop time in a failover.
    assert len(calls) == 1
    assert rings[3].tail(1)[0].endswith("password *** and secret-of-ring-7")
    assert rings[7].tail(1)[0].endswith("password secret-of-ring-3 and ***")
    assert rings[5].tail(1)[0].endswith("password secret-of-ring-3 and secret-of-ring-7")


def test_a_ring_with_its_own_formatter_does_not_take_the_shared_line() -> None:
    plain, custom = LogRing(10), LogRing(10)
    custom.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    log = logging.getLogger("tests.log_ring.custom")
    log.propagate = False
    log.setLevel(logging.WARNING)
    log.addHandler(plain)
    log.addHandler(custom)
    try:
        log.warning("hello")
    finally:
        log.removeHandler(plain)
        log.removeHandler(custom)
    assert plain.tail(1)[0].endswith("WARNING tests.log_ring.custom: hello")
    assert custom.tail(1) == ["WARNING|hello"]
