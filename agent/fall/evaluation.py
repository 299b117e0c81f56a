"""Time-compressed evaluation through the runtime path.

Every trial is chunked into ``motion_samples`` readings (:mod:`agent.fall.replay`) and fed to
a real :class:`FallDetector` through an :class:`AgentContext` whose clock is moved by hand
to each reading's time: same windows, gate, scorer (in a single-worker executor),
confirmation, cancel window and episode logic as on a hub, only faster than real time.

Recordings end 15 s after the fall at most, but confirmation needs ``confirm_s`` after the
decision; each trial is therefore extended by repeating its final second ("the wearer stays
as at the end of the recording"), for falls and daily activities alike. The continuous
test concatenates each subject's daily-activity trials into one stream (padded at its end
only) and counts every alarm as a false alarm. Joining two recordings is not something a
wearer can do: the posture jumps between samples (from sitting straight into lying on the
back, say). An alarm whose window or confirmation spans such a junction is still counted,
and is also reported under ``continuous_false_alarms_at_junctions``; and because the order
of the recordings decides which postures meet, :meth:`Evaluator.run_shuffled` repeats the
continuous test with each subject's recordings in seeded random orders.

Where a data set's clips are short and centred on their event (FallAllD: 20 s, the event at
10 s), every impact's confirmation (``confirm_s`` from 2 s after it) reaches into the next
recording, so the joined stream judges each event partly on another recording's posture, and
"at a junction" says nothing about cause (8 of 8 at the neck in step 4, all at 10 s of their
clip). The continuous test is therefore also run with **held ends**: each recording followed
by its final second repeated for :func:`hold_s` (the trial test's padding) before the next
begins, so an impact's evidence comes from its own recording while the detector's state
(upright, lying history, episodes) carries on as on a hub
(``continuous_false_alarms_held``, over the same recorded hours, padding not counted).

A hub learns which way is up for a wearable from the wearer's walking
(:mod:`agent.fall.calibration`). Isolated trials have no such history, so each trial is
preceded by the first 20 s of one of the same subject's walking trials (D01, else D02: the
first in which the calibration recognises enough walking, see :func:`priming_segments`) and a
gap, as a hub would have seen the wearer walk at some time before; alarms are counted from
the trial's start only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agent.clock import ManualClock
from agent.fall.calibration import UprightCalibration
from agent.fall.config import FallConfig
from agent.fall.dataset import ACC_G_PER_COUNT, Trial, adls_by_subject
from agent.fall.detector import FallDetector
from agent.fall.figures import (
    SHUFFLE_SEED,
    published_threshold_summary,
    shuffled_summary,
    summarize,
)
from agent.fall.replay import motion_readings
from agent.fall.scoring import Scorer
from agent.fall.signal import (
    BLOCK_SAMPLES,
    POST_SAMPLES,
    PRE_SAMPLES,
    SAMPLE_RATE_HZ,
    magnitude,
)
from agent.fall.stream import STALL_GRACE_S, Outcome, ScoreJob
from agent.model import Event
from agent.offline import OfflineContext

__all__ = ["ContinuousResult", "Evaluator", "TrialResult", "adls_by_subject",
           "published_threshold_summary", "shuffled_summary", "summarize"]

STEP_S = 0.25
PRIMING_S = 20.0


class FallReplayContext(OfflineContext):
    """The offline context for one evaluation run: events are collected, not stored."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 executor: concurrent.futures.Executor, clock: ManualClock) -> None:
        super().__init__(clock, "eval", loop=loop, executor=executor)
        self.manual_clock = clock   # the same object, for whoever moves time

    @property
    def prewarnings(self) -> list[tuple[str, bool]]:
        return [(source, active) for _wall, source, active in self.prewarning_log]


def hold_s(cfg: FallConfig) -> float:
    """How long after an impact an alarm can still be due."""
    return POST_SAMPLES / SAMPLE_RATE_HZ + max(cfg.confirm_s, cfg.cancel_window_s) + STALL_GRACE_S


