"""Inactivity, night-time and wandering detection from the home's own sensors.

``InactivityDetector`` (component) drives a pure ``RulesEngine`` over readings and time;
``tec-agent eval-inactivity`` replays a recorded home through the same objects.
"""

from agent.inactivity.config import InactivityConfig
from agent.inactivity.detector import InactivityDetector

__all__ = ["InactivityConfig", "InactivityDetector"]
