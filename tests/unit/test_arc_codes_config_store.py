"""The ARC code table against the agent's other Contact ID tables; [arc] validation; the
arc_delivery table on a store from before it existed."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.arc.codes import ARC_CODES, arc_code, generic_of
from agent.config import parse_config_text
from agent.errors import ConfigError
from agent.model import Event, Priority
from agent.store.arc_delivery import ArcRow, read_latencies
from agent.store.sqlite_store import SqliteStore
from drivers.ble import bthome_mapping
from drivers.gpio.kinds import KINDS
from drivers.serial.codes import OUTBOUND


def test_table_agrees_with_the_drivers_and_the_serial_escalation() -> None:
    for event_type, code in OUTBOUND.items():
        assert ARC_CODES[event_type].contact_id == code, event_type
    for spec in KINDS.values():
        if spec.contact_id is not None:
            assert ARC_CODES[str(spec.on_assert)].contact_id == spec.contact_id
    assert ARC_CODES["pendant"].contact_id == bthome_mapping.CONTACT_ID_PENDANT
    assert ARC_CODES["smoke"].contact_id == bthome_mapping.CONTACT_ID_SMOKE
    assert ARC_CODES["flood"].contact_id == bthome_mapping.CONTACT_ID_FLOOD
    # the issue's list
    assert [ARC_CODES[t].contact_id for t in ("pull_cord", "smoke", "flood", "battery_low")] \
        == [101, 111, 154, 302]
    assert ARC_CODES["periodic_test"].contact_id == 602


def test_unmapped_and_overridden_codes() -> None:
    assert arc_code("mystery", Priority.ALARM).contact_id == 100
    assert arc_code("mystery", Priority.WARNING).contact_id == 300
    assert arc_code("pull_cord", Priority.ALARM, {"contact_id": 122}).contact_id == 122
    assert arc_code("pull_cord", Priority.ALARM, {"contact_id": True}).contact_id == 101
    assert generic_of(ARC_CODES["flood"]).contact_id == 100       # type: ignore[union-attr]
    assert generic_of(ARC_CODES["medical"]) is None


ARC = """
[arc]
account = "{account}"
priorities = {prios}
[[arc.receivers]]
host = "arc1.example.org"
port = 12000
protocol = "{proto}"
{extra}
"""


def _cfg(account: str = "1234", prios: str = '["alarm"]', proto: str = "tcp",
         extra: str = ""):
    return parse_config_text('hub_id = "h"\n' + ARC.format(account=account, prios=prios,
                                                           proto=proto, extra=extra))


def test_arc_section_parses_with_the_issues_names() -> None:
    cfg = _cfg(prios='["alarm", "warning"]', proto="udp")
    assert cfg.arc.enabled and cfg.arc.account == "1234" and cfg.arc.supervision_s == 300
    assert cfg.arc.receivers[0].protocol == "udp" and cfg.arc.priorities == ("alarm", "warning")
    assert not parse_config_text('hub_id = "h"\n').arc.enabled


@pytest.mark.parametrize("kwargs, needle", [
    ({"account": "12"}, "arc.account"),
    ({"account": "12G4"}, "arc.account"),
    ({"proto": "sctp"}, "arc.receivers[0].protocol"),
    ({"prios": '["warning"]'}, "arc.priorities"),
    ({"prios": '["alarm", "loud"]'}, "arc.priorities[1]"),
    ({"extra": 'key_file = "/nonexistent/arc.key"'}, "arc.receivers[0].key_file"),
    ({"extra": 'line_prefix = "XYZ"'}, "arc.receivers[0].line_prefix"),
])
def test_arc_section_problems_name_the_key(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(**kwargs)
    assert any(p.startswith(needle) for p in err.value.problems), err.value.problems


def test_a_bad_key_file_is_refused_without_showing_the_key(tmp_path: Path) -> None:
    key = tmp_path / "arc.key"
    key.write_text("00112233445566778899aabbccddee\n")            # 15 bytes
    with pytest.raises(ConfigError) as err:
        _cfg(extra=f'key_file = "{key}"')
    assert "arc.receivers[0].key_file" in str(err.value)
    assert "00112233" not in str(err.value)
    key.write_text("00112233445566778899aabbccddeeff\n")
    assert _cfg(extra=f'key_file = "{key}"').arc.receivers[0].key_file == str(key)


def test_arc_table_added_to_an_existing_store_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteStore(path, "h")
    store.open()
    stored = store.append([Event("pull_cord", Priority.ALARM, "cord", {"contact_id": 101})])
    store.close()
    with sqlite3.connect(path) as db:                             # a store from before
        assert not db.execute("SELECT name FROM sqlite_master WHERE name='arc_delivery'"
                              ).fetchall()
    store = SqliteStore(path, "h")
    store.open()
    arc = store.arc_delivery()
    missing = arc.unqueued_alarms(time.time() - 3600)
    assert [m[0] for m in missing] == [stored[0].id]              # adopted after a crash
    arc.add([ArcRow(stored[0].id, stored[0].seq, Priority.ALARM, "pull_cord", "cord", 101, 1,
                    stored[0].wall, time.time())])
    arc.attempted(stored[0].id)
    assert [r.event_id for r in arc.pending()] == [stored[0].id]
    store.close()
    store = SqliteStore(path, "h")                                # a restart
    store.open()
    arc = store.arc_delivery()
    assert arc.pending()[0].attempts == 1 and not arc.unqueued_alarms(0.0)
    arc.acked(stored[0].id, "tcp://arc:1", 7, 123.0, "ACK code 101")
    assert not arc.pending() and read_latencies(store.db) == [123.0]
    store.close()


def test_check_config_warns_about_a_weak_arc_path(tmp_path: Path) -> None:
    from agent.cli.startup_checks import config_warnings

    key = tmp_path / "arc.key"
    key.write_text("00112233445566778899aabbccddeeff\n")
    key.chmod(0o644)
    cfg = _cfg(extra=f'key_file = "{key}"')
    warnings = config_warnings(cfg, {}, None)
    assert any(w.startswith("arc.receivers[0].key_file:") and "every user" in w
               for w in warnings)
    assert any(w.startswith("arc.receivers:") for w in warnings)
    plain = config_warnings(_cfg(), {}, None)
    assert any("unencrypted" in w for w in plain)
    key.chmod(0o600)
    assert not any("key_file" in w for w in config_warnings(cfg, {}, None))


def test_a_refused_arc_delivery_write_is_a_store_error(tmp_path: Path) -> None:
    from agent.errors import StoreError

    store = SqliteStore(str(tmp_path / "events.db"), "h")
    store.open()
    arc = store.arc_delivery()
    row = ArcRow("e1", 1, Priority.ALARM, "pull_cord", "cord", 101, 1, time.time(), time.time())
    store.db.execute("PRAGMA query_only=ON")              # every write now refused
    with pytest.raises(StoreError):
        arc.add([row])
    store.db.execute("PRAGMA query_only=OFF")
    arc.add([row])                                         # the connection is usable again
    assert [r.event_id for r in arc.pending()] == ["e1"]
    store.close()
