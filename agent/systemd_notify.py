"""sd_notify and journald glue. Harmless outside systemd."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not under systemd."""
    try:
        from systemd import daemon  # type: ignore[import-not-found,attr-defined]

        return bool(daemon.notify(state))
    except ImportError:
        pass
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), addr)
        return True
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False


def watchdog_interval_s() -> float | None:
    """Half the systemd watchdog period, or None when no watchdog is armed for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.1)
    except ValueError:
        return None


class RedactFilter(logging.Filter):
    """Replaces known secret strings in every log record (defence in depth)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in secrets if s)) if any(secrets) else None
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        msg = record.getMessage()
        if self._pattern.search(msg):
            record.msg = self._pattern.sub("***", msg)
            record.args = None
        return True


def setup_logging(level: str = "INFO", secrets: list[str] | None = None) -> None:
    """journald when started by systemd with our stderr on the journal, else stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            handler = JournalHandler(SYSLOG_IDENTIFIER="tec-agent")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter(secrets or []))
    root.addHandler(handler)
    root.setLevel(level)
