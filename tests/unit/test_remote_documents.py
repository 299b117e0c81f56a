"""Config documents: merge patch, secret redaction and restoration, diffs, TOML writing,
the change plan, and the applier's validation (no broker: nothing here is applied)."""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.change_plan import plan_change
from agent.config import Config, config_to_dict, parse_config, parse_config_text
from agent.errors import ConfigError
from agent.redaction import secret_values
from agent.remote import envelope as env
from agent.remote.apply import ConfigApplier, write_atomic
from agent.remote.client import parse_broker_url
from agent.remote.documents import (
    REDACTED,
    changed_keys,
    merge_patch,
    redact,
    restore_secrets,
    without_nulls,
)
from agent.remote.envelope import Envelope, Rejected
from agent.remote.log_ring import LogRing
from agent.remote.toml_writer import dumps

KEY_A, KEY_B = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
HOME = f'''hub_id = "hub-1"
[agent]
timezone = "Europe/London"
[gpio]
pin_factory = "mock"
cancel_window_s = 45.0
[[gpio.devices]]
id = "cord"
kind = "pull_cord"
pin = 27
room = "bath \\"room\\" ünïcode\\ttab"
[[ble.devices]]
id = "door-ble"
address = "A4:C1:38:8D:18:B2"
kind = "bthome"
bindkey = "{KEY_A}"
role = "main_entrance_door"
[[ble.devices]]
id = "thermo"
address = "A4:C1:38:8D:18:B3"
kind = "bthome"
bindkey = "{KEY_B}"
[[inactivity.inactivity]]
start = "07:00"
end = "22:00"
after_s = 14400.0
'''


@pytest.fixture
def home() -> Config:
    return parse_config_text(HOME)


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3], "new": {"x": 1}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "list": [3], "new": {"x": 1}}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}  # untouched
    assert merge_patch({"a": 1}, ["x"]) == ["x"] and merge_patch([1], {"a": 1}) == {"a": 1}


def test_redaction_hides_every_secret_and_restores_them_by_device_id(home: Config) -> None:
    shown = redact(home)
    assert [d["bindkey"] for d in shown["ble"]["devices"]] == [REDACTED, REDACTED]
    assert KEY_A not in repr(shown) and KEY_B not in repr(shown)
    assert sorted(secret_values(home)) == sorted([KEY_A, KEY_B])
    # Support edits a redacted copy: reorders devices, drops one, adds one with a new key.
    shown["ble"]["devices"] = [shown["ble"]["devices"][1],
                               {"id": "new", "address": "A4:C1:38:8D:18:B4", "kind": "bthome",
                                "bindkey": "0" * 32}]
    doc = restore_secrets(without_nulls(shown), home, Config)
    cfg = parse_config(doc)
    assert [(d.id, d.bindkey) for d in cfg.ble.devices] == [("thermo", KEY_B), ("new", "0" * 32)]
    # "***" for a device the hub does not know stays "***" and fails validation.
    doc["ble"]["devices"][1]["bindkey"] = REDACTED
    with pytest.raises(ConfigError) as exc:
        parse_config(restore_secrets(doc, home, Config))
    assert any("ble.devices[1].bindkey" in p for p in exc.value.problems)
    assert all(REDACTED not in p for p in exc.value.problems if "bindkey" not in p)


def test_changed_keys_name_paths_never_values(home: Config) -> None:
    doc = without_nulls(config_to_dict(home))
    doc["gpio"]["devices"][0]["pin"] = 26
    doc["ble"]["devices"][0]["bindkey"] = "a" * 32
    doc["agent"]["log_level"] = "DEBUG"
    keys = changed_keys(home, parse_config(doc))
    assert keys == ["agent.log_level", "ble.devices[0].bindkey", "gpio.devices[0].pin"]
    doc["gpio"]["devices"].append({"id": "pir", "kind": "pir", "pin": 5})
    assert "gpio.devices" in changed_keys(home, parse_config(doc))


def test_toml_writer_round_trips_a_real_config(home: Config) -> None:
    doc = without_nulls(config_to_dict(home))
    text = dumps(doc, header="written by a test\nsecond line")
    assert text.startswith("# written by a test\n# second line\n")
    assert parse_config(tomllib.loads(text)) == home


toml_keys = st.text(min_size=1, max_size=8)
toml_leaf = (st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=12)
             | st.floats(allow_nan=False))
toml_tables = st.recursive(
    st.dictionaries(toml_keys, toml_leaf | st.lists(toml_leaf, max_size=3), max_size=4),
    lambda inner: st.dictionaries(toml_keys, inner | st.lists(inner, min_size=1, max_size=2)
                                  | toml_leaf, max_size=4),
    max_leaves=15)


@settings(max_examples=250, deadline=None)
@given(toml_tables)
def test_toml_writer_round_trips_anything_config_shaped(doc: dict) -> None:
    assert tomllib.loads(dumps(doc)) == doc


def test_plan_forbids_identity_store_and_lockout(home: Config, tmp_path: Path) -> None:
    doc = without_nulls(config_to_dict(home))
    other = parse_config({**doc, "hub_id": "hub-2", "store": {"path": str(tmp_path / "x.db")},
                          "remote": {"enabled": False, "config_path": "/tmp/x.toml"}})
    enabled = parse_config({**doc, "remote": {"enabled": True}})
    plan = plan_change(enabled, other)
    assert [f.split(":")[0] for f in plan.forbidden] == ["hub_id", "store.path", "remote.enabled",
                                                         "remote.config_path"]


