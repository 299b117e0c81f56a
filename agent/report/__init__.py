"""Outcome reporting: what happened in the home and how well the hub delivered it.

``summary`` computes the figures from stored events (pure), ``records`` reads them from the
agent's SQLite store without taking part in its writes, ``daily`` is the component that
publishes a ``summary`` event every day, and ``text`` / ``html`` render a report for the
``tec-agent report`` command.
"""
