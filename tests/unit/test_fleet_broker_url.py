"""`simulate --hubs N --broker URL` refuses what it cannot do with advice it can follow: it
used to answer a plaintext URL to another machine with "use TLS: mqtts://..." and then
refuse mqtts:// as well."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


def test_plaintext_to_another_machine_is_refused_without_advising_tls(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    rc = main(["simulate", "--hubs", "2", "--broker", "mqtt://u@mqtt.example.org:1883",
               "--password-file", str(pw)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "mqtts://" not in err and "only to a broker on this machine" in err
    rc = main(["simulate", "--hubs", "2", "--broker", "mqtts://u@127.0.0.1:8883",
               "--password-file", str(pw)])
    assert rc == 2 and "without TLS" in capsys.readouterr().err
