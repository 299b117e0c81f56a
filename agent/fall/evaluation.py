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

A hub learns which way is up for a wearable from the wearer's walking
(:mod:`agent.fall.calibration`). Isolated trials have no such history, so each trial is
preceded by the first 20 s of the same subject's walking trial (D01, else D02) and a gap,
exactly as a hub would have seen the wearer walk at some time before; alarms are counted
from the trial's start only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.clock import ManualClock
from agent.fall.config import FallConfig
from agent.fall.dataset import Trial
from agent.fall.detector import FallDetector
from agent.fall.replay import motion_readings
from agent.fall.scoring import Scorer
from agent.fall.signal import (
    BLOCK_SAMPLES,
    POST_SAMPLES,
    PRE_SAMPLES,
    SAMPLE_RATE_HZ,
    magnitude,
)
from agent.fall.stream import STALL_GRACE_S, ScoreJob
from agent.offline import OfflineContext

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


def priming_segments(trials: Sequence[Trial]) -> dict[str, np.ndarray]:
    """Per subject: the first :data:`PRIMING_S` of their walking (D01, else D02)."""
    out: dict[str, np.ndarray] = {}
    for code in ("D02", "D01"):  # D01 wins
        for t in trials:
            if t.activity == code and t.code.endswith("_R01"):
                out[t.subject] = t.samples[:int(PRIMING_S * SAMPLE_RATE_HZ)]
    return out


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

    @property
    def detected(self) -> bool:
        return self.alarms > 0


@dataclass
class ContinuousResult:
    subject: str
    hours: float
    alarms: int
    alarm_times_s: list[float] = field(default_factory=list)
    junction_alarms: int = 0       # alarms whose window or confirmation spans a junction
    junction_exposure_s: float = 0.0  # seconds in which an impact would span one
    recordings: tuple[str, ...] = ()  # the trial codes, in the order they were joined


SHUFFLE_SEED = 20261126


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


class Evaluator:
    """Runs trials through fresh detectors sharing one loaded scorer and one worker."""

    def __init__(self, scorer: Scorer, cfg: FallConfig | None = None,
                 priming: dict[str, np.ndarray] | None = None) -> None:
        """``priming``: walking per subject replayed before each trial (default: taken
        from the trials themselves, see :func:`priming_segments`)."""
        self.scorer = scorer
        self.cfg = cfg or FallConfig()
        self.priming = priming

    async def _replay(self, device_id: str, samples: np.ndarray, ctx: FallReplayContext,
                      detector: FallDetector, end_extra_s: float) -> None:
        clock = ctx.manual_clock
        t0 = clock.monotonic() + 1.0
        for r in motion_readings(device_id, samples, t0, wall0=clock.wall() + 1.0):
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
                    cont.append(await self._continuous(subject, adls, loop, ex))
        return results, cont

    async def _trial(self, trial: Trial, loop: asyncio.AbstractEventLoop,
                     ex: concurrent.futures.Executor) -> TrialResult:
        ctx = FallReplayContext(loop, ex, ManualClock(mono=0.0, wall=1_764_000_000.0))
        scores: list[tuple[ScoreJob, float]] = []
        det = FallDetector(self.cfg, scorer=self.scorer, tick_s=0,
                           observer=lambda job, s, _sc: scores.append((job, s)))
        await det.start(ctx)
        device = f"{trial.subject}-{trial.code}"
        prime = (self.priming or {}).get(trial.subject)
        if prime is not None:
            await self._replay(device, prime, ctx, det, 0.0)
        t_start = ctx.clock.monotonic() + 1.0
        await self._replay(device, pad_recording(trial.samples, self.cfg), ctx, det, 1.0)
        await det.stop()
        alarms = [e for e in ctx.events if e.type == "fall" and e.mono >= t_start]
        impact_t = t_start + trial.impact_index() / SAMPLE_RATE_HZ
        impact_scores = [s for job, s in scores if abs(job.impact_t - impact_t) < 0.03]
        return TrialResult(
            subject=trial.subject, code=trial.code, is_fall=trial.is_fall, alarms=len(alarms),
            delay_s=(alarms[0].mono - impact_t) if alarms else None,
            max_score=max((s for _, s in scores), default=None),
            impact_score=impact_scores[0] if impact_scores else None,
            windows=len(scores),
        )

    async def _continuous(self, subject: str, adls: list[Trial],
                          loop: asyncio.AbstractEventLoop,
                          ex: concurrent.futures.Executor) -> ContinuousResult:
        ctx = FallReplayContext(loop, ex, ManualClock(mono=0.0, wall=1_764_000_000.0))
        det = FallDetector(self.cfg, scorer=self.scorer, tick_s=0)
        await det.start(ctx)
        samples = np.concatenate([t.samples for t in adls])
        junctions = np.cumsum([len(t.samples) for t in adls])[:-1] / SAMPLE_RATE_HZ
        t_start = ctx.clock.monotonic() + 1.0
        # Padded like a trial: the end of the recording is not the wearer going silent.
        await self._replay(f"{subject}-adl", pad_recording(samples, self.cfg), ctx, det, 1.0)
        await det.stop()
        falls = [e for e in ctx.events if e.type == "fall"]
        at_junction = sum(spans_junction(e.mono - t_start - float(e.data["delay_s"]),
                                         junctions, self.cfg) for e in falls)
        total_s = len(samples) / SAMPLE_RATE_HZ
        return ContinuousResult(subject, total_s / 3600.0, len(falls),
                                [e.mono - t_start for e in falls], at_junction,
                                junction_exposure_s(junctions, total_s, self.cfg),
                                tuple(t.code for t in adls))

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


