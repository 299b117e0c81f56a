"""The model manifest: what a ``fall.tflite`` is, checked before it is trusted.

The agent refuses a model whose bytes do not hash to the manifest's sha256, or whose
windowing differs from the code's (a model trained on other windows would score garbage
without failing), and says why in a :class:`ModelError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.errors import ModelError
from agent.fall import signal

MANIFEST_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    name: str
    version: str
    sha256: str
    size_bytes: int
    input_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    sample_rate_hz: float
    window_samples: int
    pre_samples: int
    reference_samples: int
    decision_threshold: float
    gate_g: float
    raw: dict[str, Any]
    position_thresholds: dict[str, float] | None = None   # ``positions.<p>.decision_threshold``

    def threshold_for(self, position: str | None) -> float:
        """The decision threshold chosen for ``position`` (the manifest's single threshold for
        a model without per-position ones)."""
        if position is not None and self.position_thresholds:
            if position not in self.position_thresholds:
                raise ModelError(f"{self.path}: no threshold for position {position!r} "
                                 f"(has {', '.join(sorted(self.position_thresholds))})")
            return self.position_thresholds[position]
        return self.decision_threshold


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _get(doc: dict[str, Any], dotted: str, path: Path) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ModelError(f"{path}: manifest lacks '{dotted}'")
        node = node[part]
    return node


def load_manifest(path: Path) -> Manifest:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model manifest not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model manifest: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: model manifest is not a JSON object")
    if doc.get("format") != MANIFEST_FORMAT:
        raise ModelError(f"{path}: unsupported manifest format {doc.get('format')!r}")
    try:
        m = Manifest(
            path=path,
            name=str(_get(doc, "name", path)),
            version=str(_get(doc, "version", path)),
            sha256=str(_get(doc, "sha256", path)).lower(),
            size_bytes=int(_get(doc, "size_bytes", path)),
            input_shape=tuple(int(x) for x in _get(doc, "input.shape", path)),
            input_scale=float(_get(doc, "input.scale", path)),
            input_zero_point=int(_get(doc, "input.zero_point", path)),
            output_scale=float(_get(doc, "output.scale", path)),
            output_zero_point=int(_get(doc, "output.zero_point", path)),
            sample_rate_hz=float(_get(doc, "sample_rate_hz", path)),
            window_samples=int(_get(doc, "window.samples", path)),
            pre_samples=int(_get(doc, "window.pre_samples", path)),
            reference_samples=int(_get(doc, "window.reference_samples", path)),
            decision_threshold=float(_get(doc, "decision_threshold", path)),
            gate_g=float(_get(doc, "gate_g", path)),
            raw=doc,
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: malformed model manifest: {exc}") from None
    expected = (signal.SAMPLE_RATE_HZ, signal.WINDOW_SAMPLES, signal.PRE_SAMPLES,
                signal.REF_SAMPLES)
    if (m.sample_rate_hz, m.window_samples, m.pre_samples, m.reference_samples) != expected:
        raise ModelError(
            f"{path}: model expects {m.sample_rate_hz:g} Hz, {m.window_samples} samples "
            f"({m.pre_samples} before the peak, reference {m.reference_samples}); this agent "
            f"windows at {expected[0]:g} Hz, {expected[1]} samples ({expected[2]} before, "
            f"reference {expected[3]})"
        )
    if m.input_shape != (1, signal.WINDOW_SAMPLES, len(signal.FEATURES)):
        raise ModelError(f"{path}: unexpected input shape {m.input_shape}")
    if not 0.0 < m.decision_threshold < 1.0:
        raise ModelError(f"{path}: decision_threshold {m.decision_threshold} not in (0, 1)")
    return _with_positions(m, doc.get("positions"))


def _with_positions(m: Manifest, positions: Any) -> Manifest:
    if positions is None:
        return m
    if not isinstance(positions, dict):
        raise ModelError(f"{m.path}: manifest 'positions' is not an object")
    out: dict[str, float] = {}
    for name, entry in positions.items():
        try:
            thr = float(entry["decision_threshold"])
        except (TypeError, KeyError, ValueError):
            raise ModelError(f"{m.path}: positions.{name} lacks a decision_threshold") from None
        if not 0.0 < thr < 1.0:
            raise ModelError(f"{m.path}: positions.{name}.decision_threshold {thr} not in (0, 1)")
        out[str(name)] = thr
    return replace(m, position_thresholds=out)


def verify_model_bytes(manifest: Manifest, model: Path) -> bytes:
    """Read the model file and check it against the manifest; return its bytes."""
    try:
        data = model.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{model}: model file not found") from None
    except OSError as exc:
        raise ModelError(f"{model}: cannot read model: {exc}") from None
    # The manifest is named: a model checked against another model's manifest (eval-fall
    # --model fall-neck.tflite reads manifest.json beside it, not manifest-neck.json) fails
    # here too, and 'does not match manifest' did not say which.
    if len(data) != manifest.size_bytes:
        raise ModelError(
            f"{model}: {len(data)} bytes, {manifest.path} says {manifest.size_bytes}"
            " (truncated or replaced, or another model's manifest)"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256:
        raise ModelError(f"{model}: sha256 {digest[:12]}... does not match {manifest.path}"
                         f" ({manifest.sha256[:12]}...: another model's manifest, or the"
                         " file was replaced)")
    return data
