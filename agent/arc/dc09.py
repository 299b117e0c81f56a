"""ANSI/SIA DC-09 framing: pure functions, message values <-> bytes. No I/O.

A DC-09 frame is ``<LF><crc><0LLL><"id"><seq><Rrcvr><Lpref><#acct>[<data>]<x-data><timestamp><CR>``:

- ``crc``: CRC-16/ARC (polynomial 0x8005 reflected, i.e. 0xA001, initial 0) of everything
  from the first ``"`` to the end of the timestamp, as 4 upper-case hex digits;
- ``0LLL``: the length of that same part, ``0`` and 3 hex digits;
- ``"id"``: ``ADM-CID`` (Contact ID payload), ``SIA-DCS`` (SIA code payload) or ``NULL``
  (link test); a ``*`` before the id (``"*ADM-CID"``) says the data is encrypted;
- ``seq``: 4 decimal digits 0001-9999, a new number for each new message, the same number
  when a message is repeated; the receiver echoes it in its answer;
- ``Rrcvr`` (optional) and ``Lpref``: receiver number and account prefix (line), 1-6 hex
  digits each, as the receiving centre assigns them;
- ``#acct``: the account, 3-16 hex digits;
- ``[data]``: ``#acct|QXYZ GG CCC`` for ADM-CID (qualifier, event, group, zone),
  ``#acct|Nri<GG>/<code><zone>`` for SIA-DCS, empty for NULL;
- the timestamp ``_HH:MM:SS,MM-DD-YYYY`` (UTC) is the time of *transmission*: a receiver
  refuses (NAK) one too far from its own clock, which is what stops replays of encrypted
  messages.

Encrypted (AES-128/192/256, CBC, zero IV, as the standard fixes it): everything after ``[``
(``<pad>|<data>]<x-data><timestamp>``) is encrypted and sent as upper-case hex; ``pad`` is
pseudo-random printable characters (never ``|``, ``[`` or ``]``) making the plaintext a
whole number of 16-byte blocks.

The receiver answers ``"ACK"`` (accepted), ``"NAK"`` (rejected: bad CRC, bad or stale
timestamp; it carries the receiver's own time so the transmitter can correct its clock and
send again) or ``"DUH"`` (not understood: an unsupported message or code; sending the same
message again will not help). :func:`parse_response` reads them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.arc.config import ACCOUNT_PATTERN, KEY_SIZES, PREFIX_PATTERN
from agent.errors import DecodeError

LF = b"\n"
CR = b"\r"
ADM_CID = "ADM-CID"
SIA_DCS = "SIA-DCS"
NULL = "NULL"
KINDS = (ADM_CID, SIA_DCS, NULL)
SEQ_MAX = 9999
_IV = bytes(16)
_PAD_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TS_FORMAT = "%H:%M:%S,%m-%d-%Y"


def crc16(data: bytes) -> int:
    """CRC-16/ARC as DC-09 uses it (reflected 0x8005, initial value 0, no final xor)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@dataclass(frozen=True, slots=True)
class Message:
    """One DC-09 message before framing. ``data`` is the text between ``[`` and ``]``
    (``#1234|1101 01 001``); use :func:`adm_cid`, :func:`sia_dcs` or :func:`null` to build
    it right."""

    kind: str
    seq: int
    account: str
    data: str = ""
    receiver: str | None = None
    line: str = "0"
    xdata: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"DC-09 message id must be one of {KINDS}, not {self.kind!r}")
        if not 0 <= self.seq <= SEQ_MAX:
            raise ValueError(f"DC-09 sequence number must be 0..{SEQ_MAX}, not {self.seq}")
        if not re.fullmatch(ACCOUNT_PATTERN, self.account):
            raise ValueError("DC-09 account must be 3-16 hex digits")
        for name, value in (("receiver", self.receiver), ("line", self.line)):
            if value is not None and not re.fullmatch(PREFIX_PATTERN, value):
                raise ValueError(f"DC-09 {name} prefix must be 1-6 hex digits, not {value!r}")
        if any(c in self.data for c in "[]") or any(c in x for x in self.xdata for c in "[]"):
            raise ValueError("DC-09 data and x-data may not contain '[' or ']'")


