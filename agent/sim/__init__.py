"""Simulated hardware and scenarios for demos, tests and benchmarks."""
