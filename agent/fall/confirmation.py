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

A pendant on a lanyard swings and turns while the wearer moves; a single sample says little
about the trunk. Every posture figure is therefore the mean over one-second blocks (swinging
averages out, gravity stays) and needs agreement of several blocks. Two rules decide what a
detection that is *not* confirmed means:

- **recovered**: at least one block between half a second after the impact and the end of the
  confirmation time was down (lying, as above) and the last :data:`UP_AT_END_BLOCKS` blocks
  are not: a fall the wearer got up from within ``confirm_s``, even when they lay for most
  of it. (Sitting up on the floor reads the same as standing to one accelerometer: such a
  wearer gets a warning, not an alarm; inactivity rules still watch them.) The detector
  raises a ``fall_recovered`` warning, not an alarm. Without a down block the reason is
  ``not_down`` (a jump, a stumble caught in time): nothing is raised.
- **already lying** needs good evidence, because a fall out of bed or off a sofa also starts
  from lying: every second of the :data:`LYING_BEFORE_S` before the window *and* the window's
  first second at ``lying_before_deg`` or more from the learnt upright, *and* a soft impact
  (peak below ``already_lying_max_g``; rolling over in bed stays under ~2.5 g, a drop from
  a bed onto the floor mostly does not). The window's first second alone is not evidence: in
  many falls the trunk is already pitching over then.

A detection that would be confirmed is set aside as **lay_down** (lying down on purpose:
onto a bed, a sofa) when the impact was soft (peak below ``lay_down_max_g``) *and* nothing
fell freely before it (|a|, averaged over 0.1 s, stayed at or above ``free_fall_g`` in the
second before the peak). A fall drops towards 0 g before it lands; a person lowering
themselves onto a bed stays supported. At the neck a deliberate lie-down otherwise ends
exactly like a fall (FallAllD D18/D19 were most of the neck false alarms). The two values
were chosen by leave-one-person-out on FallAllD's neck recordings (models/fall/README.md).

