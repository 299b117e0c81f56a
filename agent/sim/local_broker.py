"""A private mosquitto on a free loopback port, with a password file, for demos and tests.

It is a real broker (the same binary as production), not a mock. Settings follow
``shared/README.md``: ``max_queued_messages 0`` (the default of 1000 silently drops QoS 1
messages for a slow subscriber), ``user root`` only when started as root.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from agent.errors import AgentError


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """``with LocalBroker() as b: ...`` gives ``b.host``, ``b.port``, ``b.username``,
    ``b.password`` and ``b.password_file``. ``port`` may be fixed to restart on the same one."""

    def __init__(
        self,
        port: int | None = None,
        workdir: str | Path | None = None,
        username: str = "hub",
        acl_file: str | Path | None = None,
        extra_users: dict[str, str] | None = None,
        persistence: bool = False,
        tls_files: tuple[str, str, str] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tec-broker-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = secrets.token_urlsafe(12)
        self.users = {username: self.password, **(extra_users or {})}
        self.password_file = self.dir / "agent.pass"
        self.acl_file = acl_file
        self.persistence = persistence
        self.tls_files = tls_files  # (CA, server certificate, server key): a TLS listener
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.dir / "mosquitto.log"

    def _write_files(self) -> Path:
        binary = find_mosquitto()
        if binary is None:
            raise AgentError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.password_file.write_text(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        passwd = self.dir / "mosquitto.passwd"
        passwd.write_text("")
        for user, pw in self.users.items():
            subprocess.run(
                [shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
                 "-b", str(passwd), user, pw],
                check=True, capture_output=True,
            )
        os.chmod(passwd, 0o600)
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous false",
            f"password_file {passwd}",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
        ]
        if self.tls_files:
            ca, cert, key = self.tls_files
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}",
                      "tls_version tlsv1.2"]
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if os.geteuid() == 0:
            lines.append("user root")
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> LocalBroker:
        conf = self._write_files()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AgentError(f"mosquitto exited at start: {err.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise AgentError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
