"""Contact ID over the Sur-Gard MLR2 serial line format: pure functions, bytes <-> frames.

The line format is the one Sur-Gard MLR2 receivers (and the many telecare units, diallers
and receivers that emulate them) use on their RS-232 "automation" output:

``5RRLs18AAAAQXYZGGCCC`` + DC4 (0x14)
    ``5`` Contact ID protocol, ``RR`` receiver number, ``L`` line number (a digit or a
    letter such as ``E``; some receivers send a 3-character virtual line ``LLL``), ``s`` a
    separator (a space; some Sur-Gard-compatible outputs send ``-``), ``18`` the Contact ID
    message type (``98`` is the optional alternative), ``AAAA`` account (digits 0-9, B-F),
    ``Q`` qualifier: as the digit of the DTMF message (1 new event, 3 restore, 6 previously
    reported and still present) or, as the MLR2E and other receivers print it, the letter
    (``E``, ``R``, ``P``); ``XYZ`` event code, ``GG`` group/partition, ``CCC`` zone or user
    number. Some receivers append the Contact ID checksum digit and/or the receiver clock
    ``HH:MM:SS-dd/mm``.
``1011`` + 11 spaces + ``@`` + 4 spaces + DC4
    the supervisory heartbeat, about every 30 s (newer receivers: ``1RR000`` + ...).
``PRRL`` + 6 spaces + ``0000 X  YY`` + DC4
    the receiver's own status (AC failure, line card absent, two-way audio on a line, ...):
    account 0000, event letter ``X``, event number ``YY``; ``P`` is the protocol id the
    receiver is set to use for them (``0``, ``S`` or ``1``). Acknowledged like a heartbeat.

The receiving side answers every message with ACK (0x06) or NAK (0x15); the sender
retransmits an unacknowledged message (4 s, three times). See tests/data/serial/README.md
for the sources.

Nothing here does I/O: :func:`decode` and :func:`encode` are total functions over bytes
(``decode`` raises :class:`~agent.errors.DecodeError` naming the bad field), and
:class:`LineSplitter` turns a byte stream into tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import DecodeError

DC4 = 0x14
ACK = 0x06
NAK = 0x15
MAX_FRAME = 64          # longest valid body is 36 bytes; anything past this is garbage

QUALIFIERS = {"1": "new", "3": "restore", "6": "status"}
# The same three qualifiers as receivers print them (E new event or opening, R restore or
# closing, P previously reported): the Contact ID message itself only carries the digit.
QUALIFIER_LETTERS = {"E": "1", "R": "3", "P": "6"}
SEPARATORS = " -"
_CID_DIGITS = "0123456789BCDEF"  # "A" is DTMF for 0 and never appears in decoded data
_HEARTBEAT = re.compile(r"1([0-9A-F]{2})([0-9A-Z]{1,3}) {11}@ {4}")
_CID = re.compile(
    r"5(?P<rr>[0-9A-F]{2})(?P<line>[0-9A-Z]{1,3})(?P<sep>[ -])(?P<mt>[0-9]{2})"
    r"(?P<acct>.{4})(?P<q>.)(?P<xyz>.{3})(?P<gg>.{2})(?P<ccc>.{3})(?P<s>[0-9A-F])?"
    r"(?P<ts>\d\d:\d\d:\d\d-\d\d/\d\d)?"
)
_RECEIVER_STATUS = re.compile(
    r"(?P<p>[01S])(?P<rr>[0-9A-F]{2})(?P<line>[0-9A-Z]{1,3}) {6}0000 (?P<x>[A-Z]) {2}"
    r"(?P<yy>[0-9A-F]{2})"
)
# Event letters and numbers of the receivers' internal messages (SG Automation Output,
# sections 4.1 and 4.5); anything else is still receiver status, only without a description.
_STATUS_EVENTS = {"A": "alarm", "R": "restore", "T": "trouble", "P": "two-way audio"}
_STATUS_MESSAGES = {
    "08": "UPS low battery restored", "11": "9V battery low", "12": "9V battery restored",
    "13": "COM2 absent", "14": "COM2 restored", "15": "AC failure", "16": "AC restored",
    "17": "UPS AC failure", "18": "UPS AC restored", "19": "CPM2 master failure",
    "D0": "CPM2 reset", "10": "faulty data received on line card",
    "20": "telephone line fault on line card", "30": "telephone line restored on line card",
    "40": "faulty call, no data received on line card",
}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    receiver: str = "01"
    line: str = "1"


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """A receiver's message about itself (account 0000): not an event from a unit."""

    event: str              # X: A alarm/fail, R restore, T trouble, P two-way audio
    number: str             # YY, two hex digits
    receiver: str = "01"
    line: str = "1"
    protocol: str = "0"     # "0", "S" or "1", as the receiver is set up

    @property
    def description(self) -> str:
        kind = _STATUS_EVENTS.get(self.event, f"event {self.event}")
        if self.event == "P":
            return f"two-way audio on line {self.number}"
        n = self.number
        if n[0] == "F" and n != "F0":
            what = f"line card {n[1]} absent"
        elif n[0] == "E" and n != "E0":
            what = f"line card {n[1]} restored"
        elif n[0] == "D" and n != "D0":
            what = f"line card {n[1]} reset"
        else:
            what = _STATUS_MESSAGES.get(n, f"internal event {n}")
        return f"{kind}: {what}"


