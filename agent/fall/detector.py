"""The fall detector component: wearable streams in, ``fall`` / ``fall_cancelled`` /
``fall_recovered`` out.

A detection the posture check does not confirm because the wearer was down and got up again
within ``confirm_s`` is a fall that needed no help: it raises a ``fall_recovered`` *warning*
(same evidence fields as ``fall``), so the care plan and the outcome report can count it.

Runs on the agent loop. Scoring (the TFLite model, or the threshold fallback) runs in
``ctx.executor`` (one worker) so the loop never waits on inference. The model is loaded
there too at start; if it cannot be trusted (missing, sha256 mismatch, truncated,
no interpreter) the threshold detector takes over and a ``model_unavailable`` warning says
so: a home must never lose fall detection because a file was damaged. Where the position
has a second model (the neck: :mod:`agent.fall.pair`) and that one cannot be trusted, the
shipped model runs alone and a ``model_unavailable`` warning (``model: "second"``) says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.aio import cancel_and_wait
from agent.errors import ModelError
from agent.fall.clipping import MIN_RANGE_G, WARN_BELOW_G, ClipMonitor
from agent.fall.config import FallConfig
from agent.fall.pair import PairScorer
from agent.fall.pair import load_model as load_model
from agent.fall.scoring import ModelScore, PeakThresholdScorer, Scorer
from agent.fall.signal import SAMPLE_RATE_HZ
from agent.fall.stream import RATE_TOLERANCE, Outcome, ScoreJob, Suspicion, WearableStream
from agent.model import Event, Priority, Reading
from agent.ports import AgentContext, DeviceInfo

log = logging.getLogger(__name__)

TICK_S = 0.25
MAX_IN_FLIGHT = 16
ScoreObserver = Callable[[ScoreJob, float, Scorer], None]
Scored = tuple[float, tuple[ModelScore, ...]]


def _score_job(scorer: Scorer, window: np.ndarray) -> Scored:
    """In the executor: the score, and each model's own where a pair scores."""
    if isinstance(scorer, PairScorer):
        return scorer.score_models(window)
    return scorer.score(window), ()


