"""Support keys: the hub's trusted public keys, and key files for the support CLI.

The hub trusts exactly the Ed25519 public keys in ``[remote] keys_dir``, one file
``<key_id>.pub`` per key (PEM ``SubjectPublicKeyInfo`` as written by ``tec-agent remote
keygen`` or ``openssl pkey -pubout``, or one OpenSSH ``ssh-ed25519`` line). Rotating a key
is adding the new file, switching the support tooling over, then deleting the old file: the
directory is read again for every message, so no restart is needed. Private keys never
reach a hub.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import ConfigError
from agent.remote.envelope import KEY_ID_PATTERN

log = logging.getLogger(__name__)

_KEY_ID_RE = re.compile(KEY_ID_PATTERN)
_MAX_KEY_FILE = 16 * 1024


def valid_key_id(key_id: str) -> bool:
    return bool(_KEY_ID_RE.fullmatch(key_id)) and key_id not in (".", "..")


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """PEM or OpenSSH text to an Ed25519 public key; ValueError for anything else."""
    text = data.strip()
    key: object = (serialization.load_ssh_public_key(text) if text.startswith(b"ssh-")
                   else serialization.load_pem_public_key(text))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 key ({type(key).__name__})")
    return key


class KeyStore:
    """Looks trusted keys up by id in ``keys_dir``; re-reads a file only when it changed."""

    def __init__(self, keys_dir: str | Path) -> None:
        self.dir = Path(keys_dir)
        self._cache: dict[str, tuple[tuple[int, int], Ed25519PublicKey]] = {}

    def key_ids(self) -> list[str]:
        """Ids of the usable keys now in the directory (unreadable files are logged, skipped)."""
        try:
            ids = sorted(p.name[:-4] for p in self.dir.iterdir() if p.name.endswith(".pub"))
        except OSError:
            return []
        return [i for i in ids if valid_key_id(i) and self.public_key(i)]

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        if not valid_key_id(key_id):
            return None
        path = self.dir / f"{key_id}.pub"
        try:
            st = path.stat()
            if st.st_size > _MAX_KEY_FILE:
                raise ValueError("file too large for a public key")
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(key_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            key = parse_public_key(path.read_bytes())
        except FileNotFoundError:
            self._cache.pop(key_id, None)
            return None
        except (OSError, ValueError, TypeError) as exc:
            self._cache.pop(key_id, None)
            log.error("trusted key %s is unusable: %s", path, exc)
            return None
        self._cache[key_id] = (stamp, key)
        return key

    def verify(self, key_id: str, signature: bytes, message: bytes) -> bool | None:
        """True if ``key_id`` signed ``message``; False if not; None if no such trusted key."""
        key = self.public_key(key_id)
        if key is None:
            return None
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


# -- support side ---------------------------------------------------------------------------
class PassphraseNeeded(ConfigError):
    """The private key is encrypted and no passphrase was given."""


def is_encrypted(path: str | Path) -> bool:
    """Whether the key file at ``path`` needs a passphrase (False if it cannot be read)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    return _encrypted(data)


def _encrypted(data: bytes) -> bool:
    if b"ENCRYPTED PRIVATE KEY" in data:
        return True
    if b"OPENSSH PRIVATE KEY" in data:
        try:
            serialization.load_ssh_private_key(data, password=None)
        except TypeError:
            return True
        except ValueError:
            return False
    return False


def load_private_key(path: str | Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """A PEM (PKCS#8, encrypted or not, or OpenSSH) Ed25519 private key. An encrypted key
    without ``passphrase`` raises :class:`PassphraseNeeded`; a wrong one, ConfigError."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read key: {exc.strerror}") from None
    if passphrase is not None and not passphrase:
        passphrase = None
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=passphrase)
        else:
            key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        if passphrase is not None and "not encrypted" in str(exc).lower():
            return load_private_key(p, None)     # a passphrase for a plain key: not needed
        if passphrase is None and "encrypted" in str(exc).lower():
            raise PassphraseNeeded(f"{p}: the key is encrypted: a passphrase is needed") \
                from None
        raise ConfigError(f"{p}: not a usable private key: {exc}") from None
    except ValueError as exc:
        if _encrypted(data):
            raise ConfigError(f"{p}: wrong passphrase for this key") from None
        raise ConfigError(f"{p}: not a usable private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{p}: not an Ed25519 private key")
    return key


def key_id_from_path(path: str | Path) -> str:
    """``keys/support-2026.key`` -> ``support-2026``."""
    return Path(path).name.removesuffix(".key").removesuffix(".pem")


def generate_keypair(key_id: str, out_dir: str | Path,
                     passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write ``<key_id>.key`` (mode 0600; encrypted with ``passphrase`` when given, PKCS#8
    with the best encryption the library offers) and ``<key_id>.pub``; never overwrite."""
    if not valid_key_id(key_id):
        raise ConfigError(f"key id {key_id!r}: must be 1-64 of A-Z a-z 0-9 _ . -")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out / f"{key_id}.key", out / f"{key_id}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p}: already exists (refusing to overwrite a key)")
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                encryption)
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pub)
    return key_path, pub_path
