"""packaging/brokers/check_broker.py against a TLS-only mosquitto, as an operator runs it
against the shipped profile's listeners (TLS only): mqtts:// used to be read as plaintext,
and the probe reported "no CONNACK", which reads as a broker without MQTT 5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness import TestBroker, write_pki

ROOT = Path(__file__).resolve().parents[2]


def test_check_broker_speaks_tls_for_mqtts(tmp_path: Path) -> None:
    tls = write_pki(tmp_path / "pki")
    broker = TestBroker(tmp_path / "broker", tls_files=tls)
    broker.start()
    try:
        res = subprocess.run(
            [sys.executable, str(ROOT / "packaging" / "brokers" / "check_broker.py"),
             "--broker", f"mqtts://{broker.username}@{broker.host}:{broker.port}",
             "--password-file", str(broker.password_file), "--ca-file", tls[0]],
            capture_output=True, text=True, timeout=110, cwd=ROOT)
    finally:
        broker.close()
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["connect"] == "Success", out
    assert out["persistent_session_queue"] == "50 of 50", out
    assert out["ingest"].startswith("200 of 200"), out
