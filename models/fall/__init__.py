"""The shipped fall model (fall.tflite + manifest.json) and its training script."""
