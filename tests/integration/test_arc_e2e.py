"""The ARC path end to end: MockFactory pull cord -> the real agent -> SIA DC-09 over TCP/UDP
-> pysiaalarm as the receiving centre (and MQTT to a real mosquitto in parallel)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import Hardware
from agent.arc.component import ArcComponent
from tests.arc_receiver import ACCOUNT, KEY_HEX, ArcReceiver, free_port
from tests.harness import AgentRunner, agent_cmd, make_config, wait_until, write_config_file

GPIO = """
[gpio]
pin_factory = "mock"

[[gpio.devices]]
id = "hall-motion"
kind = "pir"
pin = 17

[[gpio.devices]]
id = "cord-bathroom"
kind = "pull_cord"
pin = 27
room = "bathroom"
bounce_s = 0.0

[[gpio.devices]]
id = "status-led"
kind = "led"
pin = 24
"""


def arc_section(receivers: list[tuple[str, int]], protocol: str = "tcp",
                key_file: Path | None = None, supervision_s: float = 0,
                timeout_s: float = 1.0, retries: int = 2) -> str:
    text = (f'[arc]\naccount = "{ACCOUNT}"\nsupervision_s = {int(supervision_s)}\n'
            f"timeout_s = {timeout_s}\nretries = {retries}\nretry_max_s = 1.0\n")
    for host, port in receivers:
        text += (f'[[arc.receivers]]\nhost = "{host}"\nport = {port}\n'
                 f'protocol = "{protocol}"\n')
        if key_file is not None:
            text += f'key_file = "{key_file}"\n'
    return text


def pull(factory: MockFactory) -> None:
    cord = factory.pin(27)
    cord.drive_low()
    cord.drive_high()


def arc_rows(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT type, state, attempts, receiver, latency_ms FROM arc_delivery"
                          " ORDER BY wall").fetchall()


def _arc(runner: AgentRunner) -> ArcComponent:
    return next(c for c in runner.agent.components if isinstance(c, ArcComponent))


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes128"])
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_pull_cord_reaches_the_arc_as_adm_cid(tmp_path: Path, mqtt_broker, protocol: str,
                                              encrypted: bool) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    receiver = ArcReceiver(protocol, encrypted=encrypted).start()
    key_file = None
    if encrypted:
        key_file = tmp_path / "arc.key"
        key_file.write_text(KEY_HEX + "\n")
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", receiver.port)], protocol, key_file))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
            wait_until(lambda: runner.agent.state.online, what="online")
            pull(factory)
            wait_until(lambda: receiver.alarms(), what="alarm at the ARC")
            alarm = receiver.alarms()[0]
            assert alarm.message_type.value == "ADM-CID"
            assert alarm.account == ACCOUNT
            assert (alarm.event_qualifier, alarm.event_type, alarm.ri) == ("1", "101", "002")
            assert alarm.code == "QA"                  # pysiaalarm: emergency alarm
            assert alarm.encrypted is encrypted
            events.wait_for(lambda ms: any(e["type"] == "pull_cord" for e in events.events()),
                            what="alarm on MQTT too")
            wait_until(lambda: arc_rows(tmp_path / "events.db")
                       and arc_rows(tmp_path / "events.db")[0][1] == "acked", what="ARC ack stored")
            # A second pull: the connection is open now, so its first frame leaves before
            # the commit's fsync (send_early); still one message at the ARC, acked once.
            pull(factory)
            wait_until(lambda: len(receiver.alarms()) == 2, what="second alarm at the ARC")
            wait_until(lambda: [r[1] for r in arc_rows(tmp_path / "events.db")]
                       == ["acked", "acked"], what="both acked")
            assert runner.call(lambda: _arc(runner).transmitter.sent_early) == 1
            # the motion sensor's telemetry/info never goes to the ARC
            factory.pin(17).drive_high()
            events.wait_for(lambda ms: any(e["device_id"] == "hall-motion"
                                           for e in events.events()), what="motion")
        rows = arc_rows(tmp_path / "events.db")
        assert [r[:2] for r in rows] == [("pull_cord", "acked")] * 2
        assert [r[2] for r in rows] == [1, 1]                     # one attempt each
        assert rows[0][3] == f"{protocol}://127.0.0.1:{receiver.port}" and rows[0][4] > 0
        assert len(receiver.alarms()) == 2
    finally:
        receiver.close()


def test_primary_down_goes_to_the_backup(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    backup = ArcReceiver("tcp").start()
    dead_port = free_port()                                  # nothing listens there
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", dead_port), ("127.0.0.1", backup.port)], retries=2))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
            wait_until(lambda: runner.agent.state.online, what="online")
            pull(factory)
            wait_until(lambda: backup.alarms(), what="alarm at the backup")
            assert backup.alarms()[0].event_type == "101"
            down = events.wait_for(lambda ms: [e for e in events.events()
                                               if e["type"] == "arc_path_down"],
                                   what="arc_path_down")[0]
            assert down["priority"] == "warning"
            assert down["data"]["receiver"] == f"tcp://127.0.0.1:{dead_port}"
            wait_until(lambda: "arc_path_down" in runner.agent.state.conditions,
                       what="state shows it")
        rows = arc_rows(tmp_path / "events.db")
        assert rows[0][1] == "acked" and rows[0][2] == 3     # 2 on the primary, 1 on the backup
        assert rows[0][3] == f"tcp://127.0.0.1:{backup.port}"
        # `report` shows the ARC delivery latency from the stored acknowledgement
        conf = write_config_file(tmp_path, mqtt_broker)
        out = subprocess.run(agent_cmd("report", "--config", str(conf), "--days", "1"),
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert "ARC delivery:        1 acknowledged by the ARC; latency median" in out
        doc = json.loads(subprocess.run(
            agent_cmd("report", "--config", str(conf), "--days", "1", "--json"),
            capture_output=True, text=True, timeout=60, check=True).stdout)
        arc = doc["total"]["arc_delivery"]
        assert (arc["acked"], arc["pending"], arc["latency_ms"]["count"]) == (1, 0, 1)
        assert arc["latency_ms"]["median"] == pytest.approx(rows[0][4], abs=0.1)
        html = tmp_path / "report.html"
        subprocess.run(agent_cmd("report", "--config", str(conf), "--days", "1", "--html",
                                 str(html)), capture_output=True, timeout=60, check=True)
        assert "ARC delivery: 1 acknowledged by the ARC; latency median" in html.read_text()
    finally:
        backup.close()


def test_restart_mid_retry_delivers_once_acknowledged(tmp_path: Path, mqtt_broker) -> None:
    receiver = ArcReceiver("tcp")                            # down at first
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", receiver.port)], timeout_s=0.5, retries=1))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
            wait_until(lambda: runner.agent.state.online, what="online")
            pull(factory)
            wait_until(lambda: (rows := arc_rows(tmp_path / "events.db")) and rows[0][2] >= 2,
                       what="retrying")
        assert arc_rows(tmp_path / "events.db")[0][1] == "pending"
        # `status` tells support what waits for the ARC
        conf = write_config_file(tmp_path, mqtt_broker, GPIO + arc_section(
            [("127.0.0.1", receiver.port)], timeout_s=0.5, retries=1))
        out = subprocess.run(agent_cmd("status", "--config", str(conf)), capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert "ARC: 1 waiting for the ARC's acknowledgement (oldest" in out
        doc = json.loads(subprocess.run(agent_cmd("status", "--config", str(conf), "--json"),
                                        capture_output=True, text=True, timeout=60,
                                        check=True).stdout)
        assert doc["arc"]["pending"] == 1 and doc["arc"]["most_attempts"] >= 2
        receiver.start()
        with AgentRunner(cfg, Hardware(pin_factory=MockFactory())):
            wait_until(lambda: arc_rows(tmp_path / "events.db")[0][1] == "acked",
                       what="acknowledged after the restart")
            wait_until(lambda: receiver.alarms(), what="at the ARC")
        assert len(receiver.alarms()) == 1 and receiver.alarms()[0].event_type == "101"
        assert len(arc_rows(tmp_path / "events.db")) == 1
        # Its latency is unknown (the first run's monotonic time is gone), not the few ms
        # from the second run's queue to the ACK: the alarm waited through both runs.
        assert arc_rows(tmp_path / "events.db")[0][4] is None
        report = json.loads(subprocess.run(
            agent_cmd("report", "--config", str(conf), "--days", "1", "--json"),
            capture_output=True, text=True, timeout=60, check=True).stdout)
        arc = report["total"]["arc_delivery"]
        assert (arc["acked"], arc["latency_ms"]["count"], arc["latency_unknown"]) == (1, 0, 1)
        text = subprocess.run(agent_cmd("report", "--config", str(conf), "--days", "1"),
                              capture_output=True, text=True, timeout=60, check=True).stdout
        assert "1 acknowledged by the ARC; latency unknown for 1: sent again after a restart" \
            in text
        out = subprocess.run(agent_cmd("status", "--config", str(conf)), capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert "(sent again after a restart: latency unknown)" in out
        # DC-09 sequence numbers go on from the block the first run reserved (0001-0100)
        assert int(receiver.alarms()[0].sequence) > 100
    finally:
        receiver.close()


def test_null_supervision_timeout_is_arc_path_down_then_up(tmp_path: Path,
                                                          mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    receiver = ArcReceiver("udp").start()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", receiver.port)], "udp", supervision_s=1, timeout_s=0.3, retries=1))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=MockFactory())) as runner:
            wait_until(lambda: receiver.nulls() >= 1, what="first NULL")
            assert "arc_path_down" not in runner.agent.state.conditions
            receiver.stop()
            down = events.wait_for(lambda ms: [e for e in events.events()
                                               if e["type"] == "arc_path_down"],
                                   what="arc_path_down")[0]
            assert "NULL" in down["data"]["reason"]
            wait_until(lambda: "arc_path_down" in runner.agent.state.conditions, what="LED state")
            receiver.start()
            events.wait_for(lambda ms: any(e["type"] == "arc_path_up"
                                           for e in events.events()), what="arc_path_up")
            wait_until(lambda: "arc_path_down" not in runner.agent.state.conditions,
                       what="LED state clears")
            assert _arc(runner).transmitter is not None
    finally:
        receiver.close()


def test_commissioning_test_alarm_goes_through_the_arc(tmp_path: Path, mqtt_broker) -> None:
    from agent.commission import Commissioning, CommissionOptions

    receiver = ArcReceiver("tcp").start()
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section([("127.0.0.1", receiver.port)]))
    lines: list[str] = []
    try:
        com = Commissioning(cfg, Hardware(pin_factory=factory), out=lines.append,
                            options=CommissionOptions(walk_timeout_s=1, ack_timeout_s=10,
                                                      skip={"hall-motion": "no one home",
                                                            "cord-bathroom": "tested by ARC"},
                                                      allow_untested=("cord-bathroom",)))
        result = asyncio.run(com.run())
        text = "\n".join(lines)
        assert result.ok, text
        assert "acknowledged by the ARC (tcp://127.0.0.1:" in text
        assert "Contact ID 601" in text and result.test_arc_ack_ms is not None
        tests = [e for e in receiver.alarms() if e.event_type == "601"]
        assert len(tests) == 1 and tests[0].code == "RX"          # pysiaalarm: manual test
    finally:
        receiver.close()


class _ClockAnHourBehind:
    """A hub that booted without its clock set (a Pi has no RTC) and believes it synced."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() - 3600.0

    def synced(self) -> bool:
        return True


