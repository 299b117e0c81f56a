"""One wearable's sample stream: impact gate, windows, suspicions, confirmation, episodes.

Pure state machine on the wearable's sample timeline (no I/O, no asyncio, no threads), so
the runtime, the evaluation and tests drive the very same code. The detector component
feeds it ``motion_samples`` chunks, runs the scorer for the :class:`ScoreJob` s it returns
(in the inference executor), hands the scores back, and calls :meth:`poll` as time passes.

Life of an impact: the gate finds a peak -> 2 s later the window is complete and scored
-> a score at or above the threshold opens a *suspicion* (the hub warns, cancel possible)
-> ``confirm_s`` of samples after the decision are judged for posture/stillness -> if
confirmed and not cancelled, the alarm is due ``max(confirm_s, cancel_window_s)`` after
the decision. An alarm or a cancel opens an *episode*: no new suspicion until the wearer
has been upright for ``rearm_upright_s`` (or ``episode_max_s`` passed), so one fall gives
one alarm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from agent.fall.calibration import UprightCalibration
from agent.fall.config import FallConfig
from agent.fall.confirmation import LYING_BEFORE_S, Evidence, assess, rule_for
from agent.fall.gate import ImpactGate
from agent.fall.scoring import ModelScore
from agent.fall.signal import (
    BLOCK_SAMPLES,
    POST_SAMPLES,
    PRE_SAMPLES,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    free_fall_min_g,
    gravity_reference,
    magnitude,
    tilt_deg,
)

log = logging.getLogger(__name__)

GAP_TOLERANCE_S = 0.5      # a chunk this far from where the previous one ended is a gap
STALL_GRACE_S = 2.0        # assess with what we have this long after confirm_s ran out
UPRIGHT_TILT_DEG = 30.0    # re-arm after an episode: back within this of the pre-fall pose
RATE_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class ScoreJob:
    device_id: str
    peak_index: int
    peak_g: float
    impact_t: float
    decision_index: int
    decision_t: float
    window: np.ndarray = field(repr=False)
    reference: np.ndarray = field(repr=False)
    upright: np.ndarray | None = field(default=None, repr=False)
    lying_before_s: float | None = None   # of the 5 s before the window, seconds lying


@dataclass(slots=True)
class Suspicion:
    job: ScoreJob
    score: float
    threshold: float
    detector: str = ""
    model_version: str = ""
    evidence: Evidence | None = None
    models: tuple[ModelScore, ...] = ()   # each model's own score where a pair scored


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str                # "alarm" | "recovered" (fall_recovered warning) | "rejected"
    suspicion: Suspicion


class _Resampler:
    """Streaming resampling to 50 Hz for wearables that sample at another rate.

    Above 50 Hz each input sample is first replaced by the mean of the last
    ``round(rate / 50)`` samples (the 20 ms before it), then the stream is interpolated
    linearly at 50 Hz. The training recordings were made that way: SisFall's 200 Hz as
    4-sample means and FallAllD's 238 Hz averaged over each 20 ms (../shared/README.md). So
    a short impact from a fast wearable reaches the model with the height it had in
    training, not as a point sample of its sharpest instant. At 50 Hz or below, linear
    interpolation alone."""

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._phase = 0.0
        self._tail: np.ndarray | None = None   # the last boxcar - 1 input samples
        self._rate: float | None = None

    def reset(self) -> None:
        self._prev, self._phase, self._tail, self._rate = None, 0.0, None, None

    def push(self, x: np.ndarray, rate_hz: float) -> np.ndarray:
        if rate_hz != self._rate:
            self.reset()
            self._rate = rate_hz
        k = max(1, round(rate_hz / SAMPLE_RATE_HZ))
        if k > 1:
            x = self._boxcar(x, k)
        step = rate_hz / SAMPLE_RATE_HZ
        seq = x if self._prev is None else np.vstack([self._prev[None], x])
        pos = np.arange(self._phase, len(seq) - 1 + 1e-9, step)
        self._prev = x[-1].copy()
        if len(pos) == 0:
            self._phase -= len(seq) - 1
            return np.empty((0, 3), dtype=np.float32)
        self._phase = float(pos[-1] + step - (len(seq) - 1))
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(seq) - 1)
        frac = (pos - lo)[:, None]
        return (seq[lo] * (1 - frac) + seq[hi] * frac).astype(np.float32)

    def _boxcar(self, x: np.ndarray, k: int) -> np.ndarray:
        """Each sample as the mean of it and the ``k - 1`` before it (across chunks; the
        stream's first sample stands in for the samples before it)."""
        x = np.asarray(x, dtype=np.float64)
        head = np.repeat(x[:1], k - 1, axis=0) if self._tail is None else self._tail
        seq = np.vstack([head, x])
        csum = np.vstack([np.zeros((1, 3)), np.cumsum(seq, axis=0)])
        self._tail = seq[len(seq) - (k - 1):].copy()
        return (csum[k:] - csum[:-k]) / k


class WearableStream:
    def __init__(self, device_id: str, cfg: FallConfig) -> None:
        self.device_id = device_id
        self.cfg = cfg
        self.rule = rule_for(cfg)
        self.confirm_n = round(cfg.confirm_s * SAMPLE_RATE_HZ)
        self.capacity = (WINDOW_SAMPLES + self.confirm_n
                         + int((10 + LYING_BEFORE_S) * SAMPLE_RATE_HZ))
        self._buf = np.zeros((self.capacity, 3), dtype=np.float32)
        self._n = 0                          # samples received (absolute index of the next)
        self._seg_start = 0                  # first index of the current gap-free segment
        self._seg_t0: float | None = None    # time of sample _seg_start
        self._gate = ImpactGate(cfg.gate_g)
        self._resampler = _Resampler()
        self.calibration = UprightCalibration()
        self._waiting: list[tuple[int, float]] = []   # peaks whose window is not complete
        self.suspicions: list[Suspicion] = []
        self._episode: dict[str, float | np.ndarray | None] | None = None
        self.samples_total = 0
        self.gaps = 0
        self.meta: dict[str, str] = {}       # room/role from the readings
        self._recovered_until = float("-inf")  # impacts before this: the same recovered fall

    # ---- time and buffer -------------------------------------------------------------
    def time_of(self, index: int) -> float:
        assert self._seg_t0 is not None
        return self._seg_t0 + (index - self._seg_start) / SAMPLE_RATE_HZ

    @property
    def last_t(self) -> float | None:
        return (None if self._seg_t0 is None or self._n == self._seg_start
                else self.time_of(self._n - 1))

    def _slice(self, lo: int, hi: int) -> np.ndarray:
        idx = np.arange(lo, hi) % self.capacity
        return self._buf[idx]

    def _window(self, peak: int) -> np.ndarray:
        lo = peak - PRE_SAMPLES
        oldest = max(self._seg_start, self._n - self.capacity)
        idx = np.clip(np.arange(lo, peak + POST_SAMPLES), oldest, self._n - 1)
        return self._buf[idx % self.capacity].copy()

    @property
    def in_episode(self) -> bool:
        return self._episode is not None

    @property
    def pending(self) -> bool:
        return bool(self.suspicions)

    # ---- input ----------------------------------------------------------------------
    def feed(self, acc_g: np.ndarray, t0: float, rate_hz: float,
             gap_before: bool = False) -> list[ScoreJob]:
        """Append one chunk; return the windows that are now ready to score."""
        acc = np.asarray(acc_g, dtype=np.float32).reshape(-1, 3)
        if len(acc) == 0:
            return []
        expected = None if self.last_t is None else self.last_t + 1.0 / SAMPLE_RATE_HZ
        if gap_before or expected is None or abs(t0 - expected) > GAP_TOLERANCE_S:
            self._new_segment(t0, counted=expected is not None)
        if abs(rate_hz - SAMPLE_RATE_HZ) > RATE_TOLERANCE * SAMPLE_RATE_HZ:
            acc = self._resampler.push(acc, rate_hz)
            if len(acc) == 0:
                return []
        start = self._n
        idx = np.arange(start, start + len(acc)) % self.capacity
        self._buf[idx] = acc
        self._n += len(acc)
        self.samples_total += len(acc)
        self.calibration.feed(acc)
        if self._episode is not None:
            self._track_episode(acc, self.time_of(self._n - 1))
        self._waiting.extend(self._gate.feed(magnitude(acc)))
        ready = [w for w in self._waiting if w[0] + POST_SAMPLES <= self._n]
        self._waiting = [w for w in self._waiting if w[0] + POST_SAMPLES > self._n]
        return self._jobs(ready)

    def flush_stalled(self, now: float) -> list[ScoreJob]:
        """The wearable went silent around an impact: score what we have (edge-padded)
        rather than wait for samples that may never come."""
        last = self.last_t
        if last is None or now - last < STALL_GRACE_S:
            return []
        ready = self._waiting + self._gate.flush()
        self._waiting = []
        return self._jobs(ready)

    def _jobs(self, peaks: list[tuple[int, float]]) -> list[ScoreJob]:
        if not peaks or self._episode is not None or any(
                s.evidence and s.evidence.confirmed for s in self.suspicions):
            return []  # same episode: no second alarm
        jobs = []
        upright = self.calibration.upright
        for peak, peak_g in peaks:
            window = self._window(peak)
            jobs.append(ScoreJob(
                device_id=self.device_id, peak_index=peak, peak_g=float(peak_g),
                impact_t=self.time_of(peak), decision_index=peak + POST_SAMPLES,
                decision_t=self.time_of(peak + POST_SAMPLES), window=window,
                reference=gravity_reference(window), upright=upright,
                lying_before_s=self._lying_before_s(peak, upright),
            ))
        return jobs

    def _lying_before_s(self, peak: int, upright: np.ndarray | None) -> float | None:
        """Seconds of the :data:`LYING_BEFORE_S` before the window that were lying (one-second
        blocks at ``lying_before_deg`` or more from the learnt upright); None when upright is
        not known or the stream (this segment) does not reach back that far."""
        n = round(LYING_BEFORE_S * SAMPLE_RATE_HZ)
        lo, hi = peak - PRE_SAMPLES - n, peak - PRE_SAMPLES
        if upright is None or lo < max(self._seg_start, self._n - self.capacity):
            return None
        return lying_seconds(self._slice(lo, hi), upright, self.rule.lying_before_deg)

    def _new_segment(self, t0: float, counted: bool) -> None:
        if counted:
            self.gaps += 1
            log.info("%s: gap in the motion stream, restarting windows", self.device_id)
        self._seg_start = self._n
        self._seg_t0 = t0
        self._gate.reset(self._n)
        self._resampler.reset()
        self.calibration.reset_partial()
        self._waiting.clear()

    def _track_episode(self, acc: np.ndarray, t_end: float) -> None:
        ep = self._episode
        assert ep is not None
        ref = ep["reference"]
        assert isinstance(ref, np.ndarray)
        if tilt_deg(acc.mean(axis=0), ref) < UPRIGHT_TILT_DEG:
            since = ep["upright_since"]
            if since is None:
                ep["upright_since"] = since = t_end - len(acc) / SAMPLE_RATE_HZ
            assert isinstance(since, float)
            if t_end - since >= self.cfg.rearm_upright_s:
                log.info("%s: wearer upright again, fall detection re-armed", self.device_id)
                self._episode = None
        else:
            ep["upright_since"] = None

    # ---- scores, confirmation, deadlines -------------------------------------------
    def add_score(self, job: ScoreJob, score: float, threshold: float,
                  detector: str = "", model_version: str = "",
                  models: tuple[ModelScore, ...] = ()) -> Suspicion | None:
        """A score came back from the executor; open a suspicion if it is a detection."""
        if score < threshold or self._episode is not None:
            return None
        if any(s.evidence and s.evidence.confirmed for s in self.suspicions):
            return None
        s = Suspicion(job, score, threshold, detector, model_version, models=models)
        self.suspicions.append(s)
        return s

    def _assess(self, s: Suspicion, now: float | None) -> None:
        start = s.job.decision_index
        end = start + self.confirm_n
        limit = self._n if start >= self._seg_start else self._seg_start
        oldest = max(0, self._n - self.capacity)
        if limit >= end:
            post = self._slice(max(start, oldest), end)
        elif start < self._seg_start or (
                now is not None and now >= s.job.decision_t + self.cfg.confirm_s + STALL_GRACE_S):
            post = self._slice(max(start, oldest), max(start, limit))
        else:
            return  # keep waiting for samples
        lead_lo = max(s.job.peak_index, oldest, self._seg_start)
        lead = self._slice(lead_lo, start) if lead_lo < start else None
        s.evidence = assess(post, s.job.reference, self.rule, SAMPLE_RATE_HZ, s.job.upright,
                            lead=lead, lying_before_s=s.job.lying_before_s,
                            peak_g=s.job.peak_g,
                            free_fall_min=free_fall_min_g(s.job.window))

    def poll(self, now: float) -> list[Outcome]:
        """Advance confirmations and deadlines to ``now`` (the agent's monotonic time)."""
        out: list[Outcome] = []
        for s in list(self.suspicions):
            if s.evidence is None:
                self._assess(s, now)
            if s.evidence is not None and not s.evidence.confirmed:
                self.suspicions.remove(s)
                out.append(Outcome("recovered" if self._new_recovery(s) else "rejected", s))
        confirmed = [s for s in self.suspicions if s.evidence and s.evidence.confirmed]
        if confirmed:
            first = confirmed[0]
            # Later, unconfirmed suspicions belong to the same episode.
            self.suspicions = [first]
            hold = max(self.cfg.confirm_s, self.cfg.cancel_window_s)
            if now >= first.job.decision_t + hold:
                self.suspicions = []
                self._start_episode(first, now)
                out.append(Outcome("alarm", first))
        if self._episode is not None:
            until = self._episode["until"]
            assert isinstance(until, float)
            if now >= until:
                self._episode = None
        return out

    def _new_recovery(self, s: Suspicion) -> bool:
        """A recovered fall, and not a second impact of one already reported (a fall often
        has several peaks): one ``fall_recovered`` per fall."""
        assert s.evidence is not None
        if not s.evidence.recovered:
            return False
        if s.job.impact_t < self._recovered_until:
            return False
        self._recovered_until = s.job.decision_t + self.cfg.confirm_s
        return True

    def cancel(self, now: float) -> Suspicion | None:
        """The wearer (or the hub) cancelled: drop every pending suspicion."""
        if not self.suspicions:
            return None
        first = self.suspicions[0]
        self.suspicions = []
        self._start_episode(first, now)
        return first

    def _start_episode(self, s: Suspicion, now: float) -> None:
        ref = s.job.upright if s.job.upright is not None else s.job.reference
        self._episode = {"reference": ref, "upright_since": None,
                         "until": now + self.cfg.episode_max_s}


def lying_seconds(acc: np.ndarray, upright: np.ndarray, lying_deg: float) -> float:
    """Whole seconds of ``acc`` whose one-second mean is ``lying_deg`` or more from upright."""
    n = len(acc) // BLOCK_SAMPLES
    return float(sum(tilt_deg(acc[b * BLOCK_SAMPLES:(b + 1) * BLOCK_SAMPLES].mean(axis=0),
                              upright) >= lying_deg for b in range(n)))
