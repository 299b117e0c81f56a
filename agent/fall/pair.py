"""Two models at one position: the shipped model and a second model, "either" rule.

At the neck the shipped model (trained on both data sets and both positions) and a
neck-only model miss different falls; held out (leave-persons-out), a detection when
*either* reaches its own threshold finds 274/283 floor falls against 268/283 for the
shipped model alone, for one false alarm more (models/fall/README.md, "Step 7"). The
shipped manifest names the second model of a position in
``positions.<position>.second_model`` (file, manifest, sha256, size, threshold); the file
is checked against that sha256 (and against its own manifest) before the two are paired.

A second model that is missing or fails its check never stops the agent and never goes
unnoticed: the pair runs on the shipped model alone (:attr:`PairScorer.error` says why,
the detector raises ``model_unavailable`` and ``check-config`` warns).

The pair is one :class:`agent.fall.scoring.Scorer`: each model's score is mapped
piecewise-linearly so that its own threshold lands on 0.5 and the larger counts against
0.5 (the same scorer :mod:`models.fall.pair_replay` evaluated, held out).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.fall.config import FallConfig
from agent.fall.manifest import load_manifest, verify_model_bytes
from agent.fall.scoring import ModelScore
from agent.fall.tflite_model import TfliteFallModel, model_paths

log = logging.getLogger(__name__)

PAIR_THRESHOLD = 0.5


def calibrated(score: float, threshold: float) -> float:
    """``score`` mapped so that ``threshold`` lands on 0.5 (monotonic, 0 -> 0, 1 -> 1)."""
    if score < threshold:
        return 0.5 * score / threshold
    return 0.5 + 0.5 * (score - threshold) / max(1e-9, 1.0 - threshold)


@dataclass(frozen=True, slots=True)
class SecondModel:
    """``positions.<position>.second_model`` of the shipped manifest, paths resolved."""

    position: str
    model_path: Path
    manifest_path: Path
    sha256: str
    size_bytes: int


def second_model_entry(manifest_path: Path, position: str) -> SecondModel | None:
    """The second model the manifest names for ``position`` (None: the position has one
    model). Raises :class:`ModelError` for a malformed entry."""
    raw = load_manifest(manifest_path).raw
    entry = (raw.get("positions") or {}).get(position, {}).get("second_model")
    if entry is None:
        return None
    try:
        base = manifest_path.parent
        return SecondModel(position, base / str(entry["file"]), base / str(entry["manifest"]),
                           str(entry["sha256"]).lower(), int(entry["size_bytes"]))
    except (TypeError, KeyError, ValueError):
        raise ModelError(f"{manifest_path}: positions.{position}.second_model is malformed "
                         "(needs file, manifest, sha256, size_bytes)") from None


def check_second_model(spec: SecondModel) -> None:
    """The second model's bytes against the shipped manifest's sha256 and size, and against
    its own manifest (no interpreter needed: ``check-config`` runs this)."""
    own = load_manifest(spec.manifest_path)
    if (own.sha256, own.size_bytes) != (spec.sha256, spec.size_bytes):
        raise ModelError(f"{spec.manifest_path}: names sha256 {own.sha256[:12]}... "
                         f"({own.size_bytes} bytes), the shipped manifest's second model is "
                         f"{spec.sha256[:12]}... ({spec.size_bytes} bytes)")
    verify_model_bytes(own, spec.model_path)


def second_model_problem(cfg: FallConfig) -> str | None:
    """Why the configured position's second model cannot be used (None: it can, or the
    position has none, or ``second_model = false`` switches it off). For ``check-config``;
    the primary model is not checked here."""
    if not cfg.second_model:
        return None
    try:
        spec = second_model_entry(model_paths(cfg.model_path, cfg.manifest_path)[1], cfg.position)
        if spec is not None:
            check_second_model(spec)
    except ModelError as exc:
        return str(exc)
    return None


def models_summary(cfg: FallConfig) -> str:
    """One line for ``check-config``: the position and the model file(s) that would score
    (what the configuration asks for; whether the second file passes its check is
    :func:`second_model_problem`'s warning)."""
    model, manifest = model_paths(cfg.model_path, cfg.manifest_path)
    head = f"position {cfg.position}, model {model.name}"
    try:
        spec = second_model_entry(manifest, cfg.position)
    except ModelError:
        spec = None
    if spec is None:
        return head
    if not cfg.second_model:
        return (f"{head} alone (second_model = false: {spec.model_path.name} is not run, "
                "which held out finds fewer falls)")
    return f"{head} + {spec.model_path.name} (either over its own threshold)"


class PairScorer:
    """The shipped model and (when it loaded) the second model of the position. With no
    second model it scores exactly as the first alone (its raw score and threshold)."""

    kind = "model"

    def __init__(self, first: TfliteFallModel, second: TfliteFallModel | None,
                 error: str | None = None) -> None:
        self.first, self.second, self.error = first, second, error
        if second is None:
            self.threshold = first.threshold
            self.version = first.version
        else:
            self.threshold = PAIR_THRESHOLD
            self.version = f"{first.version}|{second.version}"
        # what eval-fall reports about the model it ran
        self.manifest = first.manifest
        self.model_path = first.model_path
        self.interpreter_package = first.interpreter_package

    def score_models(self, window: np.ndarray) -> tuple[float, tuple[ModelScore, ...]]:
        """The pair's score and each model's own score against its own threshold."""
        a = self.first.score(window)
        parts = [ModelScore("shipped", self.first.version, a, self.first.threshold)]
        if self.second is None:
            return a, tuple(parts)
        b = self.second.score(window)
        parts.append(ModelScore("second", self.second.version, b, self.second.threshold))
        return (max(calibrated(a, self.first.threshold), calibrated(b, self.second.threshold)),
                tuple(parts))

    def score(self, window: np.ndarray) -> float:
        return self.score_models(window)[0]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": "either", "first": self.first.version,
                               "first_threshold": self.first.threshold}
        if self.second is not None:
            out.update(second=self.second.version, second_threshold=self.second.threshold,
                       second_path=str(self.second.model_path))
        if self.error:
            out["error"] = self.error
        return out


def load_model(cfg: FallConfig) -> TfliteFallModel | PairScorer:
    """The configured (or shipped) model for ``cfg.position``, paired with the second model
    the manifest names for that position. Raises :class:`ModelError` only when the *first*
    model is unusable (the detector then falls back to the threshold detector); a broken
    second model gives a :class:`PairScorer` running the first alone, with ``error`` set.
    ``second_model = false``: the first model alone, the manifest's entry not even read (an
    operator's choice, not a fault: no ``model_unavailable``)."""
    first = TfliteFallModel(cfg.model_path, cfg.manifest_path, interpreter=cfg.interpreter,
                            threshold=cfg.threshold, position=cfg.position)
    if not cfg.second_model:
        return first
    try:
        spec = second_model_entry(first.manifest_path, cfg.position)
        if spec is None:
            return first
        check_second_model(spec)
        second = TfliteFallModel(spec.model_path, spec.manifest_path,
                                 interpreter=cfg.interpreter, position=cfg.position)
    except ModelError as exc:
        reason = f"second model at the {cfg.position} unusable, the shipped model runs alone: {exc}"
        log.error("%s", reason)
        return PairScorer(first, None, reason)
    return PairScorer(first, second)

