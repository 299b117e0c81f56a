"""The signed envelope that carries every remote config push and command.

Wire format (one MQTT payload, UTF-8 JSON)::

    {"payload": "<JSON text>", "sig": "<base64 Ed25519 signature>"}

The signature covers ``DOMAIN + payload`` as bytes, exactly as sent. Signing the bytes,
not a re-serialised object, means no JSON canonicalisation is needed on either side
(the JWS approach), and the domain prefix keeps these signatures useless for anything
else the same key might sign. The payload is JSON text rather than base64 so a person
looking at the broker can read what was sent.

Payload fields (all required unless noted)::

    v           1
    kind        "config" | "cmd"
    hub_id      the one hub this is for
    key_id      which trusted key signed it (file <key_id>.pub in the hub's keys_dir)
    issued_at   Unix seconds
    expires_at  Unix seconds (after issued_at)
    version     integer, strictly increasing per hub and kind (replay protection)
    config:  mode ("full" | "merge"), config (a table shaped like the TOML file)
    cmd:     name (the command), args (a table, optional)

This module is pure: bytes in, a typed :class:`Envelope` out, or :class:`Rejected`
naming the reason. Nothing here touches keys, clocks or the store.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AgentError

DOMAIN = b"tec-agent remote v1\n"
FORMAT_VERSION = 1
KINDS = ("config", "cmd")
CONFIG_MODES = ("full", "merge")
KEY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
COMMAND_PATTERN = r"[a-z][a-z0-9_]{0,31}"
MAX_VERSION = 2**63 - 1
_KEY_ID_RE = re.compile(KEY_ID_PATTERN)
_COMMAND_RE = re.compile(COMMAND_PATTERN)

# Reasons named in results. Support tooling scripts against these codes.
MALFORMED = "malformed"
TOO_LARGE = "too_large"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
WRONG_HUB = "wrong_hub"
WRONG_TOPIC = "wrong_topic"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
REPLAYED = "replayed"
INVALID_CONFIG = "invalid_config"
FORBIDDEN_CHANGE = "forbidden_change"
UNKNOWN_COMMAND = "unknown_command"
INVALID_ARGS = "invalid_args"
BUSY = "busy"
HEALTH_CHECK_FAILED = "health_check_failed"
NOT_WRITABLE = "not_writable"
INTERNAL_ERROR = "internal_error"


class Rejected(AgentError, ValueError):
    """A message that must not be acted on. ``reason`` is a stable code, ``detail`` prose."""

    def __init__(self, reason: str, detail: str, envelope: Envelope | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.envelope = envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    hub_id: str
    key_id: str
    issued_at: float
    expires_at: float
    version: int
    body: Mapping[str, Any]          # the kind-specific fields
    payload: bytes = field(repr=False)  # the signed bytes, exactly as received
    signature: bytes = field(repr=False)

    @property
    def signed_bytes(self) -> bytes:
        return DOMAIN + self.payload

    # config
    @property
    def mode(self) -> str:
        return str(self.body.get("mode", ""))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.body.get("config") or {})

    # cmd
    @property
    def name(self) -> str:
        return str(self.body.get("name", ""))

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.body.get("args") or {})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Rejected(MALFORMED, f"{what} is not valid JSON: {str(exc)[:120]}") from None


def _number(doc: Mapping[str, Any], key: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Rejected(MALFORMED, f"payload.{key}: expected a number of Unix seconds")
    return float(value)


def parse(raw: bytes, max_bytes: int) -> Envelope:
    """Check the shape of a received message (not its signature) and return it typed.

    The checks run in a fixed order (wrapper, signature, payload, header, body) so a
    message broken in several ways is always rejected for the same, first reason."""
    payload_text, payload, signature = _unwrap(raw, max_bytes)
    doc = _loads(payload_text, "payload")
    if not isinstance(doc, dict):
        raise Rejected(MALFORMED, "payload must be a JSON object")
    kind, hub_id, key_id, issued_at, expires_at, version = _header(doc)
    common = {"v", "kind", "hub_id", "key_id", "issued_at", "expires_at", "version"}
    body = {k: v for k, v in doc.items() if k not in common}
    if kind == "config":
        _check_config_body(body)
    else:
        _check_cmd_body(body)
    return Envelope(kind, hub_id, key_id, issued_at, expires_at, version, body, payload, signature)


def _unwrap(raw: bytes, max_bytes: int) -> tuple[str, bytes, bytes]:
    """The outer ``{"payload", "sig"}`` wrapper: the payload's text and bytes and the
    64-byte signature."""
    if len(raw) > max_bytes:
        raise Rejected(TOO_LARGE, f"{len(raw)} bytes > {max_bytes}")
    outer = _loads(raw, "message")
    if not isinstance(outer, dict) or set(outer) != {"payload", "sig"}:
        raise Rejected(MALFORMED, 'expected {"payload": "...", "sig": "..."}')
    payload_text, sig_text = outer["payload"], outer["sig"]
    if not isinstance(payload_text, str) or not isinstance(sig_text, str):
        raise Rejected(MALFORMED, "payload and sig must be strings")
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(MALFORMED, "sig is not base64") from None
    if len(signature) != 64:
        raise Rejected(MALFORMED, f"sig must be 64 bytes (Ed25519), got {len(signature)}")
    try:
        payload = payload_text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \ud800 escapes
        raise Rejected(MALFORMED, "payload is not valid Unicode") from None
    return payload_text, payload, signature


def _header(doc: Mapping[str, Any]) -> tuple[str, str, str, float, float, int]:
    """The header every payload carries: kind, hub_id, key_id, issued_at, expires_at,
    version."""
    if doc.get("v") != FORMAT_VERSION or isinstance(doc.get("v"), bool):
        raise Rejected(MALFORMED, f"payload.v: expected {FORMAT_VERSION}")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise Rejected(MALFORMED, f"payload.kind: expected one of {', '.join(KINDS)}")
    hub_id, key_id = doc.get("hub_id"), doc.get("key_id")
    if not isinstance(hub_id, str) or not hub_id:
        raise Rejected(MALFORMED, "payload.hub_id: expected a string")
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise Rejected(MALFORMED, "payload.key_id: expected 1-64 of A-Z a-z 0-9 _ . -")
    issued_at, expires_at = _number(doc, "issued_at"), _number(doc, "expires_at")
    if expires_at <= issued_at:
        raise Rejected(MALFORMED, "payload.expires_at: must be after issued_at")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise Rejected(MALFORMED, f"payload.version: expected an integer 1..{MAX_VERSION}")
    return str(kind), hub_id, key_id, issued_at, expires_at, version


def _check_config_body(body: Mapping[str, Any]) -> None:
    if set(body) != {"mode", "config"}:
        raise Rejected(MALFORMED,
                       "config payload needs exactly mode and config besides the header")
    if body["mode"] not in CONFIG_MODES:
        raise Rejected(MALFORMED, f"payload.mode: expected one of {', '.join(CONFIG_MODES)}")
    if not isinstance(body["config"], dict):
        raise Rejected(MALFORMED, "payload.config: expected a table")


def _check_cmd_body(body: Mapping[str, Any]) -> None:
    if not set(body) <= {"name", "args"} or "name" not in body:
        raise Rejected(MALFORMED,
                       "cmd payload needs name (and optional args) besides the header")
    if not isinstance(body["name"], str) or not _COMMAND_RE.fullmatch(body["name"]):
        raise Rejected(MALFORMED, "payload.name: expected a command name")
    if not isinstance(body.get("args", {}), dict):
        raise Rejected(MALFORMED, "payload.args: expected a table")


def build_payload(
    kind: str,
    hub_id: str,
    key_id: str,
    version: int,
    issued_at: float,
    ttl_s: float,
    body: Mapping[str, Any],
) -> bytes:
    """The payload bytes to sign (support side)."""
    doc = {"v": FORMAT_VERSION, "kind": kind, "hub_id": hub_id, "key_id": key_id,
           "issued_at": round(issued_at, 3), "expires_at": round(issued_at + ttl_s, 3),
           "version": version, **body}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def wrap(payload: bytes, signature: bytes) -> bytes:
    """The wire message for ``payload`` and its signature over ``DOMAIN + payload``."""
    return json.dumps({"payload": payload.decode("utf-8"),
                       "sig": base64.b64encode(signature).decode("ascii")},
                      separators=(",", ":"), ensure_ascii=False).encode()


def peek(raw: bytes) -> dict[str, Any]:
    """Best-effort header of an unverified message, for naming it in a rejection result.

    Never trust what this returns: it is only echoed back so the sender can correlate.
    """
    try:
        outer = json.loads(raw)
        doc = json.loads(outer["payload"]) if isinstance(outer, dict) else None
    except Exception:
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    version = doc.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and 0 <= version <= MAX_VERSION:
        out["version"] = version
    key_id = doc.get("key_id")
    if isinstance(key_id, str) and _KEY_ID_RE.fullmatch(key_id):
        out["key_id"] = key_id
    return out
