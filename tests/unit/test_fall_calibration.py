"""Learning the wearable's upright orientation from walking, and using it in confirmation."""

from __future__ import annotations

import numpy as np
import pytest

from agent.fall.calibration import MIN_BLOCKS, UprightCalibration, is_walking, upright_from
from agent.fall.confirmation import ConfirmRule, assess
from agent.fall.signal import tilt_deg
from tests.unit.fall_helpers import recording


def walking(seconds: float, down: np.ndarray, seed: int = 0) -> np.ndarray:
    """Steps at 1.8 Hz: |a| bounces around 1 g along ``down``."""
    t = np.arange(int(seconds * 50)) / 50.0
    rng = np.random.default_rng(seed)
    bounce = 1.0 + 0.25 * np.sin(2 * np.pi * 1.8 * t)
    return (np.outer(bounce, down) + rng.normal(0, 0.03, (len(t), 3))).astype(np.float32)


def still(seconds: float, down: np.ndarray) -> np.ndarray:
    return np.tile(down.astype(np.float32), (int(seconds * 50), 1))


DOWN = np.array([0.0, -1.0, 0.0])
TILTED = np.array([0.0, -0.8, -0.6])


def test_walking_is_recognised_and_stillness_or_noise_is_not() -> None:
    assert is_walking(walking(2, DOWN))
    assert not is_walking(still(2, DOWN))
    rng = np.random.default_rng(3)
    assert not is_walking((still(2, DOWN) + rng.normal(0, 0.15, (100, 3))).astype(np.float32))


def test_upright_is_learnt_from_walking_only_after_enough_of_it() -> None:
    cal = UprightCalibration()
    cal.feed(walking(2 * (MIN_BLOCKS - 1), TILTED))
    assert cal.upright is None
    cal.feed(walking(4, TILTED, seed=1))
    assert cal.upright is not None
    assert tilt_deg(cal.upright, TILTED.astype(np.float32)) < 3


def test_chunking_does_not_change_the_estimate() -> None:
    data = np.concatenate([walking(30, DOWN), still(10, TILTED), walking(20, DOWN, seed=2)])
    whole = upright_from(data)
    cal = UprightCalibration()
    for i in range(0, len(data), 25):
        cal.feed(data[i:i + 25])
    assert whole is not None and cal.upright is not None
    np.testing.assert_allclose(cal.upright, whole, atol=1e-6)


def test_a_re_clipped_wearable_is_relearnt() -> None:
    cal = UprightCalibration()
    cal.feed(walking(30, DOWN))
    cal.feed(walking(30, np.array([1.0, 0.0, 0.0]), seed=5))  # worn sideways now
    assert cal.upright is not None
    assert tilt_deg(cal.upright, np.float32([1.0, 0.0, 0.0])) < 10


def test_the_synthetic_fall_walks_first() -> None:
    est = upright_from(recording("F01_R01")[:200, :3].astype(np.float32) * 1e-3)
    assert est is None or tilt_deg(est, np.float32([0, -1, 0])) < 10


RULE = ConfirmRule()


def test_an_impact_that_starts_lying_is_not_confirmed_once_upright_is_known() -> None:
    lying_on_back = np.float32([0.0, 0.0, -1.0])
    lying_on_side = still(10, np.array([1.0, 0.0, 0.0]))
    upright = np.float32([0.0, -1.0, 0.0])
    # Rolling over in bed: relative to the pose before it looks like 90 degrees of tilt.
    assert assess(lying_on_side, lying_on_back, RULE).confirmed
    ev = assess(lying_on_side, lying_on_back, RULE, upright=upright)
    assert not ev.confirmed and ev.reason == "already_lying"
    assert ev.pre_tilt_deg == pytest.approx(90, abs=1)
    # From upright to lying is still a fall.
    ev = assess(lying_on_side, upright, RULE, upright=upright)
    assert ev.confirmed and ev.reason == "lying" and ev.pre_tilt_deg == pytest.approx(0, abs=1)


def test_evaluation_primes_with_the_first_walk_that_teaches_upright() -> None:
    # A first walking recording with too little recognisable walking (FallAllD FA05 at the
    # neck: 4 walking blocks of the 5 needed) would leave the subject without an upright in
    # every trial; a hub that sees the wearer walk every day learns it in the end.
    from agent.fall.dataset import Trial
    from agent.fall.evaluation import PRIMING_S, priming_segments

    def counts(acc_g: np.ndarray) -> np.ndarray:
        return np.hstack([np.round(acc_g * 1000), np.zeros((len(acc_g), 3))]).astype(np.int16)

    n = int(PRIMING_S * 50)
    short = counts(np.vstack([walking(2 * (MIN_BLOCKS - 1), DOWN), still(PRIMING_S, DOWN)]))
    good = counts(walking(PRIMING_S, DOWN, seed=1))
    trials = [Trial("P1", "D01_R01", short), Trial("P1", "D01_R02", good),
              Trial("P2", "D01_R01", short), Trial("P2", "D02_R01", short),
              Trial("P3", "D02_R01", good), Trial("P3", "D01_R03", good)]
    primes = priming_segments(trials)
    assert np.array_equal(primes["P1"], good[:n])     # the lowest repeat that teaches it
    assert np.array_equal(primes["P2"], short[:n])    # none does: the first, D01 before D02
    assert np.array_equal(primes["P3"], good[:n])
