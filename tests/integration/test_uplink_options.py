"""Uplink options end to end: MQTT 3.1.1, TLS with a CA file, bad credentials."""

from __future__ import annotations

import datetime
import ipaddress
import time
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.model import Priority, Reading
from agent.sim.scenarios import SimSource
from tests.harness import AgentRunner, TestBroker, make_config, wait_until


def _send_alarm(broker: TestBroker, cfg) -> dict:
    events = broker.subscribe("tec/v1/hub-test/event")
    sim = SimSource()
    with AgentRunner(cfg, components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        sim.emit_from_thread([Reading("cord", "pull_cord", Priority.ALARM, {})], 0).join()
        got = events.wait_events(1)
        wait_until(lambda: runner.agent.state.backlog == 0, what="acknowledged")
    return got[0]


def test_mqtt_311_is_selectable(tmp_path: Path, mqtt_broker) -> None:
    cfg = make_config(tmp_path, mqtt_broker)
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, protocol="3.1.1"))
    ev = _send_alarm(mqtt_broker, cfg)
    assert ev["type"] == "pull_cord" and ev["seq"] == 1


def _write_pki(d: Path) -> tuple[str, str, str]:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tec test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(paths[0]), str(paths[1]), str(paths[2])


def test_tls_with_ca_file_and_password(tmp_path: Path) -> None:
    tls = _write_pki(tmp_path / "pki")
    broker = TestBroker(tmp_path / "tls-broker", tls_files=tls)
    broker.start()
    try:
        cfg = make_config(tmp_path, broker)
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, tls_ca_file=tls[0]))
        sim = SimSource()
        with AgentRunner(cfg, components=[sim]) as runner:
            wait_until(lambda: runner.agent.state.online, what="online over TLS")
            sim.emit_from_thread([Reading("cord", "pull_cord", Priority.ALARM, {})], 0).join()
            wait_until(lambda: runner.agent.uplink.acked == 1, what="PUBACK over TLS")
            wait_until(lambda: runner.agent.state.backlog == 0, what="backlog empty")
    finally:
        broker.close()


def test_tls_with_wrong_ca_never_connects_and_keeps_the_event(tmp_path: Path) -> None:
    tls = _write_pki(tmp_path / "pki")
    other = _write_pki(tmp_path / "other-pki")
    broker = TestBroker(tmp_path / "tls-broker", tls_files=tls)
    broker.start()
    try:
        cfg = make_config(tmp_path, broker)
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, tls_ca_file=other[0]))
        sim = SimSource()
        with AgentRunner(cfg, components=[sim]) as runner:
            sim.emit_from_thread([Reading("cord", "pull_cord", Priority.ALARM, {})], 0).join()
            wait_until(lambda: runner.agent.stats["stored"] == 1, what="stored")
            wait_until(lambda: runner.agent.uplink.connects == 0 and not runner.agent.state.online,
                       timeout=2, what="still offline")
            assert runner.agent.state.backlog == 1
    finally:
        broker.close()


def test_wrong_password_stays_offline_and_buffers(tmp_path: Path, mqtt_broker) -> None:
    bad = tmp_path / "bad.pass"
    bad.write_text("not-the-password\n")
    cfg = make_config(tmp_path, mqtt_broker)
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, password_file=str(bad)))
    sim = SimSource()
    with AgentRunner(cfg, components=[sim]) as runner:
        sim.emit_from_thread([Reading("cord", "pull_cord", Priority.ALARM, {})], 0).join()
        wait_until(lambda: runner.agent.stats["stored"] == 1, what="stored")
        time.sleep(1.0)  # several connection attempts, each refused
        assert not runner.agent.state.online and runner.agent.state.backlog == 1