WALKING_CODES = ("D01", "D02")   # walk slowly, walk quickly (SisFall and FallAllD)


def priming_segments(trials: Sequence[Trial]) -> dict[str, np.ndarray]:
    """Per subject: the first :data:`PRIMING_S` of their walking: the first recording, in the
    order D01 then D02, lowest repeat first, in which the calibration recognises enough
    walking to learn upright (a hub sees its wearer walk every day and learns it in the
    end; the first 20 s of one recording may not show it: FallAllD FA05's first neck walk
    has 4 walking blocks of the 5 needed); if none does, the first recording in that order.
    A subject without either code is left out: see :func:`unprimed_subjects`."""
    out: dict[str, np.ndarray] = {}
    n = int(PRIMING_S * SAMPLE_RATE_HZ)
    walks = sorted((t for t in trials if t.activity in WALKING_CODES),
                   key=lambda t: (t.subject, WALKING_CODES.index(t.activity), t.repeat))
    for t in walks:
        if t.subject in out and learns_upright(out[t.subject]):
            continue
        if t.subject not in out or learns_upright(t.samples[:n]):
            out[t.subject] = t.samples[:n]
    return out


def learns_upright(samples: np.ndarray) -> bool:
    """Whether :class:`UprightCalibration` learns upright from these samples (milli-g)."""
    cal = UprightCalibration()
    cal.feed(samples[:, :3].astype(np.float32) * ACC_G_PER_COUNT)
    return cal.upright is not None


def unprimed_subjects(trials: Sequence[Trial]) -> list[str]:
    """Subjects without a walking trial: evaluated as a hub that has not yet seen the
    wearer walk (posture judged against the pose before each impact only, no "already
    lying" check), not against some other subject's or a guessed upright."""
    primed = priming_segments(trials)
    return sorted({t.subject for t in trials} - set(primed))


def pad_recording(samples: np.ndarray, cfg: FallConfig) -> np.ndarray:
    """The recording followed by its final second repeated for :func:`hold_s` seconds."""
    tail = samples[-BLOCK_SAMPLES:]
    reps = math.ceil(hold_s(cfg) * SAMPLE_RATE_HZ / len(tail)) + 1
    return np.concatenate([samples, np.tile(tail, (reps, 1))])


@dataclass
class TrialResult:
    subject: str
    code: str
    is_fall: bool
    alarms: int
    delay_s: float | None          # impact to first alarm
    max_score: float | None        # highest score of any scored window
    impact_score: float | None     # score of the window at the recording's peak |a|
    windows: int
    recovered: bool = False        # label: a fall the volunteer got up from
    warnings: int = 0              # fall_recovered events
    cancelled: int = 0             # fall_cancelled events
    reason: str = ""               # see :data:`REASONS`
    peak_g: float | None = None    # the recording's largest |a|

    @property
    def detected(self) -> bool:
        return self.alarms > 0

    @property
    def outcome(self) -> str:
        """alarm | warning (fall_recovered) | cancelled | none"""
        if self.alarms:
            return "alarm"
        if self.warnings:
            return "warning"
        return "cancelled" if self.cancelled else "none"

    def to_line(self) -> dict[str, Any]:
        """One ``--trials-out`` line (contract: subject, trial, label, outcome, score,
        peak_g, reason)."""
        return {"subject": self.subject, "trial": self.code,
                "label": "fall" if self.is_fall else "adl", "outcome": self.outcome,
                "score": None if self.max_score is None else round(self.max_score, 4),
                "peak_g": None if self.peak_g is None else round(self.peak_g, 3),
                "reason": self.reason, "recovered_fall": self.recovered}


# Why a trial ended as it did. No alarm: below_gate (no impact reached the gate),
# below_threshold (scored, under the threshold), recovered (down, then up again: a
# fall_recovered warning), not_down (over the threshold, never down), already_lying (lying
# before a soft impact), lay_down (down after a soft impact with no free fall before it:
# lying down on purpose), cancelled (pending and cancelled). Alarm: the confirmation's
# reason (lying, slumped_still, reclined_still, no_data).
REASONS = ("below_gate", "below_threshold", "recovered", "not_down", "already_lying",
           "lay_down", "cancelled", "lying", "slumped_still", "reclined_still", "no_data")