def test_a_wrong_hub_clock_is_corrected_from_the_receivers_nak(tmp_path: Path,
                                                               mqtt_broker) -> None:
    """pysiaalarm NAKs a timestamp outside its window (-40/+20 s) with its own time; the
    transmitter takes the difference and the alarm is ACKed on the next frame."""
    receiver = ArcReceiver("tcp", encrypted=True).start()
    key_file = tmp_path / "arc.key"
    key_file.write_text(KEY_HEX + "\n")
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", receiver.port)], key_file=key_file))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=factory),
                         clock=_ClockAnHourBehind()) as runner:
            wait_until(lambda: runner.agent.state.online, what="online")
            pull(factory)
            wait_until(lambda: receiver.alarms(), what="alarm at the ARC")
            wait_until(lambda: arc_rows(tmp_path / "events.db")[0][1] == "acked",
                       what="acked")
        alarm = receiver.alarms()[0]
        assert abs(alarm.timestamp.timestamp() - time.time()) < 30
        assert arc_rows(tmp_path / "events.db")[0][2] == 1     # one attempt: NAK, then ACK
    finally:
        receiver.close()


def test_sia_dcs_format_and_a_chosen_warning(tmp_path: Path, mqtt_broker) -> None:
    """format = "SIA-DCS", priorities with "warning" limited by warning_types: the pull cord
    arrives as SIA code QA (zone 2), the bounce storm warning is not among the chosen ones."""
    receiver = ArcReceiver("udp").start()
    factory = MockFactory()
    cfg = make_config(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", receiver.port)], "udp").replace(
        "retry_max_s", 'format = "SIA-DCS"\npriorities = ["alarm", "warning"]\n'
        'warning_types = ["battery_low"]\nretry_max_s'))
    try:
        with AgentRunner(cfg, Hardware(pin_factory=factory)) as runner:
            wait_until(lambda: runner.agent.state.online, what="online")
            arc = _arc(runner)
            assert arc.config.format == "SIA-DCS"
            pull(factory)
            wait_until(lambda: receiver.alarms(), what="alarm at the ARC")
            alarm = receiver.alarms()[0]
            assert (alarm.message_type.value, alarm.code, alarm.message) == ("SIA-DCS", "QA",
                                                                           "002")
            from agent.model import Event, Priority
            chosen = Event("battery_low", Priority.WARNING, "cord-bathroom", {})
            other = Event("bounce_storm", Priority.WARNING, "cord-bathroom", {})
            assert arc.wanted(chosen) and not arc.wanted(other)
    finally:
        receiver.close()


def test_simulate_names_an_alarm_the_arc_has_not_acknowledged(tmp_path: Path,
                                                              mqtt_broker) -> None:
    """simulate's closing line and exit status speak for the broker: with no receiver
    listening they said '1 events stored and acknowledged' and nothing of the ARC."""
    conf = write_config_file(tmp_path, mqtt_broker, GPIO + arc_section(
        [("127.0.0.1", free_port())], timeout_s=0.2, retries=1))
    res = subprocess.run(agent_cmd("simulate", "--config", str(conf), "--scenario",
                                   "pull-cord", "--timeout", "20"),
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "note: 1 alarm(s) not yet acknowledged by the ARC" in res.stderr
    receiver = ArcReceiver("tcp").start()
    try:
        conf = write_config_file(tmp_path, mqtt_broker, GPIO + arc_section(
            [("127.0.0.1", receiver.port)], timeout_s=0.5, retries=1))
        res = subprocess.run(agent_cmd("simulate", "--config", str(conf), "--scenario",
                                       "pull-cord", "--timeout", "20"),
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        assert receiver.wait_alarms(2)       # the earlier one sent again, and the new one
        assert "not yet acknowledged by the ARC" not in res.stderr
    finally:
        receiver.close()
