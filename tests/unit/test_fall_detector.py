"""The runtime detector on synthetic recordings: gate, confirmation, cancel, episodes.

The threshold scorer (a real scorer, the fallback) makes these independent of the trained
model; tests/unit/test_fall_model.py runs the same path with the shipped model.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from agent.fall.config import FallConfig
from agent.fall.scoring import PeakThresholdScorer
from agent.model import Priority, Reading
from tests.unit.fall_helpers import Run, hold, recording

CFG = FallConfig(confirm_s=5.0, cancel_window_s=10.0)
SCORER = PeakThresholdScorer(3.0)


def run(coro_fn, cfg: FallConfig = CFG, **kw):
    async def main():
        r = Run(cfg, scorer=kw.pop("scorer", SCORER), **kw)
        await r.start()
        try:
            await coro_fn(r)
        finally:
            await r.stop()
        return r
    return asyncio.run(main())


def test_a_fall_raises_exactly_one_alarm_after_confirmation_and_cancel_window() -> None:
    async def body(r: Run) -> None:
        await r.play("wear-1", hold(recording("F01_R01"), 20), extra={"room": "hall"})
        await r.wait(5)

    r = run(body)
    falls = r.events("fall")
    assert len(falls) == 1
    ev = falls[0]
    assert ev.priority == Priority.ALARM and ev.device_id == "wear-1"
    d = ev.data
    assert d["room"] == "hall" and d["detector"] == "baseline"
    assert d["model_version"] == SCORER.version
    assert d["score"] >= 3.0 and d["peak_g"] == pytest.approx(d["score"], abs=0.01)
    assert d["confirmation"]["confirmed"] and d["confirmation"]["reason"] == "lying"
    assert d["confirmation"]["tilt_deg"] > 60
    # Decision 2 s after the impact, alarm max(confirm_s, cancel_window_s) later.
    assert d["delay_s"] == pytest.approx(2.0 + 10.0, abs=0.6)
    assert r.ctx is not None
    assert r.ctx.prewarnings == [("fall", True), ("fall", False)]
    assert not r.events("fall_cancelled")


@pytest.mark.parametrize("code", ["D19_R01", "D07_R01"])
def test_impacts_that_end_upright_are_not_confirmed(code: str) -> None:
    async def body(r: Run) -> None:
        await r.play("wear-1", hold(recording(code), 20))
        await r.wait(5)

    r = run(body)
    assert r.events("fall") == []
    assert r.ctx is not None
    if code == "D19_R01":  # the jump's landing passes the threshold: suspected, then dropped
        assert r.ctx.prewarnings == [("fall", True), ("fall", False)]


def test_cancel_within_the_window_gives_fall_cancelled_and_never_an_alarm() -> None:
    async def body(r: Run) -> None:
        assert r.detector is not None
        await r.play("wear-1", hold(recording("F01_R01"), 20),
                     stop_when=lambda: r.detector is not None and r.detector._prewarning)
        await r.wait(1.0)
        r.cancel("hub-cancel")
        await r.wait(20)
        r.cancel("hub-cancel")  # a second press has nothing left to cancel

    r = run(body)
    assert r.events("fall") == []
    cancelled = r.events("fall_cancelled")
    assert len(cancelled) == 1
    ev = cancelled[0]
    assert ev.priority == Priority.INFO and ev.device_id == "wear-1"
    assert ev.data["cancelled_by"] == "hub-cancel" and ev.data["pending_s"] >= 1.0
    assert ev.data["score"] >= 3.0
    assert r.ctx is not None and r.ctx.prewarnings[-1] == ("fall", False)


def test_another_wearables_button_does_not_cancel_this_wearables_fall() -> None:
    async def body(r: Run) -> None:
        await r.play("wear-2", hold(recording("D19_R01"), 2))
        await r.play("wear-1", hold(recording("F01_R01"), 20),
                     stop_when=lambda: r.detector is not None and r.detector._prewarning)
        r.cancel("wear-2")
        await r.wait(25)

    r = run(body)
    assert r.events("fall_cancelled") == []
    assert [e.device_id for e in r.events("fall")] == ["wear-1"]


def test_silence_after_a_detection_still_raises_the_alarm() -> None:
    """The wearable goes quiet (out of range, body over the antenna) after the impact."""
    async def body(r: Run) -> None:
        await r.play("wear-1", recording("F01_R01")[:int(5.4 * 50)])
        await r.wait(25)

    r = run(body)
    falls = r.events("fall")
    assert len(falls) == 1
    assert falls[0].data["confirmation"]["reason"] == "no_data"


def test_one_alarm_per_episode_even_with_more_impacts_on_the_floor() -> None:
    fall = recording("F01_R01")
    lying = fall[-100:]
    bump = lying.copy()
    bump[50:53, 2] += 4000     # more impacts while lying (struggling on the floor)
    session = np.concatenate([fall, lying, bump, lying, bump, lying, hold(lying, 30)])

    async def body(r: Run) -> None:
        await r.play("wear-1", session)
        await r.wait(15)

    r = run(body)
    assert len(r.events("fall")) == 1


def test_a_second_fall_after_getting_up_is_a_new_episode() -> None:
    fall = recording("F01_R01")
    standing = recording("D19_R01")[:200]   # 4 s upright and still

    async def body(r: Run) -> None:
        await r.play("wear-1", np.concatenate([hold(fall, 20), standing, standing,
                                               hold(fall, 20)]))
        await r.wait(5)

    r = run(body)
    assert len(r.events("fall")) == 2


def test_a_100_hz_wearable_is_resampled_and_detected() -> None:
    fall = hold(recording("F01_R01"), 20)
    idx = np.arange(0, len(fall) - 1, 0.5)
    lo = np.floor(idx).astype(int)
    frac = (idx - lo)[:, None]
    fast = np.round(fall[lo] * (1 - frac) + fall[lo + 1] * frac).astype(np.int16)

    async def body(r: Run) -> None:
        await r.play("wear-1", fast, rate_hz=100.0)
        await r.wait(5)

    r = run(body)
    assert len(r.events("fall")) == 1


def test_a_gap_restarts_windows_instead_of_joining_unrelated_samples() -> None:
    fall = hold(recording("F01_R01"), 20)

    async def body(r: Run) -> None:
        await r.play("wear-1", recording("D07_R01")[:100])
        r.clock.advance(30.0)   # 30 s without samples, then the stream resumes
        await r.play("wear-1", fall)
        await r.wait(5)

    r = run(body)
    assert r.detector is not None
    assert r.detector._streams["wear-1"].gaps == 1
    assert len(r.events("fall")) == 1


def test_only_configured_wearables_are_watched_and_bad_readings_are_ignored() -> None:
    async def body(r: Run) -> None:
        bad = [{"rate_hz": 50.0},
               {"rate_hz": 50.0, "t0": 1.0, "acc_g": ((0.0, 1.0),) * 6},
               {"rate_hz": 0.0, "t0": 1.0, "acc_g": ((0.0, 1.0, 0.0),)},
               {"rate_hz": 50.0, "t0": 1.0, "acc_g": ((float("nan"), 1.0, 0.0),)}]
        await r.feed([Reading("wear-9", "motion_samples", data=d, mono=r.clock.monotonic(),
                              publish=False) for d in bad])
        assert r.detector is not None and r.detector._streams == {}
        await r.play("wear-1", hold(recording("F01_R01"), 20))
        await r.wait(5)

    r = run(body, cfg=replace(CFG, wearables=("wear-9",)))
    assert r.events("fall") == []
    assert r.detector is not None and r.detector._streams == {}


def _recovered_fall(stumble: bool) -> np.ndarray:
    """16 s of walking (the hub learns upright), the synthetic fall (after a 4.5 g stumble
    1.5 s before its impact when asked: two impacts, one fall), 5 s on the floor, then
    standing upright again."""
    fall = recording("F01_R01")
    walking = np.tile(fall[:200], (4, 1))
    impact = int(np.argmax(np.linalg.norm(fall[:, :3].astype(float), axis=1)))
    down = fall[:impact + 250].copy()
    if stumble:
        down[impact - 75, 1] -= 3500
    standing = recording("D19_R01")[:200]
    return np.concatenate([walking, down, standing, standing, hold(standing, 20)])


@pytest.mark.parametrize("stumble", [False, True])
def test_a_fall_the_wearer_gets_up_from_is_one_warning_and_no_alarm(stumble: bool) -> None:
    async def body(r: Run) -> None:
        await r.play("wear-1", _recovered_fall(stumble), extra={"room": "hall"})
        await r.wait(5)

    r = run(body, replace(CFG, confirm_s=10.0))
    assert r.events("fall") == [] and r.events("fall_cancelled") == []
    warnings = r.events("fall_recovered")
    assert len(warnings) == 1       # one per fall, however many impacts it had
    ev = warnings[0]
    assert ev.priority == Priority.WARNING and ev.device_id == "wear-1"
    d = ev.data
    assert d["room"] == "hall" and d["position"] == "neck" and d["score"] >= 3.0
    assert d["confirmation"]["reason"] == "recovered" and not d["confirmation"]["confirmed"]
    assert d["confirmation"]["down_s"] >= 1.0
    assert r.ctx is not None and r.ctx.prewarnings[-1] == ("fall", False)


def _lie_down(free_fall: bool) -> np.ndarray:
    """16 s of walking (upright learnt), 2 s turning from upright onto the back at 1 g with
    (``free_fall``: 0.3 s at 0.2 g before the landing) or without a drop, a soft 1.8 g
    landing, then 20 s lying still. Counts of 1 mg, like the fixtures."""
    walking = np.tile(recording("F01_R01")[:200], (4, 1))[:, :3]
    angles = np.linspace(0.0, np.pi / 2, 100)
    turn = np.stack([np.zeros_like(angles), -np.cos(angles), np.sin(angles)], axis=1) * 1000
    if free_fall:
        turn[-15:] *= 0.2
    landing = np.array([[0.0, 0.0, 1800.0]])
    rng = np.random.default_rng(5)
    lying = np.array([0.0, 0.0, 1000.0]) + rng.normal(0.0, 3.0, (1000, 3))
    return np.concatenate([walking, turn, landing, lying]).round().astype(np.int16)


@pytest.mark.parametrize(("position", "free_fall", "alarms"),
                         [("neck", False, 0), ("neck", True, 1), ("waist", False, 1)])
def test_lying_down_on_purpose_raises_nothing_at_the_neck(position: str, free_fall: bool,
                                                          alarms: int) -> None:
    """A soft landing on the back that nothing fell freely into (onto a bed) is set aside at
    the neck (lay_down); the same landing after a drop is a fall; at the waist the rule is
    off (it cost SisFall falls)."""
    async def body(r: Run) -> None:
        await r.play("wear-1", _lie_down(free_fall))
        await r.wait(5)

    r = run(body, replace(CFG, position=position), scorer=PeakThresholdScorer(1.6))
    assert r.ctx is not None and ("fall", True) in r.ctx.prewarnings  # it was suspected
    falls = r.events("fall")
    assert len(falls) == alarms and r.events("fall_recovered") == []
    if falls:
        assert falls[0].data["confirmation"]["reason"] == "lying"


def test_a_fast_wearable_is_averaged_over_20_ms_as_the_training_recordings_were() -> None:
    from agent.fall.stream import _Resampler

    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (800, 3))
    whole = _Resampler().push(x, 200.0)
    chunked_r = _Resampler()
    chunked = np.vstack([chunked_r.push(x[i:i + 7], 200.0) for i in range(0, len(x), 7)])
    assert np.allclose(whole, chunked[:len(whole)], atol=1e-5)
    # output j (50 Hz) is the mean of the four 200 Hz samples ending at input 4j, as
    # SisFall's 200 Hz became its 50 Hz
    expected = np.array([x[4 * j - 3:4 * j + 1].mean(axis=0) for j in range(1, len(whole))])
    assert np.allclose(whole[1:], expected, atol=1e-5)

    # a one-sample 6 g spike at 200 Hz reads as its 20 ms mean, not as 6 g
    still = np.tile([0.0, -1.0, 0.0], (800, 1))
    still[400] = [0.0, -6.0, 0.0]
    out = _Resampler().push(still, 200.0)
    assert np.abs(out).max() == pytest.approx((6.0 + 3.0) / 4.0, abs=1e-5)
    # 50 Hz and below are not averaged
    assert np.abs(_Resampler().push(still[::4], 25.0)).max() == pytest.approx(6.0)


def test_a_wearable_under_50_hz_is_named_once_and_still_watched() -> None:
    fall = hold(recording("F01_R01"), 20)
    slow = fall[: len(fall) // 2 * 2].reshape(-1, 2, 6).mean(axis=1).round().astype(np.int16)

    async def body(r: Run) -> None:
        await r.play("wear-slow", slow, rate_hz=25.0)
        await r.play("wear-slow", slow, rate_hz=25.0)
        await r.play("wear-50", recording("D07_R01"), rate_hz=50.0)
        await r.wait(5)

    r = run(body)
    ev = r.events("motion_rate_low")
    assert [e.device_id for e in ev] == ["wear-slow"]
    assert ev[0].priority == Priority.WARNING
    assert ev[0].data["rate_hz"] == 25.0 and ev[0].data["min_rate_hz"] == 50.0
    assert r.detector is not None   # warned, and still watched (resampled to 50 Hz)
    assert r.detector._streams["wear-slow"].samples_total >= 2 * len(slow) * 2 - 10