def trial_reason(windows: int, max_score: float | None, threshold: float,
                 outcomes: Sequence[Outcome], alarm_reason: str | None, cancelled: int) -> str:
    """The :data:`REASONS` entry for one trial."""
    if alarm_reason is not None:
        return alarm_reason
    if cancelled:
        return "cancelled"
    reasons = [o.suspicion.evidence.reason for o in outcomes if o.suspicion.evidence]
    for r in ("recovered", "already_lying", "lay_down", "not_down"):
        if r in reasons:
            return r
    if windows == 0:
        return "below_gate"
    if max_score is None or max_score < threshold:
        return "below_threshold"
    return "not_down"


@dataclass
class ContinuousResult:
    subject: str
    hours: float
    alarms: int
    alarm_times_s: list[float] = field(default_factory=list)
    junction_alarms: int = 0       # alarms whose window or confirmation spans a junction
    junction_exposure_s: float = 0.0  # seconds in which an impact would span one
    recordings: tuple[str, ...] = ()  # the trial codes, in the order they were joined
    alarm_recordings: tuple[str, ...] = ()  # the recording each alarm's impact is in
    held_alarms: int = 0           # the same recordings with held ends (module docstring)
    held_alarm_recordings: tuple[str, ...] = ()  # as alarm_recordings, held ends
    held_junction_alarms: int = 0  # held-ends alarms whose window still spans a junction




def spans_junction(impact_s: float, junctions_s: Sequence[float], cfg: FallConfig) -> bool:
    """Whether an impact's model window or confirmation interval contains a junction
    between two recordings (times in seconds from the start of the stream)."""
    lo = impact_s - PRE_SAMPLES / SAMPLE_RATE_HZ
    hi = impact_s + POST_SAMPLES / SAMPLE_RATE_HZ + cfg.confirm_s
    return any(lo <= j <= hi for j in junctions_s)


def junction_exposure_s(junctions_s: Sequence[float], total_s: float, cfg: FallConfig) -> float:
    """Seconds of the stream in which an impact would :func:`spans_junction`: the share of
    false alarms at junctions to expect if they had nothing to do with the junctions."""
    before = PRE_SAMPLES / SAMPLE_RATE_HZ
    after = POST_SAMPLES / SAMPLE_RATE_HZ + cfg.confirm_s
    covered, end = 0.0, 0.0
    for j in sorted(junctions_s):
        lo, hi = max(j - after, end, 0.0), min(j + before, total_s)
        covered += max(0.0, hi - lo)
        end = max(end, hi)
    return covered


def replay_step(rate_hz: float) -> int:
    """How many 50 Hz samples make one sample at ``rate_hz``; a :class:`ValueError` for a
    rate the 50 Hz recordings cannot be replayed at (50 divided by a whole number)."""
    k = SAMPLE_RATE_HZ / rate_hz if rate_hz > 0 else 0.0
    if rate_hz <= 0 or rate_hz > SAMPLE_RATE_HZ or abs(k - round(k)) > 0.01:
        raise ValueError(f"rate {rate_hz} Hz: the recordings are {SAMPLE_RATE_HZ:g} Hz, so "
                         f"only {SAMPLE_RATE_HZ:g} divided by a whole number (50, 25, 16.67, "
                         "12.5, 10, ...) can be replayed")
    return int(round(k))


def slower(samples: np.ndarray, rate_hz: float) -> np.ndarray:
    """A 50 Hz recording as a wearable sampling at ``rate_hz`` (:func:`replay_step`) would
    have streamed it: each output sample the mean of the 50 Hz samples in its period, as an
    accelerometer filters to its own output rate."""
    n = replay_step(rate_hz)
    if n == 1:
        return samples
    whole = len(samples) // n * n
    grouped = samples[:whole].astype(np.float64).reshape(-1, n, samples.shape[1])
    return np.round(grouped.mean(axis=1)).astype(samples.dtype)


