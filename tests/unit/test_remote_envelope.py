"""Envelope parsing, signatures and the verifier's checks, without a broker."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.remote import envelope as env
from agent.remote.client import sign
from agent.remote.envelope import Rejected
from agent.remote.keys import (
    KeyStore,
    PassphraseNeeded,
    generate_keypair,
    is_encrypted,
    load_private_key,
)
from agent.remote.verifier import ReplayGuard, Topic, Verifier
from agent.store.sqlite_store import SqliteStore

NOW = 1_780_000_000.0
CMD = {"name": "status", "args": {}}
CFG = {"mode": "merge", "config": {"agent": {"log_level": "DEBUG"}}}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Ed25519PrivateKey, KeyStore]:
    key_path, pub = generate_keypair("desk", tmp_path / "private")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "desk.pub").write_bytes(pub.read_bytes())
    return load_private_key(key_path), KeyStore(trusted)


class MemoryMeta:
    def __init__(self) -> None:
        self.d: dict[str, str] = {}

    def get(self, k: str) -> str | None:
        return self.d.get(k)

    def set(self, k: str, v: str) -> None:
        self.d[k] = v


def _verifier(store: KeyStore, meta: MemoryMeta | None = None) -> Verifier:
    meta = meta or MemoryMeta()
    return Verifier("hub-1", store, ReplayGuard(meta.get, meta.set), 64 * 1024, 300.0)


def _msg(key: Ed25519PrivateKey, kind: str = "cmd", body: dict | None = None, hub: str = "hub-1",
         key_id: str = "desk", version: int = 5, issued: float = NOW, ttl: float = 60) -> bytes:
    payload = env.build_payload(kind, hub, key_id, version, issued, ttl,
                                body or (CMD if kind == "cmd" else CFG))
    return sign(key, payload)


def test_round_trip_keeps_every_field(keys) -> None:
    key, store = keys
    e = _verifier(store).check(_msg(key, "config"), Topic("config"), NOW + 1, True)
    assert (e.kind, e.hub_id, e.key_id, e.version, e.mode) == (
        "config", "hub-1", "desk", 5, "merge"
    )
    assert e.config == CFG["config"] and e.expires_at == NOW + 60


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: m.replace(b'\\"version\\":5', b'\\"version\\":6'), env.BAD_SIGNATURE),
    (lambda m: m.replace(b'DEBUG', b'ERROR'), env.BAD_SIGNATURE),
    (lambda m: m[:-10], env.MALFORMED),
    (lambda m: b"[]", env.MALFORMED),
    (lambda m: b"", env.MALFORMED),
    (lambda m: b'{"payload": "{}", "sig": "!!"}', env.MALFORMED),
    (lambda m: b'{"payload": "{}", "sig": "' + base64.b64encode(b"x" * 10) + b'"}', env.MALFORMED),
    (lambda m: b"x" * (64 * 1024 + 1), env.TOO_LARGE),
])
def test_tampering_and_garbage(keys, mutate, reason) -> None:
    key, store = keys
    with pytest.raises(Rejected) as exc:
        _verifier(store).check(mutate(_msg(key, "config")), Topic("config"), NOW, True)
    assert exc.value.reason == reason


def test_each_check_names_its_reason(keys, tmp_path: Path) -> None:
    key, store = keys
    v = _verifier(store)
    rogue = Ed25519PrivateKey.generate()

    def reason(raw: bytes, topic: Topic | None = None, now: float = NOW,
               synced: bool = True) -> str:
        with pytest.raises(Rejected) as exc:
            v.check(raw, topic or Topic("cmd", "status"), now, synced)
        return exc.value.reason

    assert reason(_msg(rogue)) == env.BAD_SIGNATURE
    assert reason(_msg(key, key_id="nobody")) == env.UNKNOWN_KEY
    assert reason(_msg(key, key_id="../trusted/desk")) == env.MALFORMED
    assert reason(_msg(key, hub="hub-2")) == env.WRONG_HUB
    assert reason(_msg(key), now=NOW + 60) == env.EXPIRED
    assert reason(_msg(key, issued=NOW + 301)) == env.NOT_YET_VALID
    assert reason(_msg(key), topic=Topic("cmd", "restart")) == env.WRONG_TOPIC
    assert reason(_msg(key), topic=Topic("config")) == env.WRONG_TOPIC
    # Without a synchronised clock, validity periods cannot be judged: only replay counts.
    assert v.check(_msg(key), Topic("cmd", "status"), NOW + 10_000, False).version == 5
    e = v.check(_msg(key), Topic("cmd", "status"), NOW, True)
    v.accept(e)
    assert reason(_msg(key)) == env.REPLAYED
    assert reason(_msg(key, version=4)) == env.REPLAYED
    assert v.check(_msg(key, version=6), Topic("cmd", "status"), NOW, True).version == 6
    # Counters are per kind: a config version is not burnt by a command.
    assert v.check(_msg(key, "config", version=2), Topic("config"), NOW, True).version == 2


def test_replay_counter_survives_reopening_the_store(keys, tmp_path: Path) -> None:
    key, keystore = keys
    store = SqliteStore(tmp_path / "events.db", "hub-1")
    store.open()
    v = Verifier("hub-1", keystore, ReplayGuard(store.get_meta, store.set_meta), 65536, 300)
    v.accept(v.check(_msg(key, version=41), Topic("cmd", "status"), NOW, True))
    store.close()
    store = SqliteStore(tmp_path / "events.db", "hub-1")
    store.open()
    v = Verifier("hub-1", keystore, ReplayGuard(store.get_meta, store.set_meta), 65536, 300)
    with pytest.raises(Rejected) as exc:
        v.check(_msg(key, version=41), Topic("cmd", "status"), NOW, True)
    assert exc.value.reason == env.REPLAYED
    store.close()


def test_keys_rotate_without_restart_and_accept_openssh(keys, tmp_path: Path) -> None:
    key, store = keys
    v = _verifier(store)
    new = Ed25519PrivateKey.generate()
    ssh = new.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH)
    assert v.check(_msg(key, version=1), Topic("cmd", "status"), NOW, True)
    (store.dir / "desk-2.pub").write_bytes(ssh + b" support desk 2\n")
    assert store.key_ids() == ["desk", "desk-2"]
    assert v.check(_msg(new, key_id="desk-2"), Topic("cmd", "status"), NOW, True)
    (store.dir / "desk.pub").unlink()
    with pytest.raises(Rejected) as exc:
        v.check(_msg(key, version=7), Topic("cmd", "status"), NOW, True)
    assert exc.value.reason == env.UNKNOWN_KEY
    (store.dir / "broken.pub").write_text("not a key")
    assert store.key_ids() == ["desk-2"]


def test_peek_reads_only_harmless_fields() -> None:
    raw = json.dumps({"payload": json.dumps({"version": 9, "key_id": "a/b", "x": 1}),
                      "sig": ""}).encode()
    assert env.peek(raw) == {"version": 9}
    assert env.peek(b"\x00") == {} and env.peek(b"[1]") == {}


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_doc = st.recursive(json_leaf, lambda i: st.lists(i, max_size=3)
                        | st.dictionaries(st.text(max_size=8), i, max_size=3), max_leaves=10)


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=300))
def test_parse_of_any_bytes_raises_only_rejected(raw: bytes) -> None:
    with contextlib.suppress(Rejected):
        env.parse(raw, 4096)


@settings(max_examples=250, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "kind", "hub_id", "key_id", "issued_at",
                                        "expires_at", "version", "mode", "config", "name",
                                        "args"]) | st.text(max_size=5), json_doc, max_size=11),
       st.binary(max_size=70))
def test_parse_of_any_envelope_raises_only_rejected(payload: dict, sig: bytes) -> None:
    try:
        text = json.dumps(payload)
    except ValueError:
        return
    raw = json.dumps({"payload": text, "sig": base64.b64encode(sig).decode()}).encode()
    try:
        e = env.parse(raw, 1 << 20)
    except Rejected:
        return
    assert e.kind in env.KINDS and isinstance(e.version, int) and e.expires_at > e.issued_at
    assert len(e.signature) == 64


def test_expiry_is_checked_against_the_hub_clock(keys) -> None:
    key, store = keys
    now = time.time()
    raw = _msg(key, issued=now - 30, ttl=60)
    assert _verifier(store).check(raw, Topic("cmd", "status"), now, True).version == 5


def test_an_encrypted_support_key_needs_its_passphrase(tmp_path: Path) -> None:
    key_path, _ = generate_keypair("desk", tmp_path, b"s3cret phrase")
    assert is_encrypted(key_path)
    with pytest.raises(PassphraseNeeded, match="encrypted"):
        load_private_key(key_path)
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_private_key(key_path, b"guess")
    key = load_private_key(key_path, b"s3cret phrase")
    plain, _ = generate_keypair("plain", tmp_path)
    assert not is_encrypted(plain)
    # A passphrase given for a plain key is not needed and does no harm.
    assert load_private_key(plain, b"unneeded").public_key() is not None
    assert key.public_key().public_bytes_raw() != load_private_key(plain).public_key(
        ).public_bytes_raw()
