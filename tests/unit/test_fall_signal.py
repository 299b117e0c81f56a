"""Impact gate, window features and posture/stillness confirmation (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.fall.config import FallConfig
from agent.fall.confirmation import ConfirmRule, assess, rule_for
from agent.fall.gate import ImpactGate, find_peaks
from agent.fall.signal import (
    PRE_SAMPLES,
    WINDOW_SAMPLES,
    free_fall_min_g,
    gravity_reference,
    model_input,
    tilt_deg,
    window_at,
)


def offline_peaks(m: np.ndarray, gate: float, r: int) -> list[int]:
    """The definition, brute force: >= gate, > every value in the r before, >= the r after."""
    out = []
    for p in range(len(m) - r):
        before = m[max(0, p - r):p]
        after = m[p + 1:p + r + 1]
        if m[p] >= gate and (len(before) == 0 or m[p] > before.max()) and m[p] >= after.max():
            out.append(p)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_streaming_gate_matches_the_offline_definition_in_any_chunking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = np.abs(rng.normal(1.0, 0.6, 3000)).astype(np.float32)
    m[rng.integers(0, 3000, 40)] += rng.uniform(0.5, 4, 40).astype(np.float32)
    expected = offline_peaks(m, 1.5, 50)
    assert expected, "the signal must have peaks for the test to mean anything"
    assert [p for p, _ in find_peaks(m, 1.5, 50)] == expected
    gate = ImpactGate(1.5, 50)
    got = []
    i = 0
    while i < len(m):
        n = int(rng.integers(1, 60))
        got.extend(p for p, _ in gate.feed(m[i:i + n]))
        i += n
    assert got == expected


def test_gate_reports_the_peak_value_and_ignores_sub_threshold_signal() -> None:
    m = np.ones(400, dtype=np.float32)
    m[100], m[130], m[300] = 3.0, 2.5, 1.4
    assert find_peaks(m, 1.5) == [(100, pytest.approx(3.0))]


def rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q.astype(np.float32)


def test_model_input_does_not_depend_on_how_the_wearable_is_mounted() -> None:
    rng = np.random.default_rng(1)
    w = (np.tile([0.0, -1.0, 0.0], (WINDOW_SAMPLES, 1)) + rng.normal(0, 0.3, (WINDOW_SAMPLES, 3))
         ).astype(np.float32)
    base = model_input(w)
    for seed in range(3):
        np.testing.assert_allclose(model_input(w @ rotation(seed).T), base, atol=1e-4)
    assert base.shape == (WINDOW_SAMPLES, 3) and base.dtype == np.float32
    # Log compression: 1 g upright reads 1.0 on the "along reference" channel.
    upright = model_input(np.tile(np.float32([0.0, -1.0, 0.0]), (WINDOW_SAMPLES, 1)))
    np.testing.assert_allclose(upright[:, 1], 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        model_input(w[:-1])


def test_window_at_pads_at_recording_edges_and_centres_the_peak() -> None:
    acc = np.arange(300 * 3, dtype=np.float32).reshape(300, 3)
    w = window_at(acc, 10)
    assert w.shape == (WINDOW_SAMPLES, 3)
    np.testing.assert_array_equal(w[PRE_SAMPLES], acc[10])
    np.testing.assert_array_equal(w[0], acc[0])


def test_tilt_and_reference() -> None:
    up = gravity_reference(np.tile(np.float32([0, -1, 0]), (WINDOW_SAMPLES, 1)))
    assert tilt_deg(np.float32([0, 0, 1]), up) == pytest.approx(90.0, abs=1e-3)
    assert tilt_deg(np.float32([0, -2, 0]), up) == pytest.approx(0.0, abs=1e-3)


RULE = ConfirmRule(lying_tilt_deg=45, slumped_tilt_deg=25, still_g=0.05)
UP = np.float32([0.0, -1.0, 0.0])


def posture(tilt: float, seconds: float, noise: float, seed: int = 0) -> np.ndarray:
    a = np.radians(tilt)
    g = np.float32([0.0, -np.cos(a), np.sin(a)])
    rng = np.random.default_rng(seed)
    return (np.tile(g, (int(seconds * 50), 1)) + rng.normal(0, noise, (int(seconds * 50), 3))
            ).astype(np.float32)


def test_lying_confirms_even_when_moving() -> None:
    ev = assess(posture(85, 10, 0.2), UP, RULE)
    assert ev.confirmed and ev.reason == "lying" and ev.lying_fraction == 1.0
    assert ev.tilt_deg == pytest.approx(85, abs=8)


def test_slumped_and_still_confirms_slumped_but_moving_does_not() -> None:
    assert assess(posture(32, 10, 0.005), UP, RULE).reason == "slumped_still"
    ev = assess(posture(32, 10, 0.2), UP, RULE)
    assert not ev.confirmed and ev.reason == "not_down"


def test_upright_after_the_impact_is_a_recovery_even_when_still() -> None:
    ev = assess(posture(5, 10, 0.005), UP, RULE)
    assert not ev.confirmed and ev.still_fraction == 1.0


def test_getting_up_within_the_interval_is_a_recovery() -> None:
    post = np.vstack([posture(85, 3, 0.01), posture(5, 7, 0.1, seed=1)])
    ev = assess(post, UP, RULE)
    assert not ev.confirmed and ev.reason == "recovered" and ev.recovered
    assert ev.down_s == 3.0


def test_up_again_at_the_end_of_the_confirmation_is_a_recovery_even_after_lying_long() -> None:
    post = np.vstack([posture(85, 8, 0.01), posture(5, 2, 0.1, seed=1)])
    ev = assess(post, UP, RULE)
    assert not ev.confirmed and ev.reason == "recovered" and ev.lying_fraction == 0.8
    # Still down in the last second: lying.
    post = np.vstack([posture(85, 6, 0.01), posture(5, 3, 0.1, seed=1), posture(85, 1, 0.01)])
    assert assess(post, UP, RULE).reason == "lying"


def test_down_between_impact_and_decision_counts_for_a_recovery() -> None:
    """Volunteers get up within seconds: being down only in the 2 s between the impact and
    the decision (the window's tail) is still a fall the wearer got up from."""
    upright = posture(5, 10, 0.1, seed=1)
    assert assess(upright, UP, RULE).reason == "not_down"
    lead = np.vstack([posture(85, 0.5, 0.3), posture(85, 1.5, 0.01, seed=2)])
    ev = assess(upright, UP, RULE, lead=lead)
    assert ev.reason == "recovered" and ev.down_s == 1.0
    # The first half second (the impact itself) is not posture.
    assert assess(upright, UP, RULE, lead=posture(85, 0.5, 0.01)).reason == "not_down"


def test_already_lying_needs_sustained_lying_before_and_a_soft_impact() -> None:
    """A fall out of bed also starts from lying: only five seconds of lying before the
    window and a soft impact (rolling over) set a detection aside."""
    rule = ConfirmRule(lying_before_deg=70, already_lying_max_g=3.0)
    on_floor = np.tile(np.float32([1.0, 0.0, 0.0]), (500, 1))   # on the side, on the floor
    lying = unit_at(90)                                          # on the back, in bed
    roll = assess(on_floor, lying, rule, upright=UP, lying_before_s=5.0, peak_g=2.0)
    assert not roll.confirmed and roll.reason == "already_lying"
    assert roll.to_dict()["lying_before_s"] == 5.0
    # A hard impact from lying: a drop out of bed, confirmed by the posture as usual.
    out_of_bed = assess(on_floor, lying, rule, upright=UP, lying_before_s=5.0, peak_g=4.5)
    assert out_of_bed.confirmed and out_of_bed.reason == "lying"
    # Lying only in the window's first second (pitching over in the fall): not evidence.
    pitching = assess(on_floor, lying, rule, upright=UP, lying_before_s=1.0, peak_g=2.0)
    assert pitching.confirmed


def test_silence_after_a_detection_confirms() -> None:
    ev = assess(posture(5, 1.0, 0.1), UP, RULE)
    assert ev.confirmed and ev.reason == "no_data" and ev.seconds == pytest.approx(1.0)
    assert ev.to_dict()["tilt_deg"] is None


def unit_at(tilt: float) -> np.ndarray:
    a = np.radians(tilt)
    return np.float32([0.0, -np.cos(a), np.sin(a)])


def test_straightening_up_from_bent_over_is_not_lying() -> None:
    # Bent forward 55 deg (getting into a car seat), then an impact, then sitting upright
    # and still: 50 deg away from the pre-impact pose, yet upright.
    bent = unit_at(-55)
    ev = assess(posture(-5, 10, 0.005), bent, RULE, upright=UP)
    assert ev.tilt_deg == pytest.approx(50, abs=3)
    assert ev.upright_tilt_deg == pytest.approx(5, abs=3)
    assert not ev.confirmed and ev.reason == "not_down" and ev.lying_fraction == 0.0
    # Without a learnt upright the pre-impact pose is all there is: the old reading.
    assert assess(posture(-5, 10, 0.005), bent, RULE).reason == "lying"


def test_lying_after_a_fall_from_bent_over_still_confirms() -> None:
    ev = assess(posture(80, 10, 0.05), unit_at(-30), RULE, upright=UP)
    assert ev.confirmed and ev.reason == "lying" and ev.upright_tilt_deg == pytest.approx(80, abs=4)


def test_slumped_needs_to_be_away_from_upright_as_well() -> None:
    # Leaning forward 35 deg in a chair, drops back to sitting upright and rests.
    assert not assess(posture(3, 10, 0.005), unit_at(-35), RULE, upright=UP).confirmed
    # Slumped sideways 35 deg from an upright start: still confirms.
    ev = assess(posture(35, 10, 0.005), UP, RULE, upright=UP)
    assert ev.confirmed and ev.reason == "slumped_still"
    assert ev.to_dict()["upright_tilt_deg"] == pytest.approx(35, abs=3)


def window_with(peak_g: float, dip_g: float | None) -> np.ndarray:
    """A model window standing still at 1 g, a dip to ``dip_g`` in the half second before
    the peak (none: supported all the way down) and an impact of ``peak_g`` at the peak."""
    w = np.tile(np.float32([0.0, -1.0, 0.0]), (WINDOW_SAMPLES, 1))
    if dip_g is not None:
        w[PRE_SAMPLES - 25:PRE_SAMPLES - 5] *= dip_g
    w[PRE_SAMPLES] = [0.0, -peak_g, 0.0]
    return w


def test_free_fall_dip_is_the_lowest_tenth_of_a_second_before_the_peak() -> None:
    assert free_fall_min_g(window_with(1.8, None)) == pytest.approx(1.0)
    assert free_fall_min_g(window_with(1.8, 0.2)) == pytest.approx(0.2)
    # One sample's dip is smoothed over 0.1 s: a jolt, not a fall.
    w = window_with(1.8, None)
    w[PRE_SAMPLES - 10] = 0.0
    assert free_fall_min_g(w) == pytest.approx(0.8)


def test_lying_down_on_purpose_is_set_aside_but_not_a_fall_that_fell_freely() -> None:
    """Down after a soft impact that nothing fell freely into (onto a bed) is lay_down; the
    same posture after a free fall, or after a hard impact, is a fall."""
    down = posture(85, 10, 0.005)
    supported = free_fall_min_g(window_with(1.8, None))
    ev = assess(down, UP, RULE, upright=UP, peak_g=1.8, free_fall_min=supported)
    assert not ev.confirmed and ev.reason == "lay_down" and not ev.recovered
    fell = free_fall_min_g(window_with(1.8, 0.3))
    assert assess(down, UP, RULE, upright=UP, peak_g=1.8, free_fall_min=fell).reason == "lying"
    hard = assess(down, UP, RULE, upright=UP, peak_g=2.5, free_fall_min=supported)
    assert hard.confirmed and hard.reason == "lying"
    slumped = assess(posture(35, 10, 0.005), UP, RULE, upright=UP, peak_g=1.8,
                     free_fall_min=supported)
    assert slumped.reason == "lay_down"
    # Without the window's evidence (or with the rule off) the posture decides as before.
    assert assess(down, UP, RULE, upright=UP, peak_g=1.8).reason == "lying"
    off = ConfirmRule(lay_down_max_g=0.0)
    assert assess(down, UP, off, upright=UP, peak_g=1.8, free_fall_min=supported).confirmed
    # Down and up again is still a recovered fall, whatever the impact.
    back_up = np.vstack([posture(85, 4, 0.01), posture(5, 6, 0.1, seed=1)])
    assert assess(back_up, UP, RULE, upright=UP, peak_g=1.8,
                  free_fall_min=supported).reason == "recovered"


def test_lay_down_is_a_neck_rule() -> None:
    neck = rule_for(FallConfig(position="neck"))
    waist = rule_for(FallConfig(position="waist"))
    assert neck.lay_down_max_g == FallConfig().lay_down_max_g > FallConfig().gate_g
    assert waist.lay_down_max_g == 0.0
    down, supported = posture(85, 10, 0.005), 1.0
    assert assess(down, UP, neck, upright=UP, peak_g=1.8, free_fall_min=supported).reason \
        == "lay_down"
    assert assess(down, UP, waist, upright=UP, peak_g=1.8, free_fall_min=supported).reason \
        == "lying"


NECK = rule_for(FallConfig(position="neck"))


def test_still_and_reclined_from_upright_confirms_at_the_neck_only() -> None:
    """Slumped on the floor against a wall after a syncope (FallAllD F35): the pendant ends
    only 20 deg from upright, under the 25 deg of "slumped", and nothing moves for the whole
    confirmation time. At the neck that is ``reclined_still``; at the waist and with step 3's
    rules (the rule off) it stays ``not_down``."""
    post = posture(20, 10, 0.003)
    ev = assess(post, UP, NECK, upright=UP)
    assert ev.confirmed and ev.reason == "reclined_still"
    assert ev.upright_tilt_deg == pytest.approx(20, abs=2)
    waist = rule_for(FallConfig(position="waist"))
    assert waist.reclined_still_g == 0.0
    assert assess(post, UP, waist, upright=UP).reason == "not_down"
    assert assess(post, UP, RULE, upright=UP).reason == "not_down"


def test_reclined_still_needs_every_second_still_the_tilt_and_a_learnt_upright() -> None:
    # One second of fidgeting (a person seated in a chair) is enough to say "not a fall".
    fidget = np.vstack([posture(20, 5, 0.003), posture(20, 1, 0.02, seed=1),
                        posture(20, 4, 0.003, seed=2)])
    assert assess(fidget, UP, NECK, upright=UP).reason == "not_down"
    # Sitting upright (10 deg from the learnt upright) and perfectly still: not a fall.
    assert assess(posture(10, 10, 0.003), UP, NECK, upright=UP).reason == "not_down"
    # Without a learnt upright there is nothing to be reclined from.
    assert assess(posture(20, 10, 0.003), UP, NECK).reason == "not_down"
    # Down and up again stays a recovered fall, however still the wearer sits afterwards.
    back = np.vstack([posture(85, 3, 0.003), posture(20, 7, 0.003, seed=1)])
    assert assess(back, UP, NECK, upright=UP).reason == "recovered"
    # A soft landing that nothing fell freely into is lying down on purpose, as for lying.
    supported = free_fall_min_g(window_with(1.8, None))
    ev = assess(posture(20, 10, 0.003), UP, NECK, upright=UP, peak_g=1.8,
                free_fall_min=supported)
    assert not ev.confirmed and ev.reason == "lay_down"


def test_down_from_the_learnt_upright_and_up_again_is_a_recovery_at_the_neck() -> None:
    """A fall whose pendant already hung 40 deg forward in the window's first second (the
    trunk pitching over before the impact, FallAllD F04/F16 at the neck) never turns 45 deg
    from that pose, though it hangs 80 deg from the upright learnt from walking: step 6
    (``recovered_upright_deg``, 70) counts that as down, so getting up again is
    ``fall_recovered``; before it, ``not_down`` (nothing raised)."""
    pitched = posture(40, 1, 0.0).mean(axis=0)
    fell_and_rose = np.vstack([posture(80, 3, 0.1), posture(5, 7, 0.1, seed=1)])
    ev = assess(fell_and_rose, pitched, NECK, upright=UP)
    assert not ev.confirmed and ev.reason == "recovered" and ev.down_s == 3.0
    assert NECK.recovered_upright_deg == FallConfig().recovered_upright_deg == 70.0
    # Off at the waist, in step 5's rules and without a learnt upright.
    waist = rule_for(FallConfig(position="waist"))
    assert waist.recovered_upright_deg == 0.0
    assert assess(fell_and_rose, pitched, waist, upright=UP).reason == "not_down"
    assert assess(fell_and_rose, pitched, RULE, upright=UP).reason == "not_down"
    assert assess(fell_and_rose, pitched, NECK).reason == "not_down"
    # Still 80 deg from upright at the end: not up again, so not a recovery.
    still_down = np.vstack([posture(5, 7, 0.1), posture(80, 3, 0.1, seed=1)])
    assert assess(still_down, pitched, NECK, upright=UP).reason == "not_down"
    # Leaning 55 deg forward to stand up from a chair and straightening up: not down.
    chair_rise = np.vstack([posture(55, 3, 0.1), posture(5, 7, 0.1, seed=1)])
    assert assess(chair_rise, pitched, NECK, upright=UP).reason == "not_down"
