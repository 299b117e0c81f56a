"""The int8 TensorFlow Lite export of the fall model and its manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from agent.fall.config import FallConfig
from agent.fall.confirmation import (
    LAY_DOWN_POSITIONS,
    LYING_BEFORE_S,
    RECOVERED_UPRIGHT_POSITIONS,
    STILL_AFTER_POSITIONS,
)
from agent.fall.signal import (
    FEATURES,
    INPUT_TRANSFORM,
    PEAK_RADIUS,
    POST_SAMPLES,
    PRE_SAMPLES,
    REF_SAMPLES,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
)

HERE = Path(__file__).resolve().parent
MODEL_NAME = "fall-cnn"
MODEL_MAJOR = 2


def to_int8(model: Any, rep: np.ndarray) -> bytes:
    import tensorflow as tf

    def representative() -> Any:
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def manifest_for(tflite: bytes, threshold: float, cfg: FallConfig, extra: dict[str, Any]
                 ) -> dict[str, Any]:
    """``extra`` may hold ``positions`` {position: {decision_threshold, ...}}: the runtime
    takes the threshold of its configured position."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    sha = hashlib.sha256(tflite).hexdigest()
    return {
        "format": 1,
        "name": MODEL_NAME,
        "version": f"{MODEL_MAJOR}.0+{sha[:8]}",
        "file": "fall.tflite",
        "sha256": sha,
        "size_bytes": len(tflite),
        "input": {
            "shape": [int(x) for x in inp["shape"]],
            "dtype": "int8",
            "scale": float(inp["quantization"][0]),
            "zero_point": int(inp["quantization"][1]),
            "features": list(FEATURES),
            "transform": INPUT_TRANSFORM,
            "reference": "unit mean acceleration over the first 1 s of the window",
        },
        "output": {
            "dtype": "int8",
            "scale": float(out["quantization"][0]),
            "zero_point": int(out["quantization"][1]),
            "meaning": "probability that the window holds a fall impact",
        },
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "window": {
            "samples": WINDOW_SAMPLES,
            "pre_samples": PRE_SAMPLES,
            "post_samples": POST_SAMPLES,
            "reference_samples": REF_SAMPLES,
            "stride": "event-driven: one window per impact-gate peak",
            "peak_radius_samples": PEAK_RADIUS,
        },
        "gate_g": cfg.gate_g,
        "decision_threshold": threshold,
        "confirmation": {"confirm_s": cfg.confirm_s, "lying_tilt_deg": cfg.lying_tilt_deg,
                         "slumped_tilt_deg": cfg.slumped_tilt_deg, "still_g": cfg.still_g,
                         "lying_before_deg": cfg.lying_before_deg,
                         "lying_before_s": LYING_BEFORE_S,
                         "already_lying_max_g": cfg.already_lying_max_g,
                         "lay_down_max_g": cfg.lay_down_max_g, "free_fall_g": cfg.free_fall_g,
                         "lay_down_positions": list(LAY_DOWN_POSITIONS),
                         "reclined_still_g": cfg.reclined_still_g,
                         "reclined_tilt_deg": cfg.reclined_tilt_deg,
                         "still_after_positions": list(STILL_AFTER_POSITIONS),
                         "recovered_upright_deg": cfg.recovered_upright_deg,
                         "recovered_upright_positions": list(RECOVERED_UPRIGHT_POSITIONS)},
        **extra,
    }


def write_model(out_dir: Path, tflite: bytes, manifest: dict[str, Any],
                model_file: str = "fall.tflite", manifest_file: str = "manifest.json") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest["file"] = model_file
    (out_dir / model_file).write_bytes(tflite)
    (out_dir / manifest_file).write_text(json.dumps(manifest, indent=2) + "\n")


def second_model_files(position: str) -> tuple[str, str]:
    """The second model of a position (``train --second-model``): its model and manifest
    file names beside the shipped ``fall.tflite`` / ``manifest.json``."""
    return f"fall-{position}.tflite", f"manifest-{position}.json"


def register_second_model(main_manifest: Path, position: str, manifest: dict[str, Any]
                          ) -> None:
    """Name the second model of ``position`` in the shipped manifest
    (``positions.<position>.second_model``: file, manifest, sha256, size, version, threshold,
    what it was trained on, the rule): the runtime checks the file against this sha256 before
    it pairs the two (agent/fall/pair.py)."""
    doc = json.loads(main_manifest.read_text())
    entry = doc.get("positions", {}).get(position)
    if entry is None:
        raise SystemExit(f"{main_manifest}: no positions.{position} to pair a model with")
    model_file, manifest_file = second_model_files(position)
    entry["second_model"] = {
        "file": model_file, "manifest": manifest_file, "sha256": manifest["sha256"],
        "size_bytes": manifest["size_bytes"], "version": manifest["version"],
        "decision_threshold": manifest["positions"][position]["decision_threshold"],
        "trained_on": [f"{d['name']}:{d['position']}" for d in manifest["data"]["sets"]],
        "rule": "either: a detection when either model's score reaches its own threshold",
    }
    main_manifest.write_text(json.dumps(doc, indent=2) + "\n")


def code_version() -> dict[str, Any]:
    import tensorflow as tf

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "train_py_sha256": hashlib.sha256((HERE / "train.py").read_bytes()).hexdigest(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
    }
