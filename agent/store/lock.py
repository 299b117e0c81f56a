"""One agent per event store: an exclusive ``flock`` on a file beside the database.

Two agents on one store (a second ``run``, ``simulate --config`` or ``commission`` against
the live config) would share the store and fight the broker for the hub's client id, each
kicking the other off. SQLite's own locking only serialises their transactions; it does
not stop the fight. So the agent takes this lock before it opens the store and holds it
until it stops (for ``run``, the life of the process). The kernel drops a ``flock`` when
its holder dies, even on ``kill -9``, so a crash never leaves a stale lock to clear by hand.

The holder writes its PID (and command line) into the file, so the refusal can name it.
Readers (``status``, ``report``) do not take the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.errors import StoreInUseError

# meta key: when the store began (wall clock, synchronised), for reports' uptime coverage.
STORE_CREATED_META = "created_wall"


def lock_path_for(store_path: str | Path) -> Path:
    p = Path(store_path)
    return p.with_name(p.name + ".lock")


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


class StoreLock:
    """``acquire()`` or raise :class:`StoreInUseError` naming the holder; ``release()``."""

    def __init__(self, store_path: str | Path) -> None:
        self.path = lock_path_for(store_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, writable = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                text = os.read(fd, 4096).decode(errors="replace")
            finally:
                os.close(fd)
            raise self._in_use(text) from None
        except BaseException:
            os.close(fd)
            raise
        if writable:
            me = f"{os.getpid()}\n{_cmdline(os.getpid())}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, me, 0)
        self._fd = fd

    def _open(self) -> tuple[int, bool]:
        """The lock file, created if needed. A file the service user made and root may not
        write (or the reverse) still locks: ``flock`` needs no write access, only the PID
        note is lost. One root creates (``sudo tec-agent commission`` on a new hub) is
        handed to the owner of the store's directory, so the service can use it later."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            return fd, True
        except FileNotFoundError:
            pass
        except PermissionError:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if os.geteuid() == 0:
            st = os.stat(self.path.parent)
            with contextlib.suppress(OSError):
                os.fchown(fd, st.st_uid, st.st_gid)
        return fd, True

    def _in_use(self, text: str) -> StoreInUseError:
        first, _, rest = text.partition("\n")
        pid = int(first) if first.strip().isdigit() else None
        holder = (_cmdline(pid) if pid else "") or rest.strip()
        who = f"PID {pid}" if pid else "another process (PID unknown)"
        if holder:
            who += f": {holder}"
        store = self.path.with_name(self.path.name.removesuffix(".lock"))
        return StoreInUseError(
            f"the event store {store} is in use by another tec-agent ({who}). One agent per"
            " store: stop that one first (on a hub: sudo systemctl stop tec-agent), or give"
            " this one its own [store] path", pid=pid, holder=holder)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # opened read-only: nothing was written
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock
