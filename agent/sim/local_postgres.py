"""A private PostgreSQL server on a free loopback port, for tests and benchmarks.

The same server binaries as production (Debian's ``postgresql`` package), started with
``initdb`` + ``pg_ctl`` on a temporary data directory: nothing is shared with a system
cluster. PostgreSQL refuses to run as root, so when started as root the server runs as the
``postgres`` account the package creates (the data directory is made in ``/tmp``, which that
account can reach, and given to it). Authentication is ``trust`` on 127.0.0.1 only: a test
server, never a service's.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from agent.errors import AgentError
from agent.sim.local_broker import free_port

SUPERUSER = "tec"


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has ``initdb`` (Debian keeps the
    server binaries off ``$PATH``), or ``initdb`` on ``$PATH``."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if dirs:
        return Path(dirs[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class LocalPostgres:
    """``with LocalPostgres() as pg: pg.url("db")`` gives ``postgresql://tec@127.0.0.1:PORT/db``."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tec-pg-"))
        self.data = self.dir / "data"
        self.log_file = self.dir / "postgres.log"
        self._user: str | None = None
        self.bin: Path | None = None

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        assert self.bin is not None
        res = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True,
                             text=True, timeout=timeout, user=self._user)
        if res.returncode != 0:
            raise AgentError(f"{args[0]} failed ({res.returncode}): "
                             f"{(res.stderr or res.stdout).strip()[-800:]}")

    def start(self, timeout: float = 30.0) -> LocalPostgres:
        self.bin = find_pg_bin()
        if self.bin is None:
            raise AgentError("PostgreSQL server binaries not found (apt-get install postgresql)")
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise AgentError("running as root and there is no 'postgres' account to run "
                                 "the server as (Debian's postgresql package creates it)") from None
            self._user = "postgres"
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--no-sync", "--no-instructions")
        return self._start_server(timeout)

    def _start_server(self, timeout: float) -> LocalPostgres:
        opts = (f"-h {self.host} -p {self.port} -k {self.dir} -c fsync=on "
                "-c max_connections=50 -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-o", opts,
                  "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise AgentError(f"PostgreSQL did not listen on {self.host}:{self.port}")

    def stop_now(self) -> None:
        """Stop at once (``-m immediate``), data kept: :meth:`start_again` brings it back."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def start_again(self, timeout: float = 30.0) -> None:
        self._start_server(timeout)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A fresh database ``name`` (one per test keeps tests apart on one server)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.bin is not None and (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            except (AgentError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