@dataclass(frozen=True, slots=True)
class ContactIdFrame:
    """One Contact ID message. Fields keep their on-the-wire digits (strings)."""

    account: str
    qualifier: str          # "1" new event, "3" restore, "6" still present (or E, R, P)
    event_code: str         # XYZ, e.g. "101"
    group: str = "00"       # GG
    zone: str = "000"       # CCC
    receiver: str = "01"
    line: str = "1"
    message_type: str = "18"
    checksum: bool = False  # the checksum digit was (or is to be) on the line
    timestamp: str | None = None
    separator: str = " "    # between the line number and the message type

    @property
    def qualifier_digit(self) -> str:
        """The qualifier as the Contact ID message carries it ("1", "3" or "6"), whichever
        way the receiver printed it: the event and the check digit depend on this only."""
        return QUALIFIER_LETTERS.get(self.qualifier, self.qualifier)

    @property
    def qualifier_name(self) -> str:
        return QUALIFIERS.get(self.qualifier_digit, "unknown")

    @property
    def event_number(self) -> int | None:
        """``event_code`` as a number when it is decimal (nearly always)."""
        return int(self.event_code) if self.event_code.isdigit() else None

    @property
    def zone_number(self) -> int | None:
        return int(self.zone) if self.zone.isdigit() else None

    def check_digit(self) -> str:
        return checksum_digit(self.account + self.message_type + self.qualifier_digit
                              + self.event_code + self.group + self.zone)


Frame = Heartbeat | ContactIdFrame | ReceiverStatus


def _digit_value(ch: str) -> int:
    value = int(ch, 16)
    return 10 if value == 0 else value


def checksum_digit(digits: str) -> str:
    """The Contact ID check digit: makes the sum of all digits (0 counted as 10) a multiple
    of 15. A result of 0 is sent as F (15)."""
    total = sum(_digit_value(c) for c in digits)
    s = (15 - total % 15) % 15
    return "F" if s == 0 else format(s, "X")


def _check_digits(name: str, value: str, allowed: str = _CID_DIGITS) -> None:
    bad = [c for c in value if c not in allowed]
    if bad:
        raise DecodeError(f"{name} {value!r} has invalid digit {bad[0]!r} "
                          f"(allowed: 0-9, B-F)")


def decode(body: bytes) -> Frame:
    """One message without its DC4 terminator -> a frame, or DecodeError saying what is wrong."""
    if not body:
        raise DecodeError("empty message")
    if len(body) > MAX_FRAME:
        raise DecodeError(f"message too long ({len(body)} bytes, at most {MAX_FRAME})")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"non-ASCII byte in message: {body!r}") from None
    if not text.isprintable():
        raise DecodeError(f"control character in message: {body!r}")
    hb = _HEARTBEAT.fullmatch(text)
    if hb:
        return Heartbeat(receiver=hb.group(1), line=hb.group(2))
    if text[0] == "1" and "@" in text:
        raise DecodeError(f"malformed heartbeat {text!r} (expected '1011' + 11 spaces + '@' "
                          "+ 4 spaces)")
    rs = _RECEIVER_STATUS.fullmatch(text)
    if rs:
        return ReceiverStatus(event=rs["x"], number=rs["yy"], receiver=rs["rr"],
                              line=rs["line"], protocol=rs["p"])
    if text[0] in "0S" or (text[0] == "1" and "0000" in text):
        raise DecodeError(f"malformed receiver status {text!r} (expected "
                          "'0RRL' + 6 spaces + '0000 X  YY')")
    if text[0] != "5":
        raise DecodeError(f"unsupported protocol {text[0]!r} (only 5, Contact ID, the "
                          "heartbeat 1011...@ and receiver status 0RRL...0000)")
    m = _CID.fullmatch(text)
    if not m:
        raise DecodeError(f"malformed Contact ID message {text!r} (expected "
                          "5RRLs18AAAAQXYZGGCCC)")
    if m["mt"] not in ("18", "98"):
        raise DecodeError(f"message type {m['mt']!r} is not Contact ID (18 or 98)")
    _check_digits("account", m["acct"])
    if m["q"] not in QUALIFIERS and m["q"] not in QUALIFIER_LETTERS:
        raise DecodeError(f"qualifier {m['q']!r} invalid (1 or E new, 3 or R restore, "
                          "6 or P status)")
    _check_digits("event code", m["xyz"])
    _check_digits("group", m["gg"])
    _check_digits("zone", m["ccc"])
    frame = ContactIdFrame(
        account=m["acct"], qualifier=m["q"], event_code=m["xyz"], group=m["gg"],
        zone=m["ccc"], receiver=m["rr"], line=m["line"], message_type=m["mt"],
        checksum=m["s"] is not None, timestamp=m["ts"], separator=m["sep"],
    )
    if m["s"] is not None and m["s"] != frame.check_digit():
        raise DecodeError(f"checksum digit {m['s']!r} wrong (expected "
                          f"{frame.check_digit()!r})")
    if m["ts"] is not None:
        _check_timestamp(m["ts"])
    return frame


