"""One error hierarchy for the agent.

Each class also inherits the builtin it is closest to, so callers that only know
the standard library (``except ValueError``) still catch it (as gpiozero does).
"""


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    """A configuration file or document is invalid.

    ``problems`` holds one human-readable line per problem, each naming the key path.
    """

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = list(problems)
        super().__init__("; ".join(self.problems))


class StoreError(AgentError, OSError):
    """The durable event store cannot do what was asked."""


class StoreWriteError(StoreError):
    """Alarms or warnings could not be committed. ``rows`` are the events not stored,
    serialised with the seqs they were given (:class:`agent.store.PendingEvent`), so they
    can still be sent."""

    def __init__(self, message: str, rows: list | None = None) -> None:
        super().__init__(message)
        self.rows: list = list(rows or [])


class StoreFullError(StoreWriteError):
    """The disk is full and nothing more could be freed for alarms and warnings."""


class StoreLockedError(StoreError):
    """Another process holds the store's database; it was waited on and left untouched."""


class DriverError(AgentError, OSError):
    """A hardware driver failed (missing device, bad port, unreadable pin)."""


class UplinkError(AgentError, ConnectionError):
    """A broker connection failed in a way the caller must hear about (the ingester's
    start: refused, or unreachable within its timeout)."""


class DecodeError(AgentError, ValueError):
    """Bytes from a device could not be decoded (serial frame, BLE payload)."""


class ModelError(AgentError, RuntimeError):
    """An inference model is missing, corrupt or does not match its manifest."""


class StoreInUseError(StoreLockedError):
    """Another agent process holds the store's lock file (one agent per store).

    ``pid`` is the holder's process id when it could be read (else ``None``), ``holder``
    its command line when readable."""

    def __init__(self, message: str, pid: int | None = None, holder: str = "") -> None:
        super().__init__(message)
        self.pid = pid
        self.holder = holder
