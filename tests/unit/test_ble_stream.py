"""Motion sample timing: chunks at the wearable's rate, gaps flagged, reconnects, drift."""

from __future__ import annotations

import itertools

import pytest

from drivers.ble.wearable.profile import MotionSample
from drivers.ble.wearable.stream import MotionStream

S = MotionSample(acc_g=(0.0, 0.0, 1.0), gyro_dps=(1.0, 2.0, 3.0))


def feed(stream: MotionStream, n: int, t0: float, period: float, per_notification: int = 1):
    chunks = []
    t = t0
    for _ in range(0, n, per_notification):
        t += period * per_notification
        chunks += stream.push([S] * per_notification, t)
    return chunks, t


def test_chunks_of_fixed_size_at_the_rate_without_gaps() -> None:
    s = MotionStream(50.0, 25)
    chunks, _ = feed(s, 100, 10.0, 0.02)
    assert [len(c.acc_g) for c in chunks] == [25, 25, 25, 25]
    assert [c.chunk for c in chunks] == [0, 1, 2, 3]
    assert not any(c.gap_before for c in chunks)
    assert all(c.rate_hz == 50.0 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.t0 - a.t0 == pytest.approx(0.5, abs=1e-3)
    assert chunks[0].gyro_dps is not None and chunks[0].gyro_dps[0] == (1.0, 2.0, 3.0)


def test_bursty_delivery_is_not_a_gap() -> None:
    s = MotionStream(50.0, 25)
    chunks, _ = feed(s, 200, 0.0, 0.02, per_notification=4)   # 4 samples per 80 ms event
    assert len(chunks) == 8 and not any(c.gap_before for c in chunks)


def test_lost_notifications_close_the_chunk_and_flag_the_gap() -> None:
    s = MotionStream(50.0, 25)
    chunks, t = feed(s, 30, 0.0, 0.02)          # one full chunk + 5 pending
    t += 0.02 * 40                              # 39 samples lost in the air
    chunks += s.push([S], t)
    more, _ = feed(s, 24, t, 0.02)
    chunks += more
    assert [len(c.acc_g) for c in chunks] == [25, 5, 25]
    assert [c.gap_before for c in chunks] == [False, False, True]
    assert chunks[2].t0 == pytest.approx(t)
    assert s.gaps == 1 and s.lost_estimate == pytest.approx(40, abs=1)


def test_reconnect_is_always_a_gap_and_flushes_the_partial_chunk() -> None:
    s = MotionStream(50.0, 10)
    chunks, t = feed(s, 15, 0.0, 0.02)
    chunks += s.break_stream()
    assert [len(c.acc_g) for c in chunks] == [10, 5]
    more, _ = feed(s, 10, t + 0.05, 0.02)        # reconnected quickly
    assert len(more) == 1 and more[0].gap_before is True


def test_slow_device_clock_is_tracked_without_false_gaps() -> None:
    s = MotionStream(50.0, 25)
    chunks, _ = feed(s, 50 * 120, 0.0, 0.0202)  # device 1 % slow, two minutes
    assert s.gaps == 0 and not any(c.gap_before for c in chunks)


def test_no_gyro_profile() -> None:
    s = MotionStream(50.0, 2, has_gyro=False)
    (c,) = s.push([MotionSample((0.1, 0.2, 0.3)), MotionSample((0.1, 0.2, 0.3))], 1.0)
    assert c.gyro_dps is None and c.acc_g == ((0.1, 0.2, 0.3), (0.1, 0.2, 0.3))
    assert c.t0 == pytest.approx(0.98)


def test_data_has_contract_fields() -> None:
    s = MotionStream(100.0, 1)
    (c,) = s.push([S], 5.0)
    assert set(c.as_data()) == {"rate_hz", "t0", "acc_g", "gyro_dps", "gap_before", "chunk"}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MotionStream(0.0, 1)