def _check_timestamp(ts: str) -> None:
    hh, mi, ss = int(ts[0:2]), int(ts[3:5]), int(ts[6:8])
    dd, mo = int(ts[9:11]), int(ts[12:14])
    if hh > 23 or mi > 59 or ss > 59 or not 1 <= dd <= 31 or not 1 <= mo <= 12:
        raise DecodeError(f"time stamp {ts!r} out of range")


def encode(frame: Frame) -> bytes:
    """A frame -> its bytes on the line, DC4 included. Validates like :func:`decode`."""
    if isinstance(frame, Heartbeat):
        if frame.receiver == "01" and frame.line == "1":
            text = "1011" + " " * 11 + "@" + " " * 4
        else:
            text = f"1{frame.receiver}{frame.line}" + " " * 11 + "@" + " " * 4
    elif isinstance(frame, ReceiverStatus):
        text = (f"{frame.protocol}{frame.receiver}{frame.line}" + " " * 6
                + f"0000 {frame.event}  {frame.number}")
    else:
        _check_digits("account", frame.account)
        _check_digits("event code", frame.event_code)
        _check_digits("group", frame.group)
        _check_digits("zone", frame.zone)
        if frame.qualifier not in QUALIFIERS and frame.qualifier not in QUALIFIER_LETTERS:
            raise DecodeError(f"qualifier {frame.qualifier!r} invalid")
        if len(frame.separator) != 1 or frame.separator not in SEPARATORS:
            raise DecodeError(f"separator {frame.separator!r} invalid (space or '-')")
        lengths = (len(frame.account), len(frame.event_code), len(frame.group), len(frame.zone))
        if lengths != (4, 3, 2, 3):
            raise DecodeError(f"field lengths {lengths} invalid (expected 4, 3, 2, 3)")
        text = (f"5{frame.receiver}{frame.line}{frame.separator}{frame.message_type}"
                f"{frame.account}"
                f"{frame.qualifier}{frame.event_code}{frame.group}{frame.zone}")
        if frame.checksum:
            text += frame.check_digit()
        if frame.timestamp:
            text += frame.timestamp
    data = text.encode("ascii")
    decode(data)  # never put on the line what we would refuse to read
    return data + bytes([DC4])


# -- framing ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    """What the line carried: ``kind`` is "frame" (``body`` without DC4), "ack", "nak" or
    "garbage" (``reason`` says why; the sender gets a NAK for it)."""

    kind: str
    body: bytes = b""
    reason: str = ""


class LineSplitter:
    """Splits a byte stream into messages on DC4; ACK and NAK bytes are tokens of their own.

    Every message the sender finishes gets exactly one token, so the line answers it exactly
    once (ACK or NAK) and the sender never waits out its 4 s retry for a reply that will not
    come. A message ends at DC4, or when the sender goes quiet for longer than ``stale_s``
    (it gave up and will resend): a partial message is then reported as truncated garbage,
    and the next byte starts a new message whatever came before.

    A message longer than :data:`MAX_FRAME` is reported once, as garbage, when it ends (not
    when it overflows: noise running into a real message is then answered with one NAK at
    that message's DC4, and the sender resends at once). Only its first 32 bytes are kept.
    CR, LF and NUL between messages are ignored.
    """

    def __init__(self, stale_s: float = 1.0, max_frame: int = MAX_FRAME) -> None:
        self.stale_s = stale_s
        self.max_frame = max_frame
        self._buf = bytearray()
        self._overlong = False      # past max_frame: _buf holds the head, the rest is skipped
        self._last = 0.0

    def feed(self, data: bytes, now: float) -> list[Token]:
        out: list[Token] = []
        if now - self._last > self.stale_s:
            self._end(out, terminated=False)
        if data:
            self._last = now
        for b in data:
            if b == ACK:
                out.append(Token("ack"))
            elif b == NAK:
                out.append(Token("nak"))
            elif b == DC4:
                self._end(out, terminated=True)
            elif self._overlong or (b in (0x0A, 0x0D, 0x00) and not self._buf):
                continue
            else:
                self._buf.append(b)
                if len(self._buf) > self.max_frame:
                    del self._buf[32:]
                    self._overlong = True
        return out

    def _end(self, out: list[Token], terminated: bool) -> None:
        """The current message ended (DC4, or the sender went quiet): one token for it."""
        if self._overlong:
            out.append(Token("garbage", bytes(self._buf) + b"...",
                             f"message longer than {self.max_frame} bytes"))
        elif self._buf and not terminated:
            out.append(Token("garbage", bytes(self._buf), "truncated message (sender went "
                                                          "quiet mid-message)"))
        elif self._buf:
            out.append(Token("frame", bytes(self._buf)))
        self._buf.clear()
        self._overlong = False

    @property
    def pending(self) -> int:
        return len(self._buf)
