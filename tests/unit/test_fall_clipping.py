"""A wearable whose accelerometer rails at a small range is named, once, by the fall detector
(agent/fall/clipping.py); one with a full range never is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agent.fall.clipping import EPISODES, WARN_BELOW_G, ClipMonitor
from agent.fall.config import FallConfig
from agent.fall.dataset import load_trials
from agent.fall.scoring import PeakThresholdScorer
from agent.model import Priority
from tests.unit.fall_helpers import Run, recording


def strides(n: int = 12, peak_g: float = 3.5) -> np.ndarray:
    """int16 milli-g (n, 6): standing, and every second a 0.3 s half-sine jolt along the
    vertical axis up to ``peak_g`` (heavy footfalls), with 3 mg of sensor noise."""
    rate = 50
    y = np.full(n * rate, -1.0)
    bump = np.sin(np.linspace(0, np.pi, 15))
    for k in range(n):
        y[k * rate + 10:k * rate + 25] -= (peak_g - 1.0) * bump
    noise = np.random.default_rng(n).normal(0.0, 3.0, (len(y), 3))
    out = np.zeros((len(y), 6), dtype=np.int16)
    out[:, :3] = np.round(noise).astype(np.int16)
    out[:, 1] += np.round(y * 1000).astype(np.int16)
    out[:, 2] += 30
    return out


def clipped(samples: np.ndarray, rail_g: float) -> np.ndarray:
    out = samples.copy()
    out[:, :3] = np.clip(out[:, :3], -rail_g * 1000, rail_g * 1000)
    return out


def monitor(samples: np.ndarray, batch: int) -> ClipMonitor:
    m = ClipMonitor()
    acc = samples[:, :3].astype(np.float64) / 1000.0
    for i in range(0, len(acc), batch):
        m.feed(acc[i:i + batch])
    return m


def test_a_two_g_rail_is_found_at_any_batch_size_and_full_range_never() -> None:
    assert monitor(strides(), 25).clip_g is None
    for batch in (1, 7, 25, 600):
        m = monitor(clipped(strides(), 2.0), batch)
        assert m.clip_g == pytest.approx(2.0, abs=0.002), batch
    # four jolts are not enough to conclude
    assert monitor(clipped(strides(EPISODES - 1), 2.0), 25).clip_g is None
    # a still wearer's gravity is flat too, but below FLAT_MIN_G it is no rail
    assert monitor(np.tile(strides(1)[:5], (200, 1)), 25).levels == []


def test_real_recordings_unclipped_never_conclude_and_clipped_at_two_g_do(
        shared_dir: Path) -> None:
    trials = [t for t in load_trials(shared_dir / "data" / "fallalld" / "neck", {"FA07"})]
    full = np.concatenate([t.samples for t in trials])
    assert monitor(full, 25).clip_g is None
    assert monitor(clipped(full, 2.0), 25).clip_g == pytest.approx(2.0, abs=0.002)
    four = monitor(clipped(full, 4.0), 25).clip_g
    assert four is None or four >= WARN_BELOW_G


def standing_after(samples: np.ndarray) -> np.ndarray:
    """The stream goes on 12 s after the last jolt (silence after a detection alarms)."""
    still = strides(1)[:10]
    return np.vstack([samples, np.tile(still, (60, 1))])


def run_detector(*plays: tuple[str, np.ndarray]) -> Run:
    async def main() -> Run:
        r = Run(FallConfig(confirm_s=5.0, cancel_window_s=10.0),
                scorer=PeakThresholdScorer(3.0))
        await r.start()
        try:
            for device, samples in plays:
                await r.play(device, samples)
            await r.wait(12)
        finally:
            await r.stop()
        return r
    return asyncio.run(main())


def test_the_detector_raises_one_warning_per_clipping_wearable_only() -> None:
    rail = standing_after(clipped(strides(), 2.0))
    r = run_detector(("pendant-2g", rail), ("pendant-2g", rail),
                     ("pendant-8g", standing_after(strides())),
                     ("pendant-4g", standing_after(clipped(strides(peak_g=5.0), 4.0))),
                     ("pendant-8g", recording("F01_R01")))
    ev = r.events("accelerometer_clipping")
    assert [e.device_id for e in ev] == ["pendant-2g"]
    assert ev[0].priority == Priority.WARNING
    assert ev[0].data["clip_g"] == pytest.approx(2.0, abs=0.002)
    assert ev[0].data["min_range_g"] == 4.0 and ev[0].data["component"] == "fall"
    # the fall in the full-range stream is still found
    assert [e.device_id for e in r.events("fall")] == ["pendant-8g"]


def test_cv_clip_g_limits_the_accelerometer_only() -> None:
    from agent.fall.dataset import Trial
    from models.fall.cv import clipped as clip_trials

    samples = strides()
    samples[:, 3] = 5000  # gyroscope, 0.1 deg/s counts
    t = Trial("S1", "F01_R01", samples)
    assert clip_trials([t], None) == [t]
    (c,) = clip_trials([t], 2.0)
    assert c.samples[:, :3].min() == -2000 and t.samples[:, :3].min() < -2000
    assert (c.samples[:, 3:] == t.samples[:, 3:]).all()
    assert monitor(c.samples, 25).clip_g == pytest.approx(2.0, abs=0.002)


def test_a_coarse_full_range_device_is_not_taken_for_a_rail() -> None:
    """An 8-bit +-8 g accelerometer steps 62.5 mg: the tops of its smooth bumps repeat a
    value, but its harder movements go past that value, which a rail never lets happen."""
    lsb = 8000 / 128
    bumps = np.vstack([strides(6, peak_g=1.9), strides(6, peak_g=1.9), strides(3, peak_g=3.0)])
    coarse = bumps.copy()
    coarse[:, :3] = (np.round(bumps[:, :3] / lsb) * lsb).astype(np.int16)
    m = monitor(coarse, 25)
    assert m.lsb_g == pytest.approx(lsb / 1000, abs=0.002)
    assert m.levels == [] and m.clip_g is None   # tops reached one step at a time
    # an 8-bit +-2 g part (15.6 mg steps) cuts the harder jolts off mid-rise: a rail
    lsb2 = 2000 / 128
    fine = strides(8, peak_g=3.0)
    fine[:, :3] = (np.round(fine[:, :3] / lsb2) * lsb2).astype(np.int16)
    assert monitor(clipped(fine, 2.0), 25).clip_g == pytest.approx(2.0, abs=0.02)