A pendant gives a third kind of evidence when its gravity direction says little: a detection
that was never down is confirmed (``reclined_still``) when the wearer stays **still** for the
whole confirmation time (every one-second block's spread of |a| below ``reclined_still_g``,
10 mg, far below ``still_g``) *and* the pendant hangs ``reclined_tilt_deg`` (15 deg) or more
from the upright learnt from walking: slumped on the floor against a wall or a bed after a
syncope (FallAllD F35), where someone who sat down in a chair moved more or sat more upright.
Neck only (:data:`STILL_AFTER_POSITIONS`); both values were chosen leave-one-person-out on
FallAllD's neck recordings (models/fall/README.md, "Step 4"). 10 mg is above the still noise
of the accelerometers behind the data (LSM9DS1, ADXL345); a wearable whose noise at rest is
near it would confirm less, one whose readings are coarse enough to read exactly constant at
rest would confirm more: check a new wearable's still noise before relying on the rule.
(``motionless_g``, any pose with every block below a few mg, was tried and not chosen.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.fall.signal import BLOCK_SAMPLES, magnitude, tilt_deg

if TYPE_CHECKING:
    from agent.fall.config import FallConfig

MIN_EVIDENCE_S = 2.0   # fewer seconds than this after a detection is "no data"
LYING_BEFORE_S = 5.0   # seconds before the window that must all be lying for "already lying"
LEAD_SKIP_S = 0.5      # the impact itself is not posture: "down" is judged from here on
UP_AT_END_BLOCKS = 2   # not down in the last two seconds of the confirmation: got up again
LAY_DOWN_POSITIONS = ("neck",)  # where the lay_down rule applies (at the waist it cost falls)
STILL_AFTER_POSITIONS = ("neck",)  # where reclined_still / motionless apply (chosen at the neck)
RECOVERED_UPRIGHT_POSITIONS = ("neck",)  # where recovered_upright_deg applies (chosen at the neck)


@dataclass(frozen=True, slots=True)
class ConfirmRule:
    lying_tilt_deg: float = 45.0
    slumped_tilt_deg: float = 25.0
    still_g: float = 0.05
    lying_before_deg: float = 70.0
    already_lying_max_g: float = 3.0
    lay_down_max_g: float = 2.0
    free_fall_g: float = 0.5
    # Off unless set (rule_for sets the first two at the neck): see the module docstring.
    reclined_still_g: float = 0.0
    reclined_tilt_deg: float = 15.0
    motionless_g: float = 0.0   # tried, not chosen (models/fall/rule_replay.py); never set
    # Off unless set (rule_for sets it at the neck): down by the learnt upright alone counts
    # for ``recovered`` (module docstring).
    recovered_upright_deg: float = 0.0


def rule_for(cfg: FallConfig) -> ConfirmRule:
    """The posture rules of ``cfg``'s position: ``lay_down`` only in
    :data:`LAY_DOWN_POSITIONS` (at the waist it cost SisFall falls, models/fall/README.md)."""
    lay_down_max_g = cfg.lay_down_max_g if cfg.position in LAY_DOWN_POSITIONS else 0.0
    still_after = cfg.position in STILL_AFTER_POSITIONS
    recovered_upright = cfg.position in RECOVERED_UPRIGHT_POSITIONS
    return ConfirmRule(cfg.lying_tilt_deg, cfg.slumped_tilt_deg, cfg.still_g,
                       cfg.lying_before_deg, cfg.already_lying_max_g, lay_down_max_g,
                       cfg.free_fall_g,
                       reclined_still_g=cfg.reclined_still_g if still_after else 0.0,
                       reclined_tilt_deg=cfg.reclined_tilt_deg,
                       recovered_upright_deg=(cfg.recovered_upright_deg if recovered_upright
                                              else 0.0))


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the confirmation saw; goes into the ``fall`` event's ``data.confirmation``."""

    confirmed: bool
    # lying | slumped_still | reclined_still | motionless | no_data (confirmed);
    # recovered | not_down | already_lying | lay_down (not)
    reason: str
    seconds: float           # seconds of samples assessed
    tilt_deg: float | None   # median block tilt from the pre-fall orientation
    lying_fraction: float
    still_fraction: float
    activity_g: float | None  # median per-block std of |a|
    pre_tilt_deg: float | None = None   # pose before the impact, from the learnt upright
    posture_reference: str = "pre_event"  # post-impact tilts are measured from this
    upright_tilt_deg: float | None = None  # median block tilt from the learnt upright
    down_s: float = 0.0      # seconds (one-second blocks) down after the impact
    lying_before_s: float | None = None  # seconds of the 5 s before the window lying

    @property
    def recovered(self) -> bool:
        """A fall the wearer got up from (``fall_recovered``), not an everyday impact."""
        return self.reason == "recovered"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("seconds", "tilt_deg", "lying_fraction", "still_fraction", "activity_g",
                    "pre_tilt_deg", "upright_tilt_deg", "down_s", "lying_before_s"):
            if d[key] is not None:
                d[key] = round(float(d[key]), 3)
        return d


def _blocks(samples: np.ndarray, block: int, reference: np.ndarray,
            upright: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per one-second block: tilt from ``reference``, tilt from ``upright`` (180 when not
    known: every block counts as far from it) and the spread of |a|."""
    n = len(samples) // block
    tilts = np.empty(n, dtype=np.float32)
    up_tilts = np.full(n, 180.0, dtype=np.float32)
    acts = np.empty(n, dtype=np.float32)
    for b in range(n):
        seg = samples[b * block:(b + 1) * block]
        mean = seg.mean(axis=0)
        tilts[b] = tilt_deg(mean, reference)
        if upright is not None:
            up_tilts[b] = tilt_deg(mean, upright)
        acts[b] = float(magnitude(seg).std())
    return tilts, up_tilts, acts


def block_stats(samples: np.ndarray, reference: np.ndarray, upright: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per one-second block at 50 Hz: tilt from ``reference``, tilt from ``upright`` and the
    spread of |a| (what :func:`assess` judges; for trying rules offline,
    :mod:`models.fall.rule_replay`)."""
    return _blocks(samples, BLOCK_SAMPLES, reference, upright)


def already_lying(rule: ConfirmRule, pre_tilt: float | None, lying_before_s: float | None,
                  peak_g: float | None) -> bool:
    """Good evidence that the wearer was lying before a soft impact (rolling over in bed)."""
    if pre_tilt is None or pre_tilt < rule.lying_before_deg:
        return False
    if lying_before_s is not None and lying_before_s < LYING_BEFORE_S:
        return False
    return peak_g is None or peak_g < rule.already_lying_max_g


def lay_down(rule: ConfirmRule, peak_g: float | None, free_fall_min: float | None) -> bool:
    """A soft impact with no free fall before it: lying down on purpose, not a fall."""
    if peak_g is None or free_fall_min is None:
        return False
    return peak_g < rule.lay_down_max_g and free_fall_min >= rule.free_fall_g


def still_after(rule: ConfirmRule, acts: np.ndarray, up_med: float | None) -> str | None:
    """``motionless`` or ``reclined_still`` for a detection that was never down, else None
    (``acts``: per-block spread of |a| over the confirmation time; ``up_med``: median tilt
    from the learnt upright, None when not known: then only ``motionless`` can apply)."""
    if len(acts) == 0:
        return None
    most = float(acts.max())
    if most < rule.motionless_g:
        return "motionless"
    if up_med is not None and most < rule.reclined_still_g and up_med >= rule.reclined_tilt_deg:
        return "reclined_still"
    return None


def _down_from_upright(rule: ConfirmRule, up_tilts: np.ndarray, lead_up: np.ndarray,
                       upright: np.ndarray | None) -> int:
    """Blocks (lead and after the decision) hanging ``recovered_upright_deg`` or more from
    the learnt upright, when none of the last :data:`UP_AT_END_BLOCKS` does (up again);
    0 when the rule is off, the upright is not known or the wearer is still down at the
    end."""
    deg = rule.recovered_upright_deg
    if deg <= 0 or upright is None or len(up_tilts) < UP_AT_END_BLOCKS:
        return 0
    if (up_tilts[-UP_AT_END_BLOCKS:] >= deg).any():
        return 0
    return int(np.count_nonzero(up_tilts >= deg) + np.count_nonzero(lead_up >= deg))


def assess(post: np.ndarray, reference: np.ndarray, rule: ConfirmRule,
           rate_hz: float = 50.0, upright: np.ndarray | None = None, *,
           lead: np.ndarray | None = None, lying_before_s: float | None = None,
           peak_g: float | None = None, free_fall_min: float | None = None) -> Evidence:
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

    ``free_fall_min`` is :func:`agent.fall.signal.free_fall_min_g` of the impact's window:
    with ``peak_g`` it sets a deliberate lie-down aside (:func:`lay_down`).
    """
    block = max(1, round(BLOCK_SAMPLES * rate_hz / 50.0))
    n_blocks = len(post) // block
    seconds = len(post) / rate_hz
    pre_tilt = None if upright is None else tilt_deg(reference, upright)
    ref_name = "pre_event"
    if already_lying(rule, pre_tilt, lying_before_s, peak_g):
        return Evidence(False, "already_lying", seconds, None, 0.0, 0.0, None, pre_tilt,
                        ref_name, lying_before_s=lying_before_s)
    if seconds < MIN_EVIDENCE_S or n_blocks == 0:
        return Evidence(True, "no_data", seconds, None, 0.0, 0.0, None, pre_tilt, ref_name,
                        lying_before_s=lying_before_s)
    tilts, up_tilts, acts = _blocks(post, block, reference, upright)
    # Lying after a fall: the trunk has both turned away from where it was before the impact
    # and ended far from upright. Turned alone is not enough: someone bent over (getting
    # into a car, leaning forward in a chair) who straightens up turns as far.
    down = (tilts >= rule.lying_tilt_deg) & (up_tilts >= rule.lying_tilt_deg)
    lying = float(np.mean(down))
    still = float(np.mean(acts < rule.still_g))
    tilt_med = float(np.median(tilts))
    up_med = float(np.median(up_tilts)) if upright is not None else None
    slumped = tilt_med >= rule.slumped_tilt_deg and (
        up_med is None or up_med >= rule.slumped_tilt_deg)
    down_blocks = int(np.count_nonzero(down))
    lead_up = np.empty(0, dtype=np.float32)
    if lead is not None and len(lead) > round(LEAD_SKIP_S * rate_hz) + block:
        lt, lu, _ = _blocks(lead[round(LEAD_SKIP_S * rate_hz):], block, reference, upright)
        down_blocks += int(np.count_nonzero((lt >= rule.lying_tilt_deg)
                                            & (lu >= rule.lying_tilt_deg)))
        lead_up = lu
    up_at_end = n_blocks >= UP_AT_END_BLOCKS and not down[-UP_AT_END_BLOCKS:].any()
    if (lying >= 0.5 and not up_at_end) or (still >= 0.9 and slumped):
        down_reason: str | None = (
            "lying" if lying >= 0.5 and not up_at_end else "slumped_still")
    else:
        down_reason = None if down_blocks else still_after(rule, acts, up_med)
    if down_reason is not None:
        if lay_down(rule, peak_g, free_fall_min):
            confirmed, reason = False, "lay_down"
        else:
            confirmed, reason = True, down_reason
    elif down_blocks:
        confirmed, reason = False, "recovered"
    elif (low_blocks := _down_from_upright(rule, up_tilts, lead_up, upright)):
        confirmed, reason = False, "recovered"
        down_blocks = low_blocks
    else:
        confirmed, reason = False, "not_down"
    return Evidence(confirmed, reason, seconds, tilt_med, lying, still, float(np.median(acts)),
                    pre_tilt, ref_name, up_med, down_blocks * block / rate_hz, lying_before_s)