def adm_cid(seq: int, account: str, code: int, *, qualifier: int = 1, group: int = 1,
            zone: int = 0, receiver: str | None = None, line: str = "0") -> Message:
    """An ADM-CID message: Contact ID event ``code`` (3 digits), ``qualifier`` 1 new event,
    3 restore, 6 previously reported; ``group`` (partition) 0-99; ``zone`` 0-999."""
    if not (0 < code < 1000 and qualifier in (1, 3, 6) and 0 <= group < 100
            and 0 <= zone < 1000):
        raise ValueError(f"bad Contact ID fields: code {code} qualifier {qualifier}"
                         f" group {group} zone {zone}")
    data = f"#{account.upper()}|{qualifier}{code:03d} {group:02d} {zone:03d}"
    return Message(ADM_CID, seq, account.upper(), data, receiver, line)


def sia_dcs(seq: int, account: str, code: str, *, zone: int = 0, group: int | None = None,
            receiver: str | None = None, line: str = "0") -> Message:
    """A SIA-DCS message: two-letter SIA event ``code`` with the zone as its address
    (``Nri<group>/<code><zone>``; no ``ri`` when ``group`` is None)."""
    if not re.fullmatch(r"[A-Z]{2}", code) or not 0 <= zone < 10000:
        raise ValueError(f"bad SIA-DCS fields: code {code!r} zone {zone}")
    ri = f"ri{group}/" if group is not None else ""
    data = f"#{account.upper()}|N{ri}{code}{zone:03d}"
    return Message(SIA_DCS, seq, account.upper(), data, receiver, line)


def null(seq: int, account: str, *, receiver: str | None = None, line: str = "0") -> Message:
    """A NULL message: the link test (supervision) that carries no event."""
    return Message(NULL, seq, account.upper(), "", receiver, line)


def timestamp(when: datetime) -> str:
    """``_HH:MM:SS,MM-DD-YYYY`` in UTC."""
    return "_" + when.astimezone(UTC).strftime(_TS_FORMAT)


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    if len(key) not in KEY_SIZES:
        raise ValueError("DC-09 AES key must be 16, 24 or 32 bytes")
    return Cipher(algorithms.AES(key), modes.CBC(_IV))


def encrypt(key: bytes, text: str, pad: str | None = None) -> str:
    """``pad|text`` encrypted, as upper-case hex. ``pad`` (tests only) replaces the random
    padding; it must bring the length to a whole number of blocks."""
    body = "|" + text
    if pad is None:
        n = (-len(body)) % 16
        pad = "".join(secrets.choice(_PAD_CHARS) for _ in range(n))
    plain = (pad + body).encode("ascii")
    if len(plain) % 16:
        raise ValueError("DC-09 padding must make whole 16-byte blocks")
    enc = _cipher(key).encryptor()
    return (enc.update(plain) + enc.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str:
    """Decrypted text with the padding (everything up to the first ``|``, if one comes before
    any ``]``) removed. Raises :class:`DecodeError` if it is not hex of whole blocks or not
    ASCII (a wrong key)."""
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        raise DecodeError("DC-09 encrypted part is not hex") from None
    if not raw or len(raw) % 16:
        raise DecodeError("DC-09 encrypted part is not whole 16-byte blocks")
    dec = _cipher(key).decryptor()
    try:
        text = (dec.update(raw) + dec.finalize()).decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("DC-09 encrypted part does not decrypt to ASCII (wrong key?)") from None
    bar, close = text.find("|"), text.find("]")
    if bar != -1 and (close == -1 or bar < close):
        return text[bar + 1:]
    # Some receivers pad without a '|' (zeros before the ']'): the pad is what precedes ']'.
    return text[close:] if close != -1 else text


def encode(msg: Message, when: datetime | None, key: bytes | None = None,
           pad: str | None = None) -> bytes:
    """The framed message, LF to CR. ``when``: transmission time for the timestamp (None:
    no timestamp, allowed only unencrypted). ``key``: AES key to encrypt with."""
    head = f'"{"*" if key else ""}{msg.kind}"{msg.seq:04d}'
    if msg.receiver is not None:
        head += f"R{msg.receiver.upper()}"
    head += f"L{msg.line.upper()}#{msg.account}["
    tail = msg.data + "]" + "".join(f"[{x}]" for x in msg.xdata)
    if when is not None:
        tail += timestamp(when)
    if key:
        if when is None:
            raise ValueError("an encrypted DC-09 message must carry a timestamp")
        tail = encrypt(key, tail, pad)
    body = (head + tail).encode("ascii")
    if len(body) > 0xFFF:
        raise ValueError("DC-09 message too long")
    return LF + f"{crc16(body):04X}0{len(body):03X}".encode("ascii") + body + CR


_FRAME = re.compile(rb"\n?([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})(\"[^\r\n]*)\r?\n?\Z")
_BODY = re.compile(
    r'"(?P<enc>\*)?(?P<kind>[A-Z][A-Z-]*)"(?P<seq>\d{4})(?:R(?P<rcv>[0-9A-Fa-f]{1,6}))?'
    r"L(?P<line>[0-9A-Fa-f]{1,6})(?:R(?P<rcv2>[0-9A-Fa-f]{1,6}))?"  # NAKs seen as L0R0
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16})|A0)?\[(?P<rest>.*)\Z", re.S)
_TS = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})")


