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
        from systemd import daemon  # type: ignore[attr-defined,unused-ignore]  # no stubs

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
    """Replaces known secret strings in every log record (defence in depth).

    The message and any exception text are both redacted (a traceback repeats the
    exception's message, which is where a rejected key tends to turn up), and matching
    ignores case: a hex key configured in upper case would otherwise leak when some
    library prints ``key.hex()``.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._pattern: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: list[str]) -> None:
        """Replace the secrets to redact (a new config may bring new ones)."""
        parts = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = (re.compile("|".join(re.escape(s) for s in parts), re.IGNORECASE)
                         if parts else None)

    def filter(self, record: logging.LogRecord) -> bool:
        pattern = self._pattern
        if pattern is None:
            return True
        msg = record.getMessage()
        if pattern.search(msg):
            record.msg = pattern.sub("***", msg)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and pattern.search(record.exc_text):
            record.exc_text = pattern.sub("***", record.exc_text)
            record.exc_info = None  # journald would store its str() beside the text
        return True


def update_log_secrets(secrets: list[str]) -> None:
    """Give every :class:`RedactFilter` on the root logger's handlers new ``secrets`` (after
    a config swap: a remotely pushed bindkey must be redacted from then on)."""
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, RedactFilter):
                f.set_secrets(secrets)


def setup_logging(level: str = "INFO", secrets: list[str] | None = None) -> None:
    """journald when started by systemd with our stderr on the journal, else stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler

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
