"""The shipped broker profile (packaging/mosquitto/tec-agent.conf + tec-agent.acl) on a real
mosquitto: only its paths and ports are rewritten for the test, every setting is as shipped.

Client-id takeover: hub A's credentials connecting with hub B's client id (the agent's
``tec-agent-{hub_id}``, or B's user name) must neither disconnect B nor touch B's persistent
session (its subscriptions and the commands queued in it while B is away).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.model import Priority, Reading
from agent.remote.client import BrokerUrl, SupportClient
from agent.sim.local_broker import find_mosquitto, free_port
from agent.sim.scenarios import SimSource
from tests.harness import AgentRunner, make_config, release_client, wait_until, write_pki

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "packaging" / "mosquitto"
HUB_PORT, STAFF_PORT = 8883, 8884  # as shipped
HUBS = {"hub-A": "a-pw-1", "hub-B": "b-pw-1"}
STAFF = {"support": "support-pw-1", "platform": "platform-pw-1"}


@dataclass
class Profile:
    hub_port: int
    staff_port: int | None   # None: the profile has no separate staff listener
    ca: str
    passwd: Path
    log: Path


def _passwd(path: Path, users: dict[str, str]) -> None:
    path.write_text("")
    for user, pw in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, pw], check=True,
                       capture_output=True)
    os.chmod(path, 0o600)


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[Profile]:
    binary = find_mosquitto()
    if binary is None:
        pytest.fail("mosquitto is not installed: run ./scripts/setup.sh (it apt-installs it)")
    ca, cert, key = write_pki(tmp_path / "pki")
    text = (PROFILE / "tec-agent.conf").read_text()
    hub_port, staff_port = free_port(), free_port()
    # Every path and port the profile names is rewritten; anything else is used as shipped.
    rewrites = {
        "/etc/mosquitto/certs/ca.pem": ca, "/etc/mosquitto/certs/broker.pem": cert,
        "/etc/mosquitto/certs/broker.key": key,
        "/etc/mosquitto/tec-agent.acl": str(PROFILE / "tec-agent.acl"),
        "/var/lib/mosquitto/": f"{tmp_path}/",
        f"listener {HUB_PORT}\n": f"listener {hub_port} 127.0.0.1\n",
    }
    files = {}
    for name in ("tec-agent-hubs.passwd", "tec-agent-staff.passwd", "tec-agent.passwd"):
        if f"/etc/mosquitto/{name}" in text:
            files[name] = tmp_path / name
            rewrites[f"/etc/mosquitto/{name}"] = str(tmp_path / name)
    if f"listener {STAFF_PORT}\n" in text:
        rewrites[f"listener {STAFF_PORT}\n"] = f"listener {staff_port} 127.0.0.1\n"
    else:
        staff_port = None
    for old, new in rewrites.items():
        assert old in text, f"the shipped profile no longer names {old!r}: update this test"
        text = text.replace(old, new)
    if "tec-agent-hubs.passwd" in files:       # hubs and staff in separate files
        _passwd(files["tec-agent-hubs.passwd"], HUBS)
        _passwd(files["tec-agent-staff.passwd"], STAFF)
        passwd = files["tec-agent-hubs.passwd"]
    else:                                     # one file for everyone (the old profile)
        passwd = files["tec-agent.passwd"]
        _passwd(passwd, {**HUBS, **STAFF})
    log = tmp_path / "mosquitto.log"
    text += f"\nlog_dest file {log}\nlog_type all\n"
    if os.geteuid() == 0:
        text += "user root\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: proc.poll() is not None or "running" in _read(log), timeout=10,
                   what="mosquitto to start")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        yield Profile(hub_port, staff_port, ca, passwd, log)
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class Hub:
    """A raw MQTT 5 client shaped like the agent's uplink: client id ``tec-agent-{hub_id}``
    (or whatever is given), persistent session, QoS 1 subscription to its commands."""

    def __init__(self, p: Profile, user: str, client_id: str, clean_start: bool = False,
                 port: int | None = None, subscribe: str | None = "cmd/+") -> None:
        self.user = user
        self.subscribed = 0
        self.messages: list[str] = []
        self.connacks: list[tuple[bool, str]] = []
        self.disconnects = 0
        self.cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, HUBS.get(user) or STAFF[user])
        self.c.tls_set(ca_certs=p.ca)
        self.c.reconnect_delay_set(0.05, 0.2)
        self.topic = subscribe and f"tec/v1/{'hub-B' if user in STAFF else user}/{subscribe}"
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", port or p.hub_port, 30, clean_start=clean_start,
                       properties=props)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, rc, props) -> None:
        with self.cond:
            self.connacks.append((bool(flags.session_present), str(rc)))
            self.cond.notify_all()
        if not rc.is_failure and self.topic:
            c.subscribe(self.topic, qos=1)

    def _on_subscribe(self, c, u, mid, rcs, props) -> None:
        with self.cond:
            self.subscribed += 1
            self.cond.notify_all()

    def _on_disconnect(self, c, u, flags, rc, props) -> None:
        with self.cond:
            self.disconnects += 1
            self.cond.notify_all()

    def _on_message(self, c, u, msg) -> None:
        with self.cond:
            self.messages.append(msg.payload.decode())
            self.cond.notify_all()

    def wait(self, pred, what: str, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, timeout), f"timed out waiting for {what}"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
        release_client(self.c)


def _support(p: Profile) -> SupportClient:
    client = SupportClient(BrokerUrl("127.0.0.1", p.staff_port or p.hub_port, "support", True),
                           STAFF["support"], p.ca)
    client.connect()
    return client


def _command(support: SupportClient, hub: str, body: bytes) -> None:
    support.publish(f"tec/v1/{hub}/cmd/status", body)


def _intruder(p: Profile, client_id: str) -> str:
    """Hub A's credentials with ``client_id``: connect (clean start), then leave. Returns the
    CONNACK result. The broker handles any takeover before it answers the CONNECT."""
    a = Hub(p, "hub-A", client_id, clean_start=True, subscribe=None)
    try:
        a.wait(lambda: a.connacks, "hub A's CONNACK")
        return a.connacks[0][1]
    finally:
        a.close()


def test_another_hubs_credentials_cannot_take_over_a_hubs_client_id(
        shipped_broker: Profile) -> None:
    p = shipped_broker
    support = _support(p)
    b = Hub(p, "hub-B", "tec-agent-hub-B")
    try:
        b.wait(lambda: b.subscribed, "hub B's subscription")
        # While B is connected: A's credentials with B's ids do not throw B off.
        for stolen in ("tec-agent-hub-B", "hub-B"):
            assert _intruder(p, stolen) == "Success"
            _command(support, "hub-B", f"online-{stolen}".encode())
            b.wait(lambda stolen=stolen: f"online-{stolen}" in b.messages,
                   f"B's command after {stolen}")
        assert b.disconnects == 0 and len(b.connacks) == 1
        # While B is away: its session keeps what support queued, whoever connects meanwhile.
        b.close()
        _command(support, "hub-B", b"queued-while-away")
        for stolen in ("tec-agent-hub-B", "hub-B"):
            _intruder(p, stolen)
        b = Hub(p, "hub-B", "tec-agent-hub-B")
        b.wait(lambda: b.connacks, "hub B's CONNACK on return")
        assert b.connacks[0][0] is True, "hub B's persistent session was wiped"
        b.wait(lambda: "queued-while-away" in b.messages, "the command queued for hub B")
    finally:
        b.close()
        support.close()


def test_hub_accounts_are_refused_on_the_staff_listener(shipped_broker: Profile) -> None:
    p = shipped_broker
    assert p.staff_port is not None, "the profile has no listener of its own for staff"
    a = Hub(p, "hub-A", "hub-B", clean_start=True, port=p.staff_port, subscribe=None)
    try:
        a.wait(lambda: a.connacks, "a CONNACK")
        assert a.connacks[0][1] in ("Not authorized", "Bad user name or password"), a.connacks
    finally:
        a.close()


def test_several_support_sessions_and_the_agent_work_at_once(shipped_broker: Profile,
                                                             tmp_path: Path) -> None:
    p = shipped_broker
    # Two support desks (or one person with two terminals) at the same time, each waiting
    # for hub B's answer: both stay connected and both get it.
    desks = [Hub(p, "support", f"tec-support-{i}", clean_start=True, port=p.staff_port,
                 subscribe="config/result") for i in (1, 2)]
    b = Hub(p, "hub-B", "tec-agent-hub-B", subscribe=None)
    try:
        for desk in desks:
            desk.wait(lambda d=desk: d.subscribed, "a desk's subscription")
        b.wait(lambda: b.connacks, "hub B's CONNACK")
        b.c.publish("tec/v1/hub-B/config/result", b"answer", qos=1).wait_for_publish(5)
        for desk in desks:
            desk.wait(lambda d=desk: "answer" in d.messages, "the answer at each desk")
            assert desk.disconnects == 0 and len(desk.connacks) == 1
    finally:
        for client in (*desks, b):
            client.close()
    # The real agent, with its default client id, over the hub listener.
    pw = tmp_path / "b.pass"
    pw.write_text(HUBS["hub-B"] + "\n")
    cfg = make_config(tmp_path, None, hub_id="hub-B",
                      extra=f'[mqtt]\nhost = "127.0.0.1"\nport = {p.hub_port}\n'
                            f'username = "hub-B"\npassword_file = "{pw}"\n'
                            f'tls_ca_file = "{p.ca}"\nreconnect_min_s = 0.1\n'
                            'reconnect_max_s = 1.0\n')
    assert cfg.mqtt.client_id is None      # the agent's default: tec-agent-{hub_id}
    sim = SimSource()
    with AgentRunner(cfg, components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="agent online")
        _intruder(p, "tec-agent-hub-B")
        sim.emit_from_thread([Reading("cord", "pull_cord", Priority.ALARM, {})], 0).join()
        wait_until(lambda: runner.agent.uplink.acked == 1, what="PUBACK for the alarm")
        assert runner.agent.uplink.connects == 1



def _ingest_run(p: Profile, tmp_path: Path, nosy_group: str) -> tuple[int, int]:
    """20 events from hub-A with `platform` ingesting (group tec-ingest) and `support`
    ingesting in ``nosy_group``; (platform's count, support's count)."""
    from agent.ingest.db import open_db
    from agent.ingest.ingester import Ingester
    from agent.ingest.mqtt_source import MqttSource, SourceSettings

    port = p.staff_port or p.hub_port

    def source(user: str, group: str) -> MqttSource:
        return MqttSource(SourceSettings(BrokerUrl("127.0.0.1", port, user, True), STAFF[user],
                                         f"ingest-{user}", group=group, ca_file=p.ca))

    platform, nosy = source("platform", "tec-ingest"), source("support", nosy_group)
    db = open_db(f"sqlite:///{tmp_path / 'ingest.db'}")
    nosy_db = open_db(f"sqlite:///{tmp_path / 'nosy.db'}")
    ing, nosy_ing = Ingester(platform, db), Ingester(nosy, nosy_db)
    stop = threading.Event()

    def loop(i: Ingester) -> None:
        while not stop.is_set():
            i.run_once()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in (ing, nosy_ing)]
    platform.start()
    nosy.start()
    hub = Hub(p, "hub-A", "hub-A", subscribe=None)
    for t in threads:
        t.start()
    try:
        hub.wait(lambda: hub.connacks, "the hub's CONNACK")
        for n in range(20):
            doc = {"id": f"e{n}", "hub_id": "hub-A", "seq": n, "type": "motion",
                   "priority": "info", "device_id": "pir", "ts": "2026-12-05T08:00:00.000Z",
                   "clock_synced": True, "data": {}}
            hub.c.publish("tec/v1/hub-A/event", json.dumps(doc), qos=1).wait_for_publish(5)
        # mosquitto routes a message before it sends the PUBACK, so all 20 are routed now;
        # its log (log_type all) says how many went to the platform.
        sent = sum(1 for line in _read(p.log).splitlines()
                   if "Sending PUBLISH to ingest-platform" in line and "hub-A/event" in line)
        wait_until(lambda: ing.stats.inserted == sent, 10, what=f"{sent} events stored")
        return ing.stats.inserted, nosy_ing.stats.inserted
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        hub.close()
        platform.stop()
        nosy.stop()
        db.close()
        nosy_db.close()


def test_the_ingester_works_on_the_shipped_profile(shipped_broker: Profile,
                                                   tmp_path: Path) -> None:
    """Issue 20: the `platform` account runs `tec-agent ingest` on the staff listener: the
    shipped ACL lets it take the MQTT 5 shared subscription to every hub's events and
    acknowledge them; support may not read events (personal data), shared or not."""
    assert _ingest_run(shipped_broker, tmp_path, "desk") == (20, 0)


def test_an_account_without_read_access_in_the_group_swallows_events(
        shipped_broker: Profile, tmp_path: Path) -> None:
    """What packaging/mosquitto/README.md warns about (mosquitto 2.0): any account may
    subscribe to $share/<group>/... (the ACL is checked on delivery, not on subscribe); the
    broker then hands it its turn of the events and, as it may not read them, drops them.
    Hence: a --group name known only to the ingesters."""
    platform, support = _ingest_run(shipped_broker, tmp_path, "tec-ingest")
    assert support == 0 and platform < 20, (platform, support)
