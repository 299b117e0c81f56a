"""mqtt.topic_prefix end to end (issue 20): a hub under council-a/tec/v1/ publishes its
status, events and device state there, answers `tec-agent remote --topic-prefix` there
through the shipped ACL, and `tec-agent ingest --topic-prefix` stores its events; nothing
appears under tec/v1/."""

from __future__ import annotations

import json
import subprocess
import sys

from agent.ingest.db import open_db
from agent.ingest.ingester import Ingester
from agent.ingest.mqtt_source import MqttSource, SourceSettings
from agent.remote.client import BrokerUrl
from tests.harness import wait_until
from tests.integration.test_remote_harness import HUB, RemoteEnv, remote_env  # noqa: F401

PREFIX = "council-a"
ROOT = f"{PREFIX}/tec/v1/{HUB}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60)


def test_a_tenant_hub_is_reached_and_ingested_under_its_prefix(remote_env: RemoteEnv) -> None:
    e = remote_env
    e.config_path.write_text(e.config_path.read_text().replace(
        "reconnect_max_s = 1.0\n", f'reconnect_max_s = 1.0\ntopic_prefix = "{PREFIX}"\n'))
    plain = e.broker.subscribe("tec/v1/#", username="platform", password="platform-pw-1")
    seen = e.broker.subscribe(f"{PREFIX}/tec/v1/#", username="platform",
                              password="platform-pw-1")
    source = MqttSource(SourceSettings(
        BrokerUrl(e.broker.host, e.broker.port, "platform", False), "platform-pw-1",
        "ingest-council-a", prefix=PREFIX))
    db = open_db(f"sqlite:///{e.tmp / 'ingest.db'}")
    ingester = Ingester(source, db, prefix=PREFIX)
    source.start()
    runner = e.start_agent()
    try:
        seen.wait_for(lambda ms: any(m.topic == f"{ROOT}/status"
                                     and m.json()["state"] == "online" for m in ms),
                      20, what="online under the prefix")
        cord = e.factory.pin(27)
        cord.drive_low()
        cord.drive_high()
        seen.wait_for(lambda ms: any(m.topic == f"{ROOT}/event"
                                     and m.json()["type"] == "pull_cord" for m in ms),
                      20, what="the pull-cord alarm under the prefix")
        wait_until(lambda: runner.agent.uplink.acked >= 1, 10, what="its PUBACK")
        wait_until(lambda: ingester.run_once() >= 0 and db.event_count() >= 1, 10,
                   what="the alarm ingested")

        pw = e.tmp / "support.pass"
        pw.write_text("support-pw-1\n")
        common = ["--hub", HUB, "--broker", f"mqtt://support@{e.broker.host}:{e.broker.port}",
                  "--password-file", str(pw)]
        res = _cli("remote", "cmd", "status", *common, "--key", str(e.key_path),
                   "--topic-prefix", PREFIX, "--timeout", "20")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["result"]["online"] is True
        res = _cli("remote", "get-config", *common, "--topic-prefix", PREFIX)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["config"]["mqtt"]["topic_prefix"] == PREFIX
        # Without the prefix the CLI looks where this hub is not.
        res = _cli("remote", "cmd", "status", *common, "--key", str(e.key_path),
                   "--timeout", "1")
        assert res.returncode == 3 and "never published its status" in res.stderr
    finally:
        e.stop_agent()
        source.stop()
        db.close()
    assert not [m.topic for m in plain.snapshot() if HUB in m.topic]