def test_plan_forbids_moving_the_hub_to_another_tenant_prefix(home: Config) -> None:
    doc = without_nulls(config_to_dict(home))
    moved = parse_config(merge_patch(doc, {"mqtt": {"topic_prefix": "council-b"}}))
    assert [f.split(":")[0] for f in plan_change(home, moved).forbidden] == ["mqtt.topic_prefix"]


def test_plan_rebuilds_only_what_depends_on_the_change(home: Config) -> None:
    doc = without_nulls(config_to_dict(home))
    window = parse_config(merge_patch(doc, {"inactivity": {"prewarning_s": 300.0}}))
    plan = plan_change(home, window)
    assert plan.affects("inactivity") and not plan.affects("gpio") and not plan.affects("ble")
    assert plan.affects("some-new-detector")  # unknown: rebuilt to be safe
    mqtt = parse_config(merge_patch(doc, {"mqtt": {"keepalive_s": 20},
                                          "agent": {"log_level": "DEBUG"}}))
    plan = plan_change(home, mqtt)
    assert not plan.needs_components() and not plan.affects("some-new-detector")
    assert plan.touches("mqtt") and plan.sections == {"mqtt", "agent"}
    pin = parse_config(merge_patch(doc, {"gpio": {"cancel_window_s": 10.0}}))
    plan = plan_change(home, pin)
    assert plan.affects("gpio") and plan.affects("alarm-canceller") and not plan.affects("serial")
    assert not plan.affects("remote")


class _Host(SimpleNamespace):
    async def reconfigure(self, new):  # pragma: no cover - prepare() never applies
        raise AssertionError("prepare must not apply anything")

    def plan_change(self, new):
        return plan_change(self.config, new)


def _envelope(mode: str, config: dict) -> Envelope:
    return Envelope("config", "hub-1", "desk", 0.0, 1.0, 7, {"mode": mode, "config": config},
                    b"", b"")


def test_applier_prepares_merges_onto_the_file_and_keeps_defaults(
    home: Config, tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(HOME)
    meta: dict[str, str] = {}
    applier = ConfigApplier(_Host(config=home, hub_id="hub-1"), path, 1.0, meta.get,
                            meta.__setitem__, lambda why: None)
    new, doc = applier.prepare(_envelope("merge", {"inactivity": {"prewarning_s": 120.0}}))
    assert new.inactivity.prewarning_s == 120.0 and new.ble.devices == home.ble.devices
    assert "mqtt" not in doc  # defaults stay defaults: the file's document, not a dump
    with pytest.raises(Rejected) as exc:
        applier.prepare(_envelope("merge", {"gpio": {"cancel_window_s": "soon"}}))
    assert exc.value.reason == env.INVALID_CONFIG
    assert exc.value.__cause__.problems == ["gpio.cancel_window_s: expected number, got 'soon'"]
    with pytest.raises(Rejected) as exc:
        applier.prepare(_envelope("full", {"gpio": {}}))
    assert exc.value.reason == env.INVALID_CONFIG  # a partial sent as full lacks hub_id
    # A file that no longer matches the running config is not merged onto.
    path.write_text(HOME.replace("45.0", "50.0"))
    new, doc = applier.prepare(_envelope("merge", {}))
    assert new == home and doc["gpio"]["cancel_window_s"] == 45.0


def test_write_atomic_keeps_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("old")
    os.chmod(path, 0o600)
    write_atomic(path, b"new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.toml"]
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing-dir" / "x.toml", b"x")


def test_log_ring_is_bounded_filters_levels_and_redacts() -> None:
    ring = LogRing(5, secrets=["hunter22"])
    log = logging.getLogger("test.ring")
    log.addHandler(ring)
    log.setLevel(logging.DEBUG)
    try:
        for i in range(8):
            log.info("line %d", i)
        log.warning("password hunter22 and bindkey %s", KEY_A)
        ring.set_secrets(["hunter22", KEY_A])  # a secret configured later is redacted on read
        lines = ring.tail(10)
        assert len(lines) == 5 and lines[0].endswith("line 4")
        assert lines[-1].endswith("password *** and bindkey ***")
        assert [ln.split(": ")[-1] for ln in ring.tail(10, logging.WARNING)] == \
            ["password *** and bindkey ***"]
        assert ring.tail(0) == []
        ring.resize(2)
        assert len(ring.tail(10)) == 2 and ring.tail(10)[-1].endswith("bindkey ***")
    finally:
        log.removeHandler(ring)


def test_broker_urls() -> None:
    u = parse_broker_url("mqtts://support%40desk@broker.example.org")
    assert (u.host, u.port, u.username, u.tls) == ("broker.example.org", 8883, "support@desk", True)
    assert parse_broker_url("mqtt://127.0.0.1:1999").port == 1999
    for bad in ("http://x", "mqtt://", "mqtt://u:pw@host", "mqtt://host:99999"):
        with pytest.raises(ConfigError):
            parse_broker_url(bad)
