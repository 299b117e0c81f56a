"""Confirmation by posture and stillness after a detected impact (pure).

Most fall-like impacts in daily life (jumps, dropping into a chair, jogging) leave the wearer
upright or moving. After a real fall people lie on the floor, or are slumped and still. We
look at one-second blocks after the decision time and measure, per block, the trunk tilt
from the pre-fall orientation, the tilt from the wearer's upright learnt from walking (when
known) and the spread of |a|. Lying or slumped needs both tilts: turned from where the
trunk was before the impact *and* away from upright. The thresholds are physiological
priors set in config (45 deg lying, 25 deg slumped, 0.05 g still; already lying before the
impact at 70 deg from the learnt upright, beyond the 40-60 deg of trunk flexion people use
to stand up from a chair), not fitted to data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.fall.signal import BLOCK_SAMPLES, magnitude, tilt_deg

MIN_EVIDENCE_S = 2.0   # fewer seconds than this after a detection is "no data"


@dataclass(frozen=True, slots=True)
class ConfirmRule:
    lying_tilt_deg: float = 45.0
    slumped_tilt_deg: float = 25.0
    still_g: float = 0.05
    lying_before_deg: float = 70.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the confirmation saw; goes into the ``fall`` event's ``data.confirmation``."""

    confirmed: bool
    reason: str              # lying | slumped_still | recovered | no_data | already_lying
    seconds: float           # seconds of samples assessed
    tilt_deg: float | None   # median block tilt from the pre-fall orientation
    lying_fraction: float
    still_fraction: float
    activity_g: float | None  # median per-block std of |a|
    pre_tilt_deg: float | None = None   # pose before the impact, from the learnt upright
    posture_reference: str = "pre_event"  # post-impact tilts are measured from this
    upright_tilt_deg: float | None = None  # median block tilt from the learnt upright

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("seconds", "tilt_deg", "lying_fraction", "still_fraction", "activity_g",
                    "pre_tilt_deg", "upright_tilt_deg"):
            if d[key] is not None:
                d[key] = round(float(d[key]), 3)
        return d


def assess(post: np.ndarray, reference: np.ndarray, rule: ConfirmRule,
           rate_hz: float = 50.0, upright: np.ndarray | None = None) -> Evidence:
    """Judge the samples recorded after the decision time (raw acceleration in g).

    ``reference`` is the orientation just before the impact; posture afterwards is
    measured against it (measured against true upright instead, people reclining in an
    armchair after dropping into it would look slumped). ``upright`` is the wearer's
    upright orientation learnt from walking (:mod:`agent.fall.calibration`), if known:
    with it, an impact that starts from lying (rolling over in bed) is not taken for a
    fall from standing or sitting.

    With less than :data:`MIN_EVIDENCE_S` of data (the stream stopped after a detected
    fall: out of range, flat battery, body shielding the radio) we confirm: silence after a
    detected fall is no reassurance.
    """
    block = max(1, round(BLOCK_SAMPLES * rate_hz / 50.0))
    n_blocks = len(post) // block
    seconds = len(post) / rate_hz
    pre_tilt = None if upright is None else tilt_deg(reference, upright)
    posture_ref, ref_name = reference, "pre_event"
    if pre_tilt is not None and pre_tilt >= rule.lying_before_deg:
        return Evidence(False, "already_lying", seconds, None, 0.0, 0.0, None, pre_tilt, ref_name)
    if seconds < MIN_EVIDENCE_S or n_blocks == 0:
        return Evidence(True, "no_data", seconds, None, 0.0, 0.0, None, pre_tilt, ref_name)
    tilts = np.empty(n_blocks, dtype=np.float32)
    # Without a learnt upright every block counts as far from it (the pre-event test alone).
    up_tilts = np.full(n_blocks, 180.0, dtype=np.float32)
    acts = np.empty(n_blocks, dtype=np.float32)
    for b in range(n_blocks):
        seg = post[b * block:(b + 1) * block]
        mean = seg.mean(axis=0)
        tilts[b] = tilt_deg(mean, posture_ref)
        if upright is not None:
            up_tilts[b] = tilt_deg(mean, upright)
        acts[b] = float(magnitude(seg).std())
    # Lying after a fall: the trunk has both turned away from where it was before the impact
    # and ended far from upright. Turned alone is not enough: someone bent over (getting
    # into a car, leaning forward in a chair) who straightens up turns as far.
    lying = float(np.mean((tilts >= rule.lying_tilt_deg) & (up_tilts >= rule.lying_tilt_deg)))
    still = float(np.mean(acts < rule.still_g))
    tilt_med = float(np.median(tilts))
    up_med = float(np.median(up_tilts)) if upright is not None else None
    slumped = tilt_med >= rule.slumped_tilt_deg and (
        up_med is None or up_med >= rule.slumped_tilt_deg)
    if lying >= 0.5:
        confirmed, reason = True, "lying"
    elif still >= 0.9 and slumped:
        confirmed, reason = True, "slumped_still"
    else:
        confirmed, reason = False, "recovered"
    return Evidence(confirmed, reason, seconds, tilt_med, lying, still, float(np.median(acts)),
                    pre_tilt, ref_name, up_med)