class Evaluator:
    """Runs trials through fresh detectors sharing one loaded scorer and one worker."""

    def __init__(self, scorer: Scorer, cfg: FallConfig | None = None,
                 priming: dict[str, np.ndarray] | None = None,
                 rate_hz: float = SAMPLE_RATE_HZ) -> None:
        """``priming``: walking per subject replayed before each trial (default: taken
        from the trials themselves, see :func:`priming_segments`). ``rate_hz``: replay
        as a wearable sampling at this rate would stream (:func:`slower`)."""
        self.scorer = scorer
        self.cfg = cfg or FallConfig()
        self.priming = priming
        self.rate_hz = rate_hz
        replay_step(rate_hz)   # refuse a rate it cannot replay at, before any trial

    async def _replay(self, device_id: str, samples: np.ndarray, ctx: FallReplayContext,
                      detector: FallDetector, end_extra_s: float) -> None:
        clock = ctx.manual_clock
        t0 = clock.monotonic() + 1.0
        for r in motion_readings(device_id, slower(samples, self.rate_hz), t0,
                                 wall0=clock.wall() + 1.0, rate_hz=self.rate_hz):
            clock.advance(r.mono - clock.monotonic())
            ctx.emit_reading(r)
            await detector.drain()
            detector.process_due()
        end = clock.monotonic() + end_extra_s
        while clock.monotonic() < end:
            clock.advance(STEP_S)
            detector.process_due()
            await detector.drain()

    async def _run(self, trials: Sequence[Trial], continuous: bool,
                   progress: Callable[[int, int], None] | None
                   ) -> tuple[list[TrialResult], list[ContinuousResult]]:
        loop = asyncio.get_running_loop()
        results: list[TrialResult] = []
        cont: list[ContinuousResult] = []
        if self.priming is None:
            self.priming = priming_segments(trials)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fall-eval") as ex:
            for i, trial in enumerate(trials):
                results.append(await self._trial(trial, loop, ex))
                if progress is not None:
                    progress(i + 1, len(trials))
            if continuous:
                for subject, adls in adls_by_subject(trials):
                    joined = await self._continuous(subject, adls, loop, ex)
                    held = await self._continuous(subject, adls, loop, ex, held_ends=True)
                    cont.append(replace(joined, held_alarms=held.alarms,
                                        held_alarm_recordings=held.alarm_recordings,
                                        held_junction_alarms=held.junction_alarms))
        return results, cont

    async def _trial(self, trial: Trial, loop: asyncio.AbstractEventLoop,
                     ex: concurrent.futures.Executor) -> TrialResult:
        ctx = FallReplayContext(loop, ex, ManualClock(mono=0.0, wall=1_764_000_000.0))
        scores: list[tuple[ScoreJob, float]] = []
        outcomes: list[Outcome] = []
        det = FallDetector(self.cfg, scorer=self.scorer, tick_s=0,
                           observer=lambda job, s, _sc: scores.append((job, s)),
                           outcome_observer=outcomes.append)
        await det.start(ctx)
        device = f"{trial.subject}-{trial.code}"
        prime = (self.priming or {}).get(trial.subject)
        if prime is not None:
            await self._replay(device, prime, ctx, det, 0.0)
        t_start = ctx.clock.monotonic() + 1.0
        await self._replay(device, pad_recording(trial.samples, self.cfg), ctx, det, 1.0)
        await det.stop()
        def mine(type_: str) -> list[Event]:
            return [e for e in ctx.events if e.type == type_ and e.mono >= t_start]

        alarms, warnings, cancels = mine("fall"), mine("fall_recovered"), mine("fall_cancelled")
        impact_t = t_start + trial.impact_index() / SAMPLE_RATE_HZ
        scores = [(job, s) for job, s in scores if job.impact_t >= t_start]
        outcomes = [o for o in outcomes if o.suspicion.job.impact_t >= t_start]
        impact_scores = [s for job, s in scores if abs(job.impact_t - impact_t) < 0.03]
        max_score = max((s for _, s in scores), default=None)
        alarm_reason = (alarms[0].data.get("confirmation") or {}).get("reason", "lying") \
            if alarms else None
        return TrialResult(
            subject=trial.subject, code=trial.code, is_fall=trial.is_fall, alarms=len(alarms),
            delay_s=(alarms[0].mono - impact_t) if alarms else None,
            max_score=max_score,
            impact_score=impact_scores[0] if impact_scores else None,
            windows=len(scores), recovered=trial.recovered, warnings=len(warnings),
            cancelled=len(cancels),
            reason=trial_reason(len(scores), max_score, self.scorer.threshold, outcomes,
                                alarm_reason, len(cancels)),
            peak_g=float(magnitude(trial.acc_g).max()) if len(trial.samples) else None,
        )

    async def _continuous(self, subject: str, adls: list[Trial],
                          loop: asyncio.AbstractEventLoop,
                          ex: concurrent.futures.Executor, *,
                          held_ends: bool = False) -> ContinuousResult:
        """One subject's daily activities as one stream; with ``held_ends`` each recording
        is followed by its final second held (:func:`pad_recording`) and ``hours`` still counts
        the recordings only."""
        ctx = FallReplayContext(loop, ex, ManualClock(mono=0.0, wall=1_764_000_000.0))
        det = FallDetector(self.cfg, scorer=self.scorer, tick_s=0)
        await det.start(ctx)
        parts = ([pad_recording(t.samples, self.cfg) for t in adls] if held_ends
                 else [t.samples for t in adls])
        samples = np.concatenate(parts)
        ends = np.cumsum([len(p) for p in parts]) / SAMPLE_RATE_HZ
        junctions = ends[:-1].tolist()
        t_start = ctx.clock.monotonic() + 1.0
        # Padded like a trial: the end of the recording is not the wearer going silent.
        await self._replay(f"{subject}-adl", samples if held_ends
                           else pad_recording(samples, self.cfg), ctx, det, 1.0)
        await det.stop()
        falls = [e for e in ctx.events if e.type == "fall"]
        impacts = [e.mono - t_start - float(e.data["delay_s"]) for e in falls]
        at_junction = sum(spans_junction(t, junctions, self.cfg) for t in impacts)
        total_s = sum(len(t.samples) for t in adls) / SAMPLE_RATE_HZ
        where = tuple(adls[min(int(np.searchsorted(ends, t, side="right")), len(adls) - 1)].code
                      for t in impacts)
        return ContinuousResult(subject, total_s / 3600.0, len(falls),
                                [e.mono - t_start for e in falls], at_junction,
                                junction_exposure_s(junctions, float(ends[-1]), self.cfg),
                                tuple(t.code for t in adls), where)

    def run(self, trials: Sequence[Trial], *, continuous: bool = True,
            progress: Callable[[int, int], None] | None = None
            ) -> tuple[list[TrialResult], list[ContinuousResult]]:
        return asyncio.run(self._run(trials, continuous, progress))

    def run_shuffled(self, trials: Sequence[Trial], orders: int, seed: int = SHUFFLE_SEED
                     ) -> list[list[ContinuousResult]]:
        """The continuous test ``orders`` more times, each subject's daily activities in a
        random order (seeded per order and subject, so reruns give the same streams)."""
        async def go() -> list[list[ContinuousResult]]:
            loop = asyncio.get_running_loop()
            out: list[list[ContinuousResult]] = []
            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fall-eval") as ex:
                for order in range(1, orders + 1):
                    streams = []
                    for subject, adls in adls_by_subject(trials):
                        key = [seed, order, *subject.encode()]
                        perm = np.random.default_rng(key).permutation(len(adls))
                        shuffled = [adls[i] for i in perm]
                        streams.append(await self._continuous(subject, shuffled, loop, ex))
                    out.append(streams)
            return out
        return asyncio.run(go())
