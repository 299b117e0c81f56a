"""Signal geometry shared by training, the runtime and the evaluation (pure numpy).

Everything that turns accelerometer samples into model input lives here, so the model
sees exactly what it was trained on. The features do not depend on how the wearable is
mounted: the reference "down" is the mean acceleration over the first second of the
window (before the impact), and each sample is described by its magnitude, its component
along that reference and its component across it.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 50.0
PRE_SAMPLES = 100          # window starts 2 s before the impact peak
POST_SAMPLES = 100         # ... and ends 2 s after it (the decision time)
WINDOW_SAMPLES = PRE_SAMPLES + POST_SAMPLES
REF_SAMPLES = 50           # first 1 s of the window (two steps): the pre-event orientation
PEAK_RADIUS = 50           # an impact peak is the largest |a| within +-1 s
BLOCK_SAMPLES = 50         # confirmation looks at one-second blocks
FREE_FALL_SMOOTH = 5       # samples averaged for the free-fall dip (0.1 s)
FEATURES = ("magnitude", "along_reference", "across_reference")
INPUT_TRANSFORM = "sign(x)*log2(1+|x|), x in g"


def magnitude(acc: np.ndarray) -> np.ndarray:
    """|a| per sample, in g, for an (n, 3) array."""
    return np.sqrt(np.einsum("ij,ij->i", acc, acc, dtype=np.float64)).astype(np.float32)


def unit(vec: np.ndarray) -> np.ndarray:
    """``vec`` scaled to length 1; straight down (-y) if it has no length (free fall)."""
    norm = float(np.linalg.norm(vec))
    if norm < 1e-3:
        return np.array([0.0, -1.0, 0.0], dtype=np.float32)
    return (vec / norm).astype(np.float32)


def gravity_reference(window: np.ndarray) -> np.ndarray:
    """Unit vector of the pre-event orientation: mean of the window's first second."""
    return unit(window[:REF_SAMPLES].mean(axis=0))


def model_input(window: np.ndarray) -> np.ndarray:
    """(WINDOW_SAMPLES, 3) float32 model features for a window of raw acceleration in g.

    The log compression keeps resolution near 1 g (posture) while impacts up to the
    sensor's 16 g still fit the int8 input range.
    """
    if window.shape != (WINDOW_SAMPLES, 3):
        raise ValueError(f"window must be ({WINDOW_SAMPLES}, 3), got {window.shape}")
    acc = window.astype(np.float32)
    ref = gravity_reference(acc)
    along = acc @ ref
    across = np.linalg.norm(acc - np.outer(along, ref), axis=1)
    feats = np.stack([magnitude(acc), along, across], axis=1)
    return (np.sign(feats) * np.log2(1.0 + np.abs(feats))).astype(np.float32)


def free_fall_min_g(window: np.ndarray) -> float:
    """Lowest |a| (mean of 5 samples, 0.1 s) in the second before the window's peak: a fall
    drops towards 0 g before it lands; lying down on purpose keeps the body supported."""
    mag = magnitude(window.astype(np.float32))
    smooth = np.convolve(mag, np.ones(FREE_FALL_SMOOTH) / FREE_FALL_SMOOTH, mode="same")
    return float(smooth[PRE_SAMPLES - REF_SAMPLES:PRE_SAMPLES].min())


def tilt_deg(vec: np.ndarray, ref: np.ndarray) -> float:
    """Angle in degrees between a mean acceleration vector and the reference orientation."""
    u = unit(vec)
    return float(np.degrees(np.arccos(np.clip(float(u @ ref), -1.0, 1.0))))


def window_at(acc: np.ndarray, peak: int) -> np.ndarray:
    """The model window around ``peak`` in a whole recording, edge-padded at its ends."""
    lo, hi = peak - PRE_SAMPLES, peak + POST_SAMPLES
    if lo >= 0 and hi <= len(acc):
        return acc[lo:hi]
    idx = np.clip(np.arange(lo, hi), 0, len(acc) - 1)
    return acc[idx]