class FallDetector:
    name = "fall"

    def __init__(
        self,
        config: FallConfig,
        *,
        scorer: Scorer | None = None,
        model_loader: Callable[[FallConfig], Scorer] = load_model,
        observer: ScoreObserver | None = None,
        outcome_observer: Callable[[Outcome], None] | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        """``scorer`` skips loading (evaluation shares one loaded model across runs);
        ``observer`` sees every score (evaluation plots), ``outcome_observer`` every
        confirmation outcome (evaluation: why a trial raised no alarm), on the loop."""
        self.config = config
        self._scorer = scorer
        self._model_loader = model_loader
        self._observer = observer
        self._outcome_observer = outcome_observer
        self._tick_s = tick_s
        self._fallback = PeakThresholdScorer(config.baseline_peak_g)
        self._ctx: AgentContext | None = None
        self._streams: dict[str, WearableStream] = {}
        self._clipping: dict[str, ClipMonitor] = {}
        self._slow: set[str] = set()   # wearables already named for a low sample rate
        self._in_flight: set[asyncio.Future[Scored]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._prewarning = False
        self.dropped_jobs = 0
        self.model_error: str | None = None

    # ---- life cycle -----------------------------------------------------------------
    @property
    def scorer(self) -> Scorer:
        return self._scorer if self._scorer is not None else self._fallback

    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        if self._scorer is None:
            try:
                self._scorer = await ctx.loop.run_in_executor(
                    ctx.executor, self._model_loader, self.config)
            except ModelError as exc:
                self._use_fallback(str(exc))
            except Exception as exc:  # an interpreter package broken in some other way
                log.exception("unexpected error loading the fall model")
                self._use_fallback(f"unexpected error loading the model: {exc!r}")
        if isinstance(self._scorer, PairScorer) and self._scorer.error:
            self.model_error = self._scorer.error
            self._submit("model_unavailable", Priority.WARNING, "fall", {
                "component": "fall",
                "reason": self._scorer.error,
                "fallback": self._scorer.first.version,
                "model_path": self.config.model_path or "shipped",
                "model": "second",
            })
        ctx.subscribe_readings(self._on_reading)
        if self._tick_s > 0:
            self._ticker = ctx.loop.create_task(self._tick_loop(), name="fall-tick")
        log.info("fall detector started (%s %s, threshold %.3f)",
                 self.scorer.kind, self.scorer.version, self.scorer.threshold)

    async def stop(self) -> None:
        await cancel_and_wait(self._ticker)
        self._ticker = None
        await self.drain()

    @property
    def idle(self) -> bool:
        """No window being scored and no detection waiting for its confirmation or alarm
        (tests and evaluation wait for this before they count events)."""
        return not self._in_flight and not any(s.pending for s in self._streams.values())

    def devices(self) -> list[DeviceInfo]:
        return []  # the wearables belong to their driver

    async def drain(self) -> None:
        """Wait until every submitted window has been scored (evaluation pacing, stop)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    def _use_fallback(self, reason: str) -> None:
        self.model_error = reason
        self._scorer = self._fallback
        log.error("fall model unavailable, threshold detector takes over: %s", reason)
        self._submit("model_unavailable", Priority.WARNING, "fall", {
            "component": "fall",
            "reason": reason,
            "fallback": self._fallback.version,
            "model_path": self.config.model_path or "shipped",
        })

    # ---- readings -------------------------------------------------------------------
    def _watches(self, device_id: str) -> bool:
        return not self.config.wearables or device_id in self.config.wearables

    def _on_reading(self, reading: Reading) -> None:
        if reading.type == "motion_samples" and self._watches(reading.device_id):
            self._on_samples(reading)
        elif reading.type == "cancel":
            self._on_cancel(reading)

    def _on_samples(self, reading: Reading) -> None:
        assert self._ctx is not None
        data = reading.data
        try:
            acc = np.asarray(data["acc_g"], dtype=np.float32)
            rate = float(data["rate_hz"])
            t0 = float(data["t0"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: malformed motion_samples ignored: %s", reading.device_id, exc)
            return
        if acc.ndim != 2 or acc.shape[1] != 3:
            log.warning("%s: motion_samples acc_g is %s, not (n, 3): ignored",
                        reading.device_id, acc.shape)
            return
        if rate <= 0 or not np.isfinite(acc).all() or not np.isfinite(t0):
            log.warning("%s: motion_samples with bad rate or values ignored", reading.device_id)
            return
        stream = self._streams.get(reading.device_id)
        if stream is None:
            stream = self._streams[reading.device_id] = WearableStream(
                reading.device_id, self.config)
            log.info("fall detection watching wearable %s", reading.device_id)
        for key in ("room", "role"):
            if key in data:
                stream.meta[key] = str(data[key])
        self._check_range(reading.device_id, acc)
        self._check_rate(reading.device_id, rate)
        for job in stream.feed(acc, t0, rate, bool(data.get("gap_before", False))):
            self._submit_job(stream, job)
        self._handle(stream, stream.poll(self._ctx.clock.monotonic()))

    def _check_range(self, device_id: str, acc: np.ndarray) -> None:
        """One ``accelerometer_clipping`` warning per wearable whose accelerometer rails
        below ``WARN_BELOW_G`` (:mod:`agent.fall.clipping`): it hides falls."""
        clip_g = self._clipping.setdefault(device_id, ClipMonitor()).feed(acc)
        if clip_g is None:
            return
        if clip_g >= WARN_BELOW_G:
            log.info("%s: accelerometer clips at %.1f g (enough for fall detection)",
                     device_id, clip_g)
            return
        log.warning("%s: accelerometer clips at %.1f g: hard falls read softer and some are "
                    "missed; set the wearable's range to +-%.0f g or more", device_id,
                    clip_g, MIN_RANGE_G)
        self._submit("accelerometer_clipping", Priority.WARNING, device_id, {
            "component": "fall",
            "clip_g": clip_g,
            "min_range_g": MIN_RANGE_G,
            "reason": f"the accelerometer clips at {clip_g:.1f} g; fall detection was "
                      f"validated at +-{MIN_RANGE_G:.0f} g or more",
        })

    def _check_rate(self, device_id: str, rate: float) -> None:
        """One ``motion_rate_low`` warning per wearable streaming under 50 Hz: it is
        interpolated up, but its impacts are blurred (held out at 25 Hz, 251 of 283 neck
        floor falls against 274: models/fall/README.md, "Sample rate")."""
        if rate >= SAMPLE_RATE_HZ * (1 - RATE_TOLERANCE) or device_id in self._slow:
            return
        self._slow.add(device_id)
        log.warning("%s: motion stream at %.1f Hz: impacts are blurred and some falls are "
                    "missed; set the wearable to %.0f Hz or more", device_id, rate,
                    SAMPLE_RATE_HZ)
        self._submit("motion_rate_low", Priority.WARNING, device_id, {
            "component": "fall",
            "rate_hz": rate,
            "min_rate_hz": SAMPLE_RATE_HZ,
            "reason": f"the wearable streams at {rate:g} Hz; fall detection was validated "
                      f"at {SAMPLE_RATE_HZ:g} Hz",
        })

    def _submit_job(self, stream: WearableStream, job: ScoreJob) -> None:
        assert self._ctx is not None
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self.dropped_jobs += 1
            log.warning("fall inference backlog: window at %.1f dropped", job.impact_t)
            return
        scorer = self.scorer
        fut = self._ctx.loop.run_in_executor(self._ctx.executor, _score_job, scorer, job.window)
        self._in_flight.add(fut)
        fut.add_done_callback(lambda f: self._on_scored(stream, job, scorer, f))

    def _on_scored(self, stream: WearableStream, job: ScoreJob, scorer: Scorer,
                   fut: asyncio.Future[Scored]) -> None:
        self._in_flight.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            if scorer is self._fallback:  # pragma: no cover - numpy on a valid window
                log.error("threshold scorer failed: %s", exc)
                return
            self._use_fallback(f"model failed at inference: {exc}")
            self._submit_job(stream, job)
            return
        score, models = fut.result()
        score = float(score)
        if self._observer is not None:
            self._observer(job, score, scorer)
        suspicion = stream.add_score(job, score, scorer.threshold, scorer.kind, scorer.version,
                                     models)
        if suspicion is not None:
            log.warning("%s: possible fall (score %.3f, peak %.1f g), confirming",
                        stream.device_id, score, job.peak_g)
            self._update_prewarning()
        assert self._ctx is not None
        self._handle(stream, stream.poll(self._ctx.clock.monotonic()))

    def _on_cancel(self, reading: Reading) -> None:
        assert self._ctx is not None
        now = self._ctx.clock.monotonic()
        own = reading.device_id in self._streams
        for device_id, stream in self._streams.items():
            if own and device_id != reading.device_id:
                continue  # a wearable's own button cancels only its own detection
            s = stream.cancel(now)
            if s is not None:
                log.warning("%s: fall cancelled by %s", device_id, reading.device_id)
                self._submit("fall_cancelled", Priority.INFO, device_id, {
                    **self._describe(stream, s),
                    "cancelled_by": reading.device_id,
                    "pending_s": round(now - s.job.decision_t, 2),
                })
        self._update_prewarning()

    # ---- time -----------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.process_due()

    def process_due(self) -> None:
        """Run confirmations and raise due alarms (also when a wearable went silent)."""
        assert self._ctx is not None
        now = self._ctx.clock.monotonic()
        for stream in self._streams.values():
            for job in stream.flush_stalled(now):
                self._submit_job(stream, job)
            if stream.pending or stream.in_episode:
                self._handle(stream, stream.poll(now))

    def _handle(self, stream: WearableStream, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            s = o.suspicion
            if self._outcome_observer is not None:
                self._outcome_observer(o)
            if o.kind == "rejected":
                log.info("%s: possible fall not confirmed (%s)", stream.device_id,
                         s.evidence.reason if s.evidence else "?")
            elif o.kind == "recovered":
                assert self._ctx is not None
                log.warning("%s: fall, wearer got up again (score %.3f, peak %.1f g)",
                            stream.device_id, s.score, s.job.peak_g)
                self._submit("fall_recovered", Priority.WARNING, stream.device_id, {
                    **self._describe(stream, s),
                    "delay_s": round(self._ctx.clock.monotonic() - s.job.impact_t, 2),
                })
            elif o.kind == "alarm":
                assert self._ctx is not None
                log.warning("%s: FALL (score %.3f, peak %.1f g, %s)", stream.device_id,
                            s.score, s.job.peak_g, s.evidence.reason if s.evidence else "?")
                self._submit("fall", Priority.ALARM, stream.device_id, {
                    **self._describe(stream, s),
                    "delay_s": round(self._ctx.clock.monotonic() - s.job.impact_t, 2),
                })
        if outcomes:
            self._update_prewarning()

    def _describe(self, stream: WearableStream, s: Suspicion) -> dict[str, Any]:
        """The evidence of a detection. Where two models score (the neck pair), ``score`` /
        ``threshold`` are the pair's (each model's score mapped so that its own threshold is
        0.5) and ``models`` gives each model's own score, threshold and whether it passed."""
        extra: dict[str, Any] = {}
        if len(s.models) > 1:
            extra["models"] = [m.to_dict() for m in s.models]
        return {
            **stream.meta,
            "score": round(s.score, 4),
            "threshold": round(s.threshold, 4),
            "peak_g": round(s.job.peak_g, 3),
            "detector": s.detector,
            "model_version": s.model_version,
            "position": self.config.position,
            "confirmation": s.evidence.to_dict() if s.evidence else None,
            **extra,
        }

    def _update_prewarning(self) -> None:
        assert self._ctx is not None
        active = any(s.pending for s in self._streams.values())
        if active != self._prewarning:
            self._prewarning = active
            self._ctx.set_prewarning("fall", active)

    def _submit(self, type_: str, priority: Priority, device_id: str,
                data: dict[str, Any]) -> None:
        assert self._ctx is not None
        clock = self._ctx.clock
        self._ctx.submit_event(Event(
            type=type_, priority=priority, device_id=device_id, data=data,
            wall=clock.wall(), mono=clock.monotonic(), clock_synced=clock.synced(),
        ))
