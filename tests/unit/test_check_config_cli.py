"""``check-config`` as installers meet it (issue 17 items 8 and 9): the password file, the
"did you mean" hint, array entries named by id, a [remote] section that is off, and
``--config`` like every other command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.cli import build_parser, main

HEAD = 'hub_id = "hub-1"\n[store]\npath = "{store}"\n'


def _write(tmp_path: Path, body: str, name: str = "hub.toml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD.format(store=tmp_path / "events.db") + body)
    return path


def _password(tmp_path: Path, text: str, mode: int) -> Path:
    pw = tmp_path / "mqtt.pass"
    pw.write_text(text)
    pw.chmod(mode)
    return pw


def _mqtt(pw: Path) -> str:
    return f'[mqtt]\nusername = "hub-1"\npassword_file = "{pw}"\n'


def test_an_empty_password_file_is_rejected(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, _mqtt(_password(tmp_path, "\nsecond line\n", 0o600)))
    assert main(["check-config", str(cfg)]) == 2
    out = capsys.readouterr().out
    assert f"mqtt.password_file: {tmp_path / 'mqtt.pass'} is empty" in out
    assert "put the broker password on its first line" in out


def test_a_password_file_everyone_can_read_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pw = _password(tmp_path, "s3cret\n", 0o644)
    cfg = _write(tmp_path, _mqtt(pw))
    assert main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert (f"warning: mqtt.password_file: {pw} is readable by every user of this machine "
            "(mode 0644): chmod it to 0600 owner tec-agent, or 0640 root:tec-agent") in out
    assert "s3cret" not in out
    for mode in (0o600, 0o640):
        os.chmod(pw, mode)
        assert main(["check-config", str(cfg)]) == 0
        assert "warning" not in capsys.readouterr().out


def test_docs_and_packaging_agree_on_the_secret_file_modes() -> None:
    root = Path(__file__).resolve().parents[2]
    for doc in ("README.md", "packaging/debian/README.Debian",
                "packaging/debian/tec-agent.toml"):
        assert "0600 owner tec-agent, or 0640 root:tec-agent" in " ".join(
            (root / doc).read_text().split()), doc


def test_unknown_keys_get_a_suggestion_and_entries_are_named_by_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(tmp_path, '[mqtt]\nhots = "broker"\n'
                 '[[gpio.devices]]\nid = "front-door"\nkind = "door"\npin = 17\n'
                 '[[gpio.devices]]\nid = "pir-hall"\nkind = "pir"\npin = 99\n'
                 '[[gpio.devices]]\nid = "cord"\nkind = "pull_cord"\npim = 4\n')
    assert main(["check-config", str(cfg)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert f"{cfg}: mqtt.hots: unknown key (did you mean 'host'?)" in lines
    assert f"{cfg}: gpio.devices[1] ('pir-hall').pin: expected 0..27, got 99" in lines
    assert f"{cfg}: gpio.devices[2] ('cord').pim: unknown key (did you mean 'pin'?)" in lines


@pytest.mark.parametrize("remote", [
    '[remote]\nkeys_dir = "/etc/tec-agent/remote-keys"\n',
    '[remote]\nenabled = false\nkeys_dir = "/etc/tec-agent/remote-keys"\n',
])
def test_remote_keys_without_enabled_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], remote: str
) -> None:
    cfg = _write(tmp_path, remote)
    assert main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "warning: remote" in out and "remote support is OFF" in out
    assert "enabled = true" in out


def test_check_config_takes_config_like_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(tmp_path, "")
    assert main(["check-config", "--config", str(cfg)]) == 0
    assert f"{cfg}: OK" in capsys.readouterr().out
    assert main(["check-config", str(cfg)]) == 0  # the older positional form still works
    assert main(["check-config"]) == 2
    assert "check-config --config PATH" in capsys.readouterr().err
    other = _write(tmp_path, "", "other.toml")
    assert main(["check-config", str(cfg), "--config", str(other)]) == 2


def test_status_without_config_reads_the_simulated_homes_store_like_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.cli.core import default_sim_config_text
    from agent.config import parse_config_text
    from agent.store.sqlite_store import SqliteStore

    monkeypatch.chdir(tmp_path)
    assert main(["status", "--json"]) == 1
    err = capsys.readouterr().err
    assert "no event store at .tec-agent/events.db" in err and "give --config PATH" in err
    sim = parse_config_text(default_sim_config_text())
    Path(sim.store.path).parent.mkdir()
    store = SqliteStore(sim.store.path, sim.hub_id)
    store.open()
    store.close()
    assert main(["status"]) == 0
    assert capsys.readouterr().out.startswith(f"hub {sim.hub_id}: 0 events pending in "
                                              ".tec-agent/events.db")


def test_the_man_page_covers_every_command() -> None:
    page = (Path(__file__).resolve().parents[2] / "packaging/debian/tec-agent.1").read_text()
    page = page.replace("\\-", "-")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    missing = []
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if a.dest.endswith("_command")]  # noqa: SLF001
        names = [f"{name} {n}" for n in nested[0].choices] if nested else [name]
        missing += [n for n in names if f".B {n} " not in page and f".B {n}\n" not in page]
    assert not missing, f"not in tec-agent.1: {missing}"


def test_a_dot_in_hub_id_is_refused_naming_rabbitmq(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20: RabbitMQ turns '.' into '/' in MQTT topics (0 of 6 events matched
    tec/v1/+/event, commands silently dropped)."""
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'hub_id = "hub.7"\n[store]\npath = "{tmp_path / "events.db"}"\n')
    assert main(["check-config", str(cfg)]) == 2
    out = capsys.readouterr().out
    assert "hub_id:" in out and "RabbitMQ" in out and "'hub.7'" in out


@pytest.mark.parametrize("prefix, expect", [
    ("", None),
    ("council-a", None),
    ("council-a/north", None),
    ("council/a/#", "must be empty or 1-4 topic levels"),
    ("/council", "must be empty or 1-4 topic levels"),
    ("$SYS", "must be empty or 1-4 topic levels"),
])
def test_topic_prefix_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 prefix: str, expect: str | None) -> None:
    cfg = _write(tmp_path, f'[mqtt]\ntopic_prefix = "{prefix}"\n')
    code = main(["check-config", str(cfg)])
    out = capsys.readouterr().out
    if expect is None:
        assert code == 0, out
    else:
        assert code == 2 and f"mqtt.topic_prefix: {expect}" in out, out


def test_default_topics_stay_tec_v1_exactly() -> None:
    from agent.uplink import topics

    assert topics.event_topic("hub-1") == "tec/v1/hub-1/event"
    assert topics.device_topic("hub-1", "pir") == "tec/v1/hub-1/device/pir"
    assert topics.cmd_topic("hub-1", "x", prefix="council-a") == "council-a/tec/v1/hub-1/cmd/x"
    assert topics.split("council-a/tec/v1/hub-1/status", "council-a") == ("hub-1", "status")
    assert topics.split("tec/v1/hub-1/status", "council-a") is None