def adls_by_subject(trials: Sequence[Trial]) -> list[tuple[str, list[Trial]]]:
    """Each subject's daily-activity trials, in order: the continuous test's streams."""
    by_subject: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        if not t.is_fall:
            by_subject[t.subject].append(t)
    return sorted(by_subject.items())


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _figures(falls: int, adls: int, tp: int, fp: int, cont_alarms: int, hours: float
             ) -> dict[str, Any]:
    """Trial-level and continuous figures from the counts (every detector's summary)."""
    fn, tn = falls - tp, adls - fp
    return {
        "falls": falls,
        "adls": adls,
        "sensitivity": _ratio(tp, falls),
        "specificity": _ratio(tn, adls),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "false_alarms_per_hour": round(cont_alarms / hours, 4) if hours else None,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "continuous_hours": round(hours, 3),
        "continuous_false_alarms": cont_alarms,
        "false_alarms_per_24h": round(24 * cont_alarms / hours, 3) if hours else None,
    }


def summarize(results: Sequence[TrialResult], cont: Sequence[ContinuousResult]) -> dict[str, Any]:
    """The figures ``tec-agent eval-fall`` prints (one detector)."""
    falls = [r for r in results if r.is_fall]
    adls = [r for r in results if not r.is_fall]
    delays = [r.delay_s for r in falls if r.delay_s is not None]
    per_subject: dict[str, dict[str, Any]] = {}
    for subject in sorted({r.subject for r in results}):
        rs = [r for r in results if r.subject == subject]
        sf = [r for r in rs if r.is_fall]
        sa = [r for r in rs if not r.is_fall]
        c = [x for x in cont if x.subject == subject]
        per_subject[subject] = {
            "trials": len(rs), "falls": len(sf), "adls": len(sa),
            "sensitivity": _ratio(sum(r.detected for r in sf), len(sf)),
            "specificity": _ratio(sum(not r.detected for r in sa), len(sa)),
            "missed": [r.code for r in sf if not r.detected],
            "false_alarms": [r.code for r in sa if r.detected],
            "continuous_false_alarms": sum(x.alarms for x in c),
        }
    return {
        "trials": len(results),
        **_figures(len(falls), len(adls), sum(r.detected for r in falls),
                   sum(r.detected for r in adls), sum(c.alarms for c in cont),
                   sum(c.hours for c in cont)),
        "continuous_false_alarms_at_junctions": sum(c.junction_alarms for c in cont),
        "continuous_junction_exposure": _ratio(
            round(sum(c.junction_exposure_s for c in cont)),
            round(sum(c.hours for c in cont) * 3600)),
        "detection_delay_s_p50": round(float(np.median(delays)), 2) if delays else None,
        "per_subject": per_subject,
    }


def shuffled_summary(orders: Sequence[Sequence[ContinuousResult]],
                     seed: int = SHUFFLE_SEED) -> dict[str, Any]:
    """Figures of :meth:`Evaluator.run_shuffled`: false alarms per order and overall."""
    hours = sum(c.hours for streams in orders for c in streams)
    alarms = [sum(c.alarms for c in streams) for streams in orders]
    return {
        "orders": len(orders),
        "seed": seed,
        "hours_per_order": round(hours / len(orders), 3) if orders else 0.0,
        "false_alarms": alarms,
        "false_alarms_at_junctions": [sum(c.junction_alarms for c in streams)
                                      for streams in orders],
        "junction_exposure": _ratio(
            round(sum(c.junction_exposure_s for streams in orders for c in streams)),
            round(hours * 3600)),
        "false_alarms_per_24h": round(24 * sum(alarms) / hours, 3) if hours else None,
    }


PUBLISHED_REFRACTORY_S = 60.0


def published_threshold_summary(trials: Sequence[Trial], peak_g: float) -> dict[str, Any]:
    """The threshold detector exactly as published (Bourke et al. 2007): a fall whenever the
    resultant acceleration reaches the upper fall threshold, with no posture or stillness
    check. Computed on the raw recordings (it has no other state): a trial is detected when
    any sample reaches ``peak_g``; in the continuous test crossings closer than
    :data:`PUBLISHED_REFRACTORY_S` count as one alarm. ``baseline`` in the eval-fall output is
    the same threshold run through the hub's path (gate, confirmation, episodes), which is
    what the agent falls back to."""
    mags = {t.key: magnitude(t.acc_g) for t in trials}
    falls = [t for t in trials if t.is_fall]
    adls = [t for t in trials if not t.is_fall]
    alarms, seconds = 0, 0.0
    gap = int(PUBLISHED_REFRACTORY_S * SAMPLE_RATE_HZ)
    for _subject, stream in adls_by_subject(adls):
        m = np.concatenate([mags[t.key] for t in stream])
        seconds += len(m) / SAMPLE_RATE_HZ
        above = np.flatnonzero(m >= peak_g)
        if len(above):
            alarms += 1 + int(np.count_nonzero(np.diff(above) > gap))
    return {
        "detector": f"bourke2007-uft-{peak_g:g}g, as published (no posture check)",
        "trials": len(trials),
        **_figures(len(falls), len(adls), sum(bool(mags[t.key].max() >= peak_g) for t in falls),
                   sum(bool(mags[t.key].max() >= peak_g) for t in adls), alarms,
                   seconds / 3600.0),
    }
