"""Fall detection from a wearable's accelerometer stream.

``FallDetector`` (component) <- ``WearableStream`` (gate, windows, confirmation, episodes)
<- ``Scorer`` (the int8 TFLite model, or the Bourke 2007 threshold fallback).
"""

from agent.fall.config import FallConfig

__all__ = ["FallConfig"]
