"""An accepted push edits the installer's file in place (issue 17 item 2)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from agent.config import Config, parse_config
from agent.remote.documents import REDACTED, redact, restore_secrets, without_nulls
from agent.remote.toml_edit import HEADER_MARK, edited_text

BINDKEY = "231d39c1d7cc1ab1aee224cd096db932"
INSTALLED = f'''# Mrs Smith's flat, installed 2026-03-02 by J. Jones
hub_id = "hub-1"   # on the label

[mqtt]
host = "127.0.0.1"   # the flat's own broker

# the devices
[[gpio.devices]]
id = "back-door"   # kitchen
kind = "door"
pin = 17

[[gpio.devices]]
id = "pir-hall"
kind = "pir"
pin = 22

[[ble.devices]]
id = "pendant-1"
address = "A4:C1:38:8D:18:B2"
kind = "bthome"
bindkey = "{BINDKEY}"  # from the box
'''


def _pushed(path: Path, edit: dict[str, object]) -> tuple[str, Config]:
    """What ``get-config`` shows (every default spelt out, secrets redacted), edited as
    support would, then restored and written as the hub does."""
    running = parse_config(tomllib.loads(path.read_text()))
    doc = redact(running)
    assert doc["ble"]["devices"][0]["bindkey"] == REDACTED
    doc["gpio"]["devices"][1]["pin"] = edit["pin"]
    doc = restore_secrets(doc, running, Config)
    text = edited_text(path, without_nulls(doc), "config version 7, key desk, now", "H")
    return text, parse_config(doc)


def test_a_full_push_edits_only_the_changed_key_and_keeps_comments_and_secrets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(INSTALLED)
    text, new = _pushed(path, {"pin": 23})
    assert parse_config(tomllib.loads(text)) == new
    assert text.startswith(f"{HEADER_MARK} config version 7, key desk, now\n")
    # Unchanged lines, comments included, are exactly as the installer wrote them.
    body = text.split("\n", 1)[1]
    assert body == INSTALLED.replace("pin = 22", "pin = 23")
    # No default spelt out, the secret is the hub's own, never the placeholder.
    assert "session_expiry_s" not in text and "keepalive_s" not in text
    assert f'bindkey = "{BINDKEY}"  # from the box' in text and REDACTED not in text


def test_a_second_push_replaces_the_agents_note_and_added_devices_are_minimal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(INSTALLED)
    text, _ = _pushed(path, {"pin": 23})
    path.write_text(text)
    running = parse_config(tomllib.loads(text))
    doc = redact(running)
    doc["gpio"]["devices"].append({"id": "cord-bathroom", "kind": "pull_cord", "pin": 27})
    doc = restore_secrets(doc, running, Config)
    again = edited_text(path, without_nulls(doc), "config version 8, key desk, later", "H")
    assert parse_config(tomllib.loads(again)) == parse_config(doc)
    assert again.count(HEADER_MARK) == 1 and "version 8" in again and "version 7" not in again
    assert "# Mrs Smith's flat" in again and 'id = "back-door"   # kitchen' in again
    cord = again.split('id = "cord-bathroom"')[1]
    assert cord.split("[[")[0].strip().splitlines() == ['kind = "pull_cord"', "pin = 27"]


def test_a_file_that_cannot_be_edited_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("not [ toml")
    doc = {"hub_id": "hub-1", "mqtt": {"port": 1884}}
    text = edited_text(path, doc, "note", "Written whole")
    assert text.startswith("# Written whole") and tomllib.loads(text)["mqtt"]["port"] == 1884