@dataclass(frozen=True, slots=True)
class Frame:
    """A framed DC-09 message or answer, checked (CRC and length) and split."""

    kind: str                # ADM-CID, SIA-DCS, NULL, ACK, NAK, DUH, RSP ...
    encrypted: bool
    seq: int
    receiver: str | None
    line: str
    account: str | None
    rest: str                # after '[': decrypted when a key was given
    timestamp: datetime | None


def decode(raw: bytes, key: bytes | None = None) -> Frame:
    """Check and split one frame (message or answer). Raises :class:`DecodeError` naming
    what is wrong (CRC, length, layout, an encrypted frame and no key)."""
    m = _FRAME.match(raw.strip(b"\x00"))
    if not m:
        raise DecodeError(f"not a DC-09 frame: {raw[:60]!r}")
    crc_text, len_text, body = m.group(1), m.group(2), m.group(3)
    if int(crc_text, 16) != crc16(body):
        raise DecodeError(f"DC-09 CRC mismatch: frame says {crc_text.decode()},"
                          f" body gives {crc16(body):04X}")
    if int(len_text, 16) != len(body):
        raise DecodeError(f"DC-09 length mismatch: frame says {int(len_text, 16)},"
                          f" body is {len(body)}")
    b = _BODY.match(body.decode("ascii", "replace"))
    if not b:
        raise DecodeError(f"DC-09 body not understood: {body[:60]!r}")
    rest = b["rest"]
    encrypted = bool(b["enc"])
    if encrypted:
        if key is None:
            raise DecodeError("encrypted DC-09 frame and no key")
        rest = decrypt(key, rest)
    ts_match = _TS.search(rest)
    when = None
    if ts_match:
        try:
            when = datetime.strptime(ts_match.group(1), _TS_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            when = None
    return Frame(b["kind"], encrypted, int(b["seq"]), b["rcv"] or b["rcv2"], b["line"],
                 b["acct"], rest, when)


def parse_response(raw: bytes, key: bytes | None) -> Frame:
    """A receiver's answer (``ACK``, ``NAK``, ``DUH``, ``RSP``). An encrypted answer is
    decrypted with ``key`` (a receiver that has our key answers encrypted messages
    encrypted: only it can make an ACK that decrypts); plain answers to encrypted messages
    are accepted only as NAK or DUH (nothing to forge there but a delay)."""
    frame = decode(raw, key)
    if frame.kind not in ("ACK", "NAK", "DUH", "RSP"):
        raise DecodeError(f"not a DC-09 answer: {frame.kind}")
    if frame.encrypted and "]" not in frame.rest:
        raise DecodeError("encrypted DC-09 answer does not decrypt to a valid body (wrong key?)")
    return frame


def is_ack_for(frame: Frame, msg: Message, encrypted: bool) -> bool:
    """Whether ``frame`` acknowledges ``msg``: ACK (or RSP), same sequence number and
    account, encrypted if the message was."""
    return (frame.kind in ("ACK", "RSP") and frame.seq == msg.seq
            and (frame.account is None or frame.account.upper() == msg.account.upper())
            and (frame.encrypted or not encrypted))
