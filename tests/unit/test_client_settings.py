"""One client builder: every MQTT client is built from the same ``ClientSettings``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import parse_config_text
from agent.runtime import _BrokerWatcher
from agent.uplink.settings import settings_from_config
from tests.harness import write_pki


def _config(tmp_path: Path, **mqtt: str):
    (tmp_path / "pw").write_text("s3cret-pw\n")
    cfg = parse_config_text(f'hub_id = "hub-x"\n[store]\npath = "{tmp_path / "e.db"}"\n'
                            f'[mqtt]\nhost = "127.0.0.1"\nport = 1\nusername = "hub"\n'
                            f'password_file = "{tmp_path / "pw"}"\n')
    return replace(cfg, mqtt=replace(cfg.mqtt, **mqtt))


def test_settings_carry_tls_client_certificate_and_hide_the_password(tmp_path: Path) -> None:
    cfg = _config(tmp_path, tls_ca_file="/ca.pem", tls_cert_file="/c.pem", tls_key_file="/c.key")
    s = settings_from_config(cfg.mqtt, "id-1", persistent=True)
    assert (s.tls, s.tls_ca_file, s.tls_cert_file, s.tls_key_file) == (
        True, "/ca.pem", "/c.pem", "/c.key")
    assert s.username == "hub" and s.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(s)


def test_the_simulators_watcher_uses_the_client_certificate(tmp_path: Path) -> None:
    # The watcher once built its own client and dropped tls_cert_file: a broker that
    # requires client certificates refused it. Through the one builder a missing
    # certificate file is an error before any connection is tried.
    ca, _cert, _key = write_pki(tmp_path / "pki")
    cfg = _config(tmp_path, tls_ca_file=ca, tls_cert_file=str(tmp_path / "no-cert.pem"),
                  tls_key_file=str(tmp_path / "no-key.pem"))
    watcher = _BrokerWatcher(cfg, lambda doc: None)
    with pytest.raises(FileNotFoundError):   # (port 1: a connect would be refused instead)
        watcher.start()
