"""The learned fall scorer: a full-integer int8 TFLite model, checked against its manifest.

``tflite_runtime`` is tried first (it has armv7l and aarch64 wheels for Raspberry Pi OS);
``ai_edge_litert`` (its successor, aarch64/x86_64 only) is the fallback. Any failure to
load (missing file, sha256 mismatch, truncated or corrupt flatbuffer, no interpreter
package, shape mismatch) is one :class:`ModelError` naming the cause; the detector then
falls back to the threshold detector and says so with a ``model_unavailable`` event.
"""

from __future__ import annotations

import importlib
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.fall.manifest import Manifest, load_manifest, verify_model_bytes
from agent.fall.signal import model_input

log = logging.getLogger(__name__)

INTERPRETER_PACKAGES = ("tflite_runtime", "ai_edge_litert")


def shipped_model_paths() -> tuple[Path, Path]:
    """The ``fall.tflite`` and ``manifest.json`` shipped inside the package."""
    base = Path(str(resources.files("models.fall")))
    return base / "fall.tflite", base / "manifest.json"


def model_paths(model_path: Path | str | None = None,
                manifest_path: Path | str | None = None) -> tuple[Path, Path]:
    """The model file and manifest to load: as given; a model's manifest beside it; else
    the shipped pair (:func:`shipped_model_paths`)."""
    shipped_model, shipped_manifest = shipped_model_paths()
    model = Path(model_path) if model_path is not None else shipped_model
    if manifest_path is not None:
        return model, Path(manifest_path)
    if model_path is not None:
        return model, model.with_name("manifest.json")
    return model, shipped_manifest


def interpreter_class(choice: str = "auto") -> tuple[Any, str]:
    """(Interpreter class, package name) for ``auto`` or an explicit package."""
    names = INTERPRETER_PACKAGES if choice == "auto" else (choice,)
    errors = []
    for name in names:
        if name not in INTERPRETER_PACKAGES:
            raise ModelError(f"unknown interpreter package {name!r}")
        try:
            module = importlib.import_module(f"{name}.interpreter")
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return module.Interpreter, name
    raise ModelError("no TFLite interpreter available (" + "; ".join(errors) + ")")


class TfliteFallModel:
    """Loads, verifies and runs the model. ``score`` is not thread-safe: call it from the
    single inference worker only."""

    kind = "model"

    def __init__(
        self,
        model_path: Path | str | None = None,
        manifest_path: Path | str | None = None,
        *,
        interpreter: str = "auto",
        threshold: float | None = None,
        position: str | None = None,
    ) -> None:
        """``position`` picks the manifest's threshold for where the wearable is worn;
        ``threshold`` overrides it."""
        self.model_path, self.manifest_path = model_paths(model_path, manifest_path)
        self.manifest: Manifest = load_manifest(self.manifest_path)
        content = verify_model_bytes(self.manifest, self.model_path)
        cls, self.interpreter_package = interpreter_class(interpreter)
        try:
            self._interp = cls(model_content=content, num_threads=1)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.model_path}: cannot load model: {exc}") from None
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        shape = tuple(int(x) for x in inp["shape"])
        if shape != self.manifest.input_shape or inp["dtype"] != np.int8:
            raise ModelError(
                f"{self.model_path}: input {shape} {inp['dtype']} does not match manifest "
                f"{self.manifest.input_shape} int8"
            )
        q_in, q_out = inp["quantization"], out["quantization"]
        if not (np.isclose(q_in[0], self.manifest.input_scale)
                and int(q_in[1]) == self.manifest.input_zero_point
                and np.isclose(q_out[0], self.manifest.output_scale)
                and int(q_out[1]) == self.manifest.output_zero_point):
            raise ModelError(f"{self.model_path}: quantisation differs from the manifest")
        self._in_index = inp["index"]
        self._out_index = out["index"]
        self._in_scale, self._in_zp = float(q_in[0]), int(q_in[1])
        self._out_scale, self._out_zp = float(q_out[0]), int(q_out[1])
        self.position = position
        self.threshold = float(threshold if threshold is not None
                               else self.manifest.threshold_for(position))
        self.version = self.manifest.version
        try:  # a flatbuffer that loads but cannot run is still a broken model
            self.score(np.tile(np.array([0.0, -1.0, 0.0], dtype=np.float32),
                               (shape[1], 1)))
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.model_path}: model does not run: {exc}") from None
        log.info("fall model %s loaded with %s (threshold %.3f)",
                 self.version, self.interpreter_package, self.threshold)

    def quantize(self, features: np.ndarray) -> np.ndarray:
        q = np.round(features / self._in_scale) + self._in_zp
        return np.clip(q, -128, 127).astype(np.int8)[np.newaxis]

    def score(self, window: np.ndarray) -> float:
        self._interp.set_tensor(self._in_index, self.quantize(model_input(window)))
        self._interp.invoke()
        q = int(self._interp.get_tensor(self._out_index).reshape(-1)[0])
        return float(np.clip((q - self._out_zp) * self._out_scale, 0.0, 1.0))
