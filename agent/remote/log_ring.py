"""The last few thousand log lines in memory, for the ``log_tail`` command.

Support asks "why is this hub unhappy" long after the event; journald is on the hub but
not reachable from the support desk. A bounded deque of formatted lines costs a few
hundred kilobytes and no disk writes (SD cards wear). Secrets are replaced twice: when a
line is recorded (the secrets known then) and again when it is read (in case a secret
was configured later, e.g. by a remote push).
"""

from __future__ import annotations

import collections
import logging
import re
import threading


def _pattern(secrets: list[str]) -> re.Pattern[str] | None:
    parts = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in parts)) if parts else None


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The formatted line is kept on the record for the next LogRing: the fleet simulator runs
# 1,000 agents in one process, each with its ring on the root logger, and formatting every
# record 1,000 times cost 8 ms a record (a RabbitMQ failover's ~15,000 warnings held the
# hubs' loop for minutes). Each ring still applies its own secrets.
_LINE_ATTR = "_tec_log_ring_line"


class LogRing(logging.Handler):
    """A logging handler keeping the last ``capacity`` formatted records, secrets redacted."""

    def __init__(self, capacity: int, secrets: list[str] | None = None) -> None:
        super().__init__(logging.DEBUG)
        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=capacity)
        self._guard = threading.Lock()  # records arrive from driver and paho threads
        self._secrets = _pattern(secrets or [])
        self._own_formatter = logging.Formatter(_FORMAT)
        self.setFormatter(self._own_formatter)

    def resize(self, capacity: int) -> None:
        with self._guard:
            self._lines = collections.deque(self._lines, maxlen=capacity)

    def set_secrets(self, secrets: list[str]) -> None:
        self._secrets = _pattern(secrets)

    def emit(self, record: logging.LogRecord) -> None:
        shared = self.formatter is self._own_formatter
        line = record.__dict__.get(_LINE_ATTR) if shared else None
        if line is None:
            try:
                line = self.format(record)
            except Exception:  # never let logging break the caller
                self.handleError(record)
                return
            if shared:
                record.__dict__[_LINE_ATTR] = line
        pattern = self._secrets
        if pattern is not None:
            line = pattern.sub("***", line)
        with self._guard:
            self._lines.append((record.levelno, line))

    def tail(self, n: int, min_level: int = logging.NOTSET) -> list[str]:
        with self._guard:
            lines = [line for level, line in self._lines if level >= min_level]
        pattern = self._secrets
        if pattern is not None:
            lines = [pattern.sub("***", ln) for ln in lines]
        return lines[-n:] if n > 0 else []
