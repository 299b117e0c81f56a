"""What the fall model is trained on: gate candidates of recordings, per data set and position.

No TensorFlow here (:mod:`models.fall.cv` and the tests import it from the runtime venv).
Candidates come from the runtime's own impact gate (:mod:`agent.fall.gate`) run over each
recording, windows and features from :mod:`agent.fall.signal`: what the model learns on is
what the hub computes. In a fall recording the candidate at the largest |a| (the unlabelled
impact) is positive, candidates more than 3 s before it are negative (walking or jogging
before the fall), others are left out; every candidate of a daily-activity recording is
negative.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agent.fall.calibration import UprightCalibration
from agent.fall.config import FallConfig
from agent.fall.confirmation import LYING_BEFORE_S, Evidence, assess, rule_for
from agent.fall.dataset import Trial, load_trials
from agent.fall.evaluation import pad_recording, priming_segments
from agent.fall.gate import find_peaks
from agent.fall.signal import (
    POST_SAMPLES,
    PRE_SAMPLES,
    SAMPLE_RATE_HZ,
    free_fall_min_g,
    gravity_reference,
    magnitude,
    model_input,
    unit,
    window_at,
)
from agent.fall.stream import lying_seconds

LYING_N = int(LYING_BEFORE_S * SAMPLE_RATE_HZ)
POSITIVE_TOLERANCE = 25          # candidate within 0.5 s of the largest |a|
NEGATIVE_BEFORE = 150            # candidates more than 3 s before the impact


@dataclass
class Candidates:
    windows: np.ndarray          # (N, 200, 3) raw acceleration, g
    label: np.ndarray            # 1 fall impact, 0 not a fall, -1 unlabelled (not trained on)
    trial: np.ndarray            # index into trials
    confirmed: np.ndarray        # runtime confirmation would confirm it
    weight: np.ndarray | None = None  # per-candidate training weight (position balance)
    turn: np.ndarray | None = None    # per-candidate: pendant-turn augmentation, max deg (train)
    # Extra negative windows (``--bed-negatives``): trained on, never scored or counted in
    # a threshold choice (the runtime never sees a shifted window).
    extra_windows: np.ndarray | None = None   # (M, 200, 3)
    extra_trial: np.ndarray | None = None     # (M,) index into trials
    extra_weight: float = 1.0                 # training weight of each extra window
    # Per candidate: the upright learnt from walking at its time (NaN: not known yet), and
    # for each extra window its candidate's (``--upright-channel``).
    upright: np.ndarray | None = None         # (N, 3)
    extra_upright: np.ndarray | None = None   # (M, 3)
    use_upright: bool = False                 # train on :func:`upright_input`

    def uprights(self, sel: np.ndarray) -> np.ndarray | None:
        """The uprights of the selected candidates when the model takes them, else None."""
        return self.upright[sel] if self.use_upright and self.upright is not None else None


BED_REASONS = ("lay_down", "already_lying")
LYING_CONTEXT_S = 1.0   # seconds of the 5 s before a window that make it "lying before"


def lying_context(lying_before_s: float | None, pre_tilt_deg: float | None,
                  lying_deg: float) -> bool:
    """The wearer was lying before a candidate: :data:`LYING_CONTEXT_S` of the 5 s before
    the window, or the window's first second, ``lying_deg`` or more from the upright learnt
    from walking (the "already lying" rule's measures, without its peak limit)."""
    return (lying_before_s is not None and lying_before_s >= LYING_CONTEXT_S) or (
        pre_tilt_deg is not None and pre_tilt_deg >= lying_deg)


def is_bed_negative(ev: Evidence, lying_before_s: float | None, lying_deg: float) -> bool:
    """A daily-activity candidate in a lying context (:func:`lying_context`), or one the
    posture check would confirm: only the model stands between it and an alarm (lying down
    on a bed, turning over in it, a landing that ends lying); also a verdict that names
    lying (``lay_down``, ``already_lying``)."""
    return ev.confirmed or ev.reason in BED_REASONS or lying_context(
        lying_before_s, ev.pre_tilt_deg, lying_deg)


def extract(trials: list[Trial], cfg: FallConfig,
            bed_offsets: tuple[int, ...] = ()) -> Candidates:
    """Every gate candidate, with its label and whether the runtime would confirm it
    (posture measured against the upright learnt from the subject's own walking, as in
    :class:`agent.fall.evaluation.Evaluator`). With ``bed_offsets`` (samples), every
    daily-activity candidate that :func:`is_bed_negative` also gives the windows at those
    offsets from its peak as extra negatives (``extra_windows``)."""
    rule = rule_for(cfg)
    extra_w: list[np.ndarray] = []
    extra_t: list[int] = []
    ups: list[np.ndarray] = []
    extra_u: list[np.ndarray] = []
    confirm_n = int(round(cfg.confirm_s * SAMPLE_RATE_HZ))
    primes = priming_segments(trials)
    wins, labels, idx, conf = [], [], [], []
    for ti, trial in enumerate(trials):
        acc = pad_recording(trial.samples, cfg)[:, :3].astype(np.float32) * 1e-3
        impact = trial.impact_index()
        cal = UprightCalibration()
        if trial.subject in primes:
            cal.feed(primes[trial.subject][:, :3].astype(np.float32) * 1e-3)
            cal.reset_partial()
        fed = 0
        for peak, _g in find_peaks(magnitude(acc), cfg.gate_g):
            if peak + POST_SAMPLES > len(acc):
                continue
            cal.feed(acc[fed:peak + POST_SAMPLES])
            fed = peak + POST_SAMPLES
            w = window_at(acc, peak)
            if trial.is_fall:
                if abs(peak - impact) <= POSITIVE_TOLERANCE:
                    label = 1
                elif peak < impact - NEGATIVE_BEFORE:
                    label = 0
                else:
                    label = -1
            else:
                label = 0
            d = peak + POST_SAMPLES
            up = cal.upright
            before = acc[max(0, peak - PRE_SAMPLES - LYING_N):max(0, peak - PRE_SAMPLES)]
            lying_before = (lying_seconds(before, up, rule.lying_before_deg)
                            if up is not None and len(before) == LYING_N else None)
            ev = assess(acc[d:d + confirm_n], gravity_reference(w), rule, SAMPLE_RATE_HZ, up,
                        lead=acc[peak:d], lying_before_s=lying_before, peak_g=float(_g),
                        free_fall_min=free_fall_min_g(w))
            wins.append(w)
            labels.append(label)
            idx.append(ti)
            conf.append(ev.confirmed)
            ups.append(np.full(3, np.nan, np.float32) if up is None
                       else np.asarray(up, np.float32))
            if bed_offsets and not trial.is_fall and is_bed_negative(
                    ev, lying_before, rule.lying_before_deg):
                for off in bed_offsets:
                    extra_w.append(window_at(acc, peak + off))
                    extra_t.append(ti)
                    extra_u.append(ups[-1])
    c = Candidates(np.stack(wins).astype(np.float32), np.array(labels, np.int8),
                   np.array(idx, np.int32), np.array(conf, bool))
    c.upright = np.stack(ups)
    if bed_offsets:
        c.extra_windows = (np.stack(extra_w).astype(np.float32) if extra_w
                           else np.zeros((0, *c.windows.shape[1:]), np.float32))
        c.extra_trial = np.array(extra_t, np.int32)
        c.extra_upright = (np.stack(extra_u) if extra_u else np.zeros((0, 3), np.float32))
    return c


UPRIGHT_FEATURE = "along_upright"


def upright_input(window: np.ndarray, upright: np.ndarray | None) -> np.ndarray:
    """:func:`agent.fall.signal.model_input` and a fourth channel: each sample's component
    along the upright learnt from walking (about 1 g standing, about 0 lying), the pose
    before, during and after the impact that the other three (relative to the window's own
    first second) cannot give. Not known yet (NaN or None): along the window's first second,
    as if the wearer had been upright before it (``--upright-channel``, step 8: tried)."""
    feats = model_input(window)
    up = None if upright is None or not np.all(np.isfinite(upright)) else unit(upright)
    ref = gravity_reference(window.astype(np.float32)) if up is None else up
    along = window.astype(np.float32) @ ref
    extra = (np.sign(along) * np.log2(1.0 + np.abs(along))).astype(np.float32)
    return np.concatenate([feats, extra[:, None]], axis=1)


def features(windows: np.ndarray, uprights: np.ndarray | None = None) -> np.ndarray:
    """Model inputs; with ``uprights`` (one per window) the four channels of
    :func:`upright_input`."""
    if uprights is None:
        return np.stack([model_input(w) for w in windows]).astype(np.float32)
    return np.stack([upright_input(w, u) for w, u in zip(windows, uprights, strict=True)]
                    ).astype(np.float32)


@dataclass(frozen=True)
class DataSet:
    name: str        # sisfall, fallalld: people with the same name and subject are one person
    position: str    # neck | waist
    path: Path

    @classmethod
    def parse(cls, text: str) -> DataSet:
        """``NAME:POSITION=DIR``, e.g. ``fallalld:neck=../shared/data/fallalld/neck``."""
        try:
            head, path = text.split("=", 1)
            name, position = head.split(":", 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:POSITION=DIR") from None
        return cls(name, position, Path(path))


@dataclass
class Corpus:
    trials: list[Trial]
    persons: np.ndarray       # per trial: "dataset:subject"
    positions: np.ndarray     # per trial
    groups: np.ndarray        # per trial: "dataset:position"
    cands: Candidates

    def balance_positions(self) -> None:
        """Weigh each position's candidates to the same total (the neck has a quarter of the
        candidates). Tried once, not adopted: held out, the neck got worse (README)."""
        pos = self.positions[self.cands.trial]
        names, counts = np.unique(pos, return_counts=True)
        share = dict(zip(names.tolist(), counts.tolist(), strict=True))
        self.cands.weight = np.array([len(pos) / (len(share) * share[p]) for p in pos],
                                     np.float32)

    @classmethod
    def load(cls, sets: list[DataSet], cfg: FallConfig, wanted: set[str] | None,
             bed_offsets: tuple[int, ...] = ()) -> Corpus:
        """Candidates are extracted per data set and position: priming (the subject's own
        walking) never mixes positions. ``bed_offsets``: :func:`extract`."""
        trials: list[Trial] = []
        persons, positions, groups, parts = [], [], [], []
        for ds in sets:
            ts = load_trials(ds.path, wanted)
            c = extract(ts, replace(cfg, position=ds.position), bed_offsets)
            c.trial += len(trials)
            if c.extra_trial is not None:
                c.extra_trial += len(trials)
            parts.append(c)
            trials.extend(ts)
            persons += [f"{ds.name}:{t.subject}" for t in ts]
            positions += [ds.position] * len(ts)
            groups += [f"{ds.name}:{ds.position}"] * len(ts)
        cands = Candidates(np.concatenate([c.windows for c in parts]),
                           np.concatenate([c.label for c in parts]),
                           np.concatenate([c.trial for c in parts]),
                           np.concatenate([c.confirmed for c in parts]))
        cands.upright = np.concatenate([c.upright for c in parts if c.upright is not None])
        if bed_offsets:
            cands.extra_upright = np.concatenate([c.extra_upright for c in parts
                                                  if c.extra_upright is not None])
            cands.extra_windows = np.concatenate([c.extra_windows for c in parts
                                                  if c.extra_windows is not None])
            cands.extra_trial = np.concatenate([c.extra_trial for c in parts
                                                if c.extra_trial is not None])
        return cls(trials, np.array(persons), np.array(positions), np.array(groups), cands)
