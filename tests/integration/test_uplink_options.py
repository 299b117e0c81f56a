"""Uplink options end to end: MQTT 3.1.1, TLS with a CA file, bad credentials."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from agent.model import Priority, Reading
from agent.sim.scenarios import SimSource
from tests.harness import AgentRunner, TestBroker, make_config, wait_until, write_pki


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


def test_tls_with_ca_file_and_password(tmp_path: Path) -> None:
    tls = write_pki(tmp_path / "pki")
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
    tls = write_pki(tmp_path / "pki")
    other = write_pki(tmp_path / "other-pki")
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
