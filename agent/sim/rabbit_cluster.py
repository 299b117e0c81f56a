"""A private RabbitMQ cluster on loopback (Debian's ``rabbitmq-server``), for the fleet test.

Three (or ``size``) nodes in one temporary directory: each its own node name, AMQP port,
distribution port, MQTT listener, Mnesia and log directories; one Erlang cookie and a private
epmd port for all of them, so nothing here meets a system RabbitMQ or another engineer's
nodes. Nodes 2.. join node 1 (``rabbitmqctl join_cluster``). The MQTT plugin is configured
as ``packaging/brokers/rabbitmq/rabbitmq.conf`` says (3.1.1 only, no anonymous login,
``subscription_ttl`` above a day).

In front of the cluster, :class:`FirstAlive` is the load balancer a service puts there
(HAProxy or a cloud LB): one port, each new connection forwarded to the first node that
accepts it, in order. Hubs connect through it, so after their node is killed they reconnect
to the next one, as they would in production.

It is a real broker, not a mock; it is not used by the test suite unless
``rabbitmq-server`` is installed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from agent.errors import AgentError
from agent.sim.local_broker import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def find_rabbitmq() -> Path | None:
    """The rabbitmq-server start script (Debian's package), or None."""
    server = RABBIT_BIN / "rabbitmq-server"
    return server if server.exists() else None


class Node:
    def __init__(self, cluster: RabbitCluster, n: int) -> None:
        self.n = n
        self.name = f"tec{cluster.tag}r{n}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.mqtt_port = free_port()
        self.dir = cluster.dir / f"node{n}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def os_pid(self) -> int | None:
        pid_file = self.dir / "pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


class RabbitCluster:
    """``with RabbitCluster(3) as c: ...``: ``c.nodes[i].mqtt_port``, ``c.username``,
    ``c.password_file``, ``c.kill(i)``, ``c.start_node(i)``, ``c.ctl(i, ...)``."""

    def __init__(self, size: int = 3, workdir: str | Path | None = None,
                 subscription_ttl_ms: int = 1209600000,
                 mirror_policy: str | None = None) -> None:
        if find_rabbitmq() is None:
            raise AgentError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.tag = secrets.token_hex(2)
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tec-rabbit-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.epmd_port = free_port()
        self.cookie = secrets.token_hex(16)
        self.username = "hub"
        self.password = secrets.token_urlsafe(12)
        self.password_file = self.dir / "hub.pass"
        self.subscription_ttl_ms = subscription_ttl_ms
        self.mirror_policy = mirror_policy
        self.nodes = [Node(self, n) for n in range(1, size + 1)]
        self._epmd: subprocess.Popen[bytes] | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {**keep, "HOME": str(self.dir), "ERL_EPMD_PORT": str(self.epmd_port),
                "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

    def _write_node(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        conf = node.dir / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}\n"
            "mqtt.allow_anonymous = false\n"
            "mqtt.vhost = /\nmqtt.exchange = amq.topic\n"
            f"mqtt.subscription_ttl = {self.subscription_ttl_ms}\n"
            "mqtt.prefetch = 100\n"
            "loopback_users = none\n"
            "log.console = false\nlog.file.level = info\n")
        (node.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        node.env = {
            **self._base_env(),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.dir / "log"),
            "RABBITMQ_PID_FILE": str(node.dir / "pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.dir / "advanced.config"),
        }

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(self.cookie)
        os.chmod(cookie, 0o400)
        self.password_file.write_text(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self._epmd = subprocess.Popen([epmd, "-port", str(self.epmd_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for node in self.nodes:
                self._write_node(node)
                self.start_node(node.n - 1, timeout)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                self.ctl(node.n - 1, "stop_app")
                self.ctl(node.n - 1, "join_cluster", first.name)
                self.ctl(node.n - 1, "start_app")
            self.ctl(0, "add_user", self.username, self.password)
            self.ctl(0, "set_permissions", "-p", "/", self.username, ".*", ".*", ".*")
            if self.mirror_policy:
                self.ctl(0, "set_policy", "-p", "/", "--apply-to", "queues", "tec-mqtt-ha",
                         "^mqtt-subscription-", self.mirror_policy)
            for node in self.nodes:
                self._wait_mqtt(node, timeout)
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, i: int, timeout: float = 120.0) -> None:
        node = self.nodes[i]
        with open(node.dir / "stdout.log", "ab") as out:
            node.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=node.env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         cwd=node.dir, start_new_session=True)
        # ``wait PIDFILE`` waits for the node to write its pid file and then to boot.
        self.ctl(i, "wait", str(node.dir / "pid"), "--timeout", str(int(timeout)),
                 timeout=timeout + 10)

    def _wait_mqtt(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", node.mqtt_port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AgentError(f"node {node.name}: no MQTT listener on "
                                     f"{node.mqtt_port} within {timeout:g} s") from None
                time.sleep(0.2)

    def ctl(self, i: int, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl -n NODE args`` against node ``i`` (0-based); its stdout."""
        node = self.nodes[i]
        res = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
                             env=node.env or self._base_env(), capture_output=True,
                             text=True, timeout=timeout)
        if res.returncode != 0:
            raise AgentError(f"rabbitmqctl {' '.join(args[:2])} on {node.name}: "
                             f"{(res.stderr or res.stdout).strip()[-500:]}")
        return res.stdout

    # -- faults and tear-down -------------------------------------------------------------------
    def kill(self, i: int) -> None:
        """``kill -9`` node ``i``'s Erlang VM (and what its start script left)."""
        node = self.nodes[i]
        pid = node.os_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(30)
            node.proc = None

    def stop_node(self, i: int) -> None:
        node = self.nodes[i]
        if node.proc is None:
            return
        with contextlib.suppress(AgentError, subprocess.TimeoutExpired):
            self.ctl(i, "stop", timeout=60)
        self.kill(i)

    def close(self) -> None:
        for i in reversed(range(len(self.nodes))):
            self.stop_node(i)
        if self._epmd is not None:
            self._epmd.kill()
            self._epmd.wait(10)
            self._epmd = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class FirstAlive:
    """A TCP load balancer on one loopback port: each new connection goes to the first of
    ``backends`` that accepts it. Threads, two per connection: fine for a test fleet."""

    def __init__(self, backends: list[int], port: int | None = None) -> None:
        self.backends = backends
        self.port = port or free_port()
        self._srv = socket.create_server(("127.0.0.1", self.port), backlog=4096)
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="first-alive")
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.forwarded: dict[int, int] = {p: 0 for p in backends}

    def start(self) -> FirstAlive:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        for port in self.backends:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2.0)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
                self.forwarded[port] += 1
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            self._pipe(client, upstream)
            return
        client.close()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def close(self) -> None:
        self._closing = True
        self._srv.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
