"""Contact ID codec and line splitter: recorded bytes, round trips, and fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import DecodeError
from agent.model import Priority
from drivers.serial import codes
from drivers.serial.contact_id import (
    ACK,
    DC4,
    MAX_FRAME,
    NAK,
    QUALIFIER_LETTERS,
    ContactIdFrame,
    Heartbeat,
    LineSplitter,
    ReceiverStatus,
    Token,
    checksum_digit,
    decode,
    encode,
)
from tests.contact_id_variants import RECEIVER_VARIANTS

DATA = Path(__file__).resolve().parents[1] / "data" / "serial"


def frames_in(name: str) -> list[bytes]:
    tokens = LineSplitter().feed((DATA / name).read_bytes(), 0.0)
    assert all(t.kind == "frame" for t in tokens)
    return [t.body for t in tokens]


def one(name: str) -> ContactIdFrame | Heartbeat | ReceiverStatus:
    (body,) = frames_in(name)
    return decode(body)


def test_heartbeat() -> None:
    assert one("heartbeat.bin") == Heartbeat("01", "1")
    assert encode(Heartbeat()) == (DATA / "heartbeat.bin").read_bytes()


def test_pendant_new_and_restore() -> None:
    new = one("pendant_101_new.bin")
    assert new == ContactIdFrame(account="1234", qualifier="1", event_code="101", group="00",
                                 zone="015", receiver="01", line="1")
    assert isinstance(new, ContactIdFrame)
    assert (new.event_number, new.zone_number, new.qualifier_name) == (101, 15, "new")
    restore = one("pendant_101_restore.bin")
    assert isinstance(restore, ContactIdFrame) and restore.qualifier_name == "restore"


@pytest.mark.parametrize("name,code,zone,group", [
    ("smoke_111_new_zone3.bin", "111", "003", "01"),
    ("flood_154_new.bin", "154", "021", "01"),
    ("low_battery_302.bin", "302", "000", "00"),
    ("periodic_test_602.bin", "602", "000", "00"),
])
def test_recorded_events(name: str, code: str, zone: str, group: str) -> None:
    frame = one(name)
    assert isinstance(frame, ContactIdFrame)
    assert (frame.event_code, frame.zone, frame.group) == (code, zone, group)
    assert encode(frame) == (DATA / name).read_bytes()   # byte-exact round trip


def test_variants_checksum_timestamp_virtual_line() -> None:
    chk = one("pendant_101_checksum.bin")
    assert isinstance(chk, ContactIdFrame) and chk.checksum and chk.check_digit() == "7"
    assert encode(chk) == (DATA / "pendant_101_checksum.bin").read_bytes()
    ts = one("medical_100_timestamp.bin")
    assert isinstance(ts, ContactIdFrame)
    assert (ts.account, ts.event_code, ts.timestamp) == ("B2C4", "100", "14:03:27-09/11")
    vl = one("panic_120_virtual_line.bin")
    assert isinstance(vl, ContactIdFrame) and vl.line == "003" and vl.event_code == "120"


def test_session_stream() -> None:
    decoded = [decode(b) for b in frames_in("session.bin")]
    kinds = [f.event_code if isinstance(f, ContactIdFrame) else "hb" for f in decoded]
    assert kinds == ["hb", "101", "hb", "101", "302", "hb", "602"]


def test_every_recorded_bad_message_is_rejected_with_a_reason() -> None:
    tokens = LineSplitter().feed((DATA / "garbage.bin").read_bytes(), 0.0)
    reasons = []
    for t in tokens:
        if t.kind == "garbage":
            reasons.append(t.reason)
            continue
        with pytest.raises(DecodeError) as info:
            decode(t.body)
        reasons.append(str(info.value))
    assert len(reasons) == 9
    expected = ["malformed Contact ID", "qualifier '2'", "account '", "message type '28'",
                "checksum digit '0' wrong", "non-ASCII", "longer than 64", "malformed heartbeat",
                "time stamp"]
    for want, got in zip(expected, reasons, strict=True):
        assert want in got, (want, got)


def test_checksum_rule() -> None:
    # Sum of all digits (0 counts as 10) plus the check digit is a multiple of 15.
    for digits in ("1234181131010150", "0000180000000000", "BCDE18160200000"):
        s = checksum_digit(digits)
        total = sum((int(c, 16) or 10) for c in digits + s)
        assert total % 15 == 0 and s != "0"


def test_splitter_acks_naks_and_noise_between_frames() -> None:
    sp = LineSplitter()
    data = bytes([ACK]) + b"\r\n" + (DATA / "heartbeat.bin").read_bytes() + bytes([NAK])
    assert [t.kind for t in sp.feed(data, 0.0)] == ["ack", "frame", "nak"]


def test_splitter_reassembles_across_reads_and_drops_stale_prefix() -> None:
    sp = LineSplitter(stale_s=1.0)
    raw = (DATA / "pendant_101_new.bin").read_bytes()
    assert sp.feed(raw[:7], 0.0) == []
    (tok,) = sp.feed(raw[7:], 0.5)
    assert tok.kind == "frame" and decode(tok.body).event_code == "101"  # type: ignore[union-attr]
    assert sp.feed(raw[:7], 1.0) == []                 # sender stops mid-message...
    out = sp.feed(raw, 5.0)                            # ...and resends it whole later
    assert [t.kind for t in out] == ["garbage", "frame"]
    assert "truncated" in out[0].reason


def test_splitter_overlong_is_one_reject() -> None:
    sp = LineSplitter()
    out = sp.feed(b"7" * 500 + bytes([DC4]) + (DATA / "heartbeat.bin").read_bytes(), 0.0)
    assert [t.kind for t in out] == ["garbage", "frame"]


def test_encode_refuses_invalid_frames() -> None:
    with pytest.raises(DecodeError):
        encode(ContactIdFrame(account="12A4", qualifier="1", event_code="101"))
    with pytest.raises(DecodeError):
        encode(ContactIdFrame(account="1234", qualifier="2", event_code="101"))
    with pytest.raises(DecodeError):
        encode(ContactIdFrame(account="1234", qualifier="1", event_code="1011"))


def test_code_mapping() -> None:
    assert codes.inbound("101", "1") == codes.CodeSpec("pendant", Priority.ALARM,
                                                       "Personal emergency")
    assert codes.inbound("100", "1").priority == Priority.ALARM
    assert codes.inbound("120", "1").type == "panic"
    assert codes.inbound("111", "1").type == "smoke"
    assert codes.inbound("154", "1").type == "flood"
    assert codes.inbound("110", "6").priority == Priority.ALARM     # still present
    r = codes.inbound("101", "3")
    assert (r.type, r.priority) == ("pendant_restore", Priority.INFO)
    assert codes.inbound("301", "1").priority == Priority.WARNING
    assert codes.inbound("302", "1").type == "battery_low"
    assert codes.inbound("381", "1").priority == Priority.WARNING
    assert codes.inbound("602", "1") == codes.CodeSpec("test", Priority.INFO, "Periodic test")
    assert codes.inbound("199", "1").priority == Priority.ALARM      # unknown 1xx is an alarm
    assert codes.inbound("3BC", "1").priority == Priority.WARNING
    assert codes.outbound("fall") == "100"
    assert codes.outbound("pull_cord", 101) == "101"
    assert codes.outbound("smoke") == "111"
    assert codes.outbound("something_new") == "100"


# -- fuzzing ---------------------------------------------------------------------------------

_cid = st.sampled_from("0123456789BCDEF")


@st.composite
def cid_frames(draw: st.DrawFn) -> ContactIdFrame:
    def digits(n: int) -> str:
        return "".join(draw(st.lists(_cid, min_size=n, max_size=n)))

    ts = draw(st.one_of(st.none(), st.builds(
        lambda h, m, s, d, mo: f"{h:02d}:{m:02d}:{s:02d}-{d:02d}/{mo:02d}",
        st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(1, 31),
        st.integers(1, 12))))
    return ContactIdFrame(
        account=digits(4), qualifier=draw(st.sampled_from("136ERP")), event_code=digits(3),
        group=digits(2), zone=digits(3),
        receiver=draw(st.from_regex(r"[0-9A-F]{2}", fullmatch=True)),
        line=draw(st.from_regex(r"[0-9A-Z]{1,3}", fullmatch=True)),
        message_type=draw(st.sampled_from(["18", "98"])), checksum=draw(st.booleans()),
        timestamp=ts, separator=draw(st.sampled_from(" -")),
    )


def receiver_status() -> st.SearchStrategy[ReceiverStatus]:
    return st.builds(
        ReceiverStatus, event=st.sampled_from("ARTP"),
        number=st.from_regex(r"[0-9A-F]{2}", fullmatch=True),
        receiver=st.from_regex(r"[0-9A-F]{2}", fullmatch=True),
        line=st.from_regex(r"[0-9A-Z]{1,3}", fullmatch=True), protocol=st.sampled_from("0S1"))


@settings(max_examples=300, deadline=None)
@given(cid_frames())
def test_fuzz_round_trip(frame: ContactIdFrame) -> None:
    data = encode(frame)
    assert data[-1] == DC4 and len(data) <= MAX_FRAME + 1
    assert decode(data[:-1]) == frame


@settings(max_examples=200, deadline=None)
@given(receiver_status())
def test_fuzz_receiver_status_round_trip(status: ReceiverStatus) -> None:
    data = encode(status)
    assert decode(data[:-1]) == status and status.description


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_never_crashes(data: bytes) -> None:
    try:
        frame = decode(data)
    except DecodeError:
        return
    # Whatever decodes must re-encode to the same bytes (no silent normalisation).
    assert encode(frame)[:-1] == data


@settings(max_examples=300, deadline=None)
@given(cid_frames(), st.integers(0, 40), st.sampled_from(list(b"0123456789BCDEF 5@")))
def test_fuzz_single_digit_corruption_never_passes_as_a_different_checksummed_frame(
        frame: ContactIdFrame, pos: int, replacement: int) -> None:
    if not frame.checksum:
        frame = ContactIdFrame(**{**_asdict(frame), "checksum": True})
    data = bytearray(encode(frame)[:-1])
    pos %= len(data)
    if data[pos] == replacement:
        return
    data[pos] = replacement
    try:
        got = decode(bytes(data))
    except DecodeError:
        return
    # A corrupted message may still parse only if the Contact ID content is unchanged
    # (e.g. the header or time stamp was hit) or the check digit happens to absorb it.
    if isinstance(got, ContactIdFrame) and got.checksum:
        total = sum((int(c, 16) or 10) for c in (got.account + got.message_type
                                                 + got.qualifier_digit + got.event_code
                                                 + got.group + got.zone + got.check_digit()))
        assert total % 15 == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(cid_frames().map(encode), receiver_status().map(encode),
                          st.binary(max_size=40)), max_size=12),
       st.lists(st.integers(1, 30), min_size=1, max_size=10))
def test_fuzz_splitter_never_loses_a_good_frame_after_a_terminator(
        chunks: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(chunks)
    sp = LineSplitter()
    tokens = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        tokens += sp.feed(stream[pos:pos + n], 0.0)
        pos, i = pos + n, i + 1
    assert sp.pending <= MAX_FRAME
    # A good frame: a non-empty body after a terminator (a lone DC4 is no message, and CR, LF
    # and NUL before a message are line noise the splitter drops).
    good = [c for j, c in enumerate(chunks) if c.endswith(bytes([DC4]))
            and (j == 0 or chunks[j - 1].endswith(bytes([DC4])))
            and len(c) > 1 and c[0] not in (0x0A, 0x0D, 0x00) and DC4 not in c[:-1]
            and not (set(c[:-1]) & {ACK, NAK})]
    bodies = {t.body for t in tokens if t.kind == "frame"}
    for g in good:
        assert g[:-1] in bodies


def _asdict(frame: ContactIdFrame) -> dict[str, object]:
    return {k: getattr(frame, k) for k in ContactIdFrame.__slots__}  # type: ignore[attr-defined]


# -- noise on the line (issue 16 item 8) --------------------------------------------------

NOISE = (DATA / "noise_burst.bin").read_bytes()           # 300 bytes, no DC4/ACK/NAK
PENDANT = (DATA / "pendant_101_new.bin").read_bytes()


def test_splitter_noise_burst_then_pause_then_frame_is_answered() -> None:
    # Issue 16 item 8: noise past MAX_FRAME with no terminator left the splitter skipping,
    # and the next good frame got neither ACK nor NAK (the unit waits 4 s and resends).
    for noise in (NOISE, NOISE * 40, NOISE[:20]):           # past the limit, far past, short
        sp = LineSplitter(stale_s=1.0)
        assert sp.feed(noise, 0.0) == []                     # not answered while it lasts
        assert sp.pending <= MAX_FRAME
        (tok,) = sp.feed(b"", 1.5)                           # the line's idle read: one NAK
        assert tok.kind == "garbage"
        assert sp.feed(PENDANT, 1.6) == [Token("frame", PENDANT[:-1])]
        # Without an idle read in between, the stale noise is still answered first.
        sp = LineSplitter(stale_s=1.0)
        sp.feed(noise, 0.0)
        assert [t.kind for t in sp.feed(PENDANT, 2.0)] == ["garbage", "frame"]


def test_splitter_noise_running_into_a_frame_is_one_nak_at_its_end() -> None:
    # No pause: the noise and the frame are one message to the splitter. It is answered once,
    # when it ends (so the unit, waiting for its reply, resends at once), not at the overflow.
    sp = LineSplitter()
    assert sp.feed(NOISE, 0.0) == []
    (tok,) = sp.feed(PENDANT, 0.2)
    assert tok.kind == "garbage" and "longer than" in tok.reason
    assert tok.body.startswith(NOISE[:32])
    assert sp.feed(PENDANT, 0.4) == [Token("frame", PENDANT[:-1])]   # the resend


def test_splitter_noise_with_a_terminator_inside() -> None:
    # Noise holding a DC4 (and CR/LF): each part is one message, answered once; the tail
    # without a terminator is dropped as truncated once the line goes quiet.
    sp = LineSplitter()
    noise = NOISE[:10] + bytes([DC4]) + b"\r\n" + NOISE[100:250]
    assert [t.kind for t in sp.feed(noise, 0.0)] == ["frame"]      # decode() will NAK it
    assert [t.reason for t in sp.feed(b"", 1.2)] == ["message longer than 64 bytes"]
    assert sp.feed(PENDANT, 1.3) == [Token("frame", PENDANT[:-1])]


def noise() -> st.SearchStrategy[bytes]:
    """Line noise, short and (often) longer than any message."""
    return st.one_of(st.binary(max_size=80), st.binary(min_size=MAX_FRAME, max_size=600))


@settings(max_examples=300, deadline=None)
@given(noise(), cid_frames().map(encode))
def test_fuzz_any_noise_then_a_pause_never_costs_the_next_frame(noise: bytes,
                                                                frame: bytes) -> None:
    sp = LineSplitter(stale_s=1.0)
    sp.feed(noise, 0.0)
    sp.feed(b"", 1.5)
    assert sp.feed(frame, 1.6) == [Token("frame", frame[:-1])]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(cid_frames().map(encode), noise()), max_size=8))
def test_fuzz_every_message_is_answered_exactly_once_at_its_end(chunks: list[bytes]) -> None:
    # Fed byte by byte with no pause: a DC4 that ends a message (anything but ACK/NAK and
    # leading CR/LF/NUL since the last DC4) yields exactly one frame or garbage token; no
    # other byte yields one. That is one ACK or NAK per message the unit sent.
    sp = LineSplitter()
    started = False
    for b in b"".join(chunks):
        answers = [t for t in sp.feed(bytes([b]), 0.0) if t.kind in ("frame", "garbage")]
        if b == DC4:
            assert len(answers) == int(started)
            started = False
        else:
            assert answers == []
            started = started or (b not in (ACK, NAK) and (started or b not in (0x0A, 0x0D, 0)))


# -- what real receivers send (issue 17, "Contact ID from real receivers") ------------------
# Each variant beside the canonical frame (digit qualifier, space separator) it must equal:
# everything but the on-the-wire spelling of the qualifier and the separator is the same.

def _canonical(frame: ContactIdFrame) -> ContactIdFrame:
    return ContactIdFrame(**{**_asdict(frame), "qualifier": frame.qualifier_digit,
                             "separator": " "})


@pytest.mark.parametrize("name,canonical", RECEIVER_VARIANTS)
def test_receiver_variants_decode_to_the_canonical_event(name: str, canonical: bytes) -> None:
    raw = (DATA / name).read_bytes()
    frame = one(name)
    assert isinstance(frame, ContactIdFrame)
    want = decode(canonical)
    assert isinstance(want, ContactIdFrame)
    assert _canonical(frame) == want
    assert frame.qualifier_name == want.qualifier_name
    assert frame.check_digit() == want.check_digit()
    assert codes.inbound(frame.event_code, frame.qualifier_digit) == \
        codes.inbound(want.event_code, want.qualifier)
    assert encode(frame) == raw                     # byte-exact: nothing normalised away


def test_olarm_frame_fields() -> None:
    # Olarm: "501E-180766E13001002": account 0766, E new event, 130 burglary, partition 01,
    # zone 002; header 5, receiver 01, line E, separator '-'.
    frame = one("olarm_130_letter_qualifier.bin")
    assert isinstance(frame, ContactIdFrame)
    assert (frame.receiver, frame.line, frame.separator, frame.account, frame.qualifier,
            frame.event_code, frame.group, frame.zone) == \
        ("01", "E", "-", "0766", "E", "130", "01", "002")
    assert frame.qualifier_name == "new"


def test_clock_suffix_and_hex_digits_survive() -> None:
    clock = one("duress_121_clock_letter.bin")
    assert isinstance(clock, ContactIdFrame) and clock.timestamp == "23:59:07-31/12"
    hexd = one("medical_100_hex_digits_letter.bin")
    assert isinstance(hexd, ContactIdFrame)
    assert (hexd.account, hexd.group, hexd.zone, hexd.zone_number) == ("BC2F", "0B", "DEF", None)


@pytest.mark.parametrize("name,status", [
    ("receiver_audio_line4.bin", ReceiverStatus("P", "04", "01", "1", "1")),
    ("receiver_ac_failure_0form.bin", ReceiverStatus("A", "15", "01", "1", "0")),
    ("receiver_ac_restored_sform.bin", ReceiverStatus("R", "16", "01", "1", "S")),
])
def test_receiver_internal_messages_are_receiver_status(name: str,
                                                        status: ReceiverStatus) -> None:
    assert one(name) == status
    assert encode(status) == (DATA / name).read_bytes()
    assert status.description in ("two-way audio on line 04", "alarm: AC failure",
                                  "restore: AC restored")


def test_malformed_variants_are_still_rejected() -> None:
    tokens = LineSplitter().feed((DATA / "garbage_variants.bin").read_bytes(), 0.0)
    assert [t.kind for t in tokens] == ["frame"] * 9
    expected = ["qualifier 'A'", "malformed Contact ID", "zone '", "checksum digit '5' wrong",
                "malformed Contact ID", "malformed receiver status",
                "malformed receiver status", "malformed Contact ID",
                "malformed receiver status"]
    for want, t in zip(expected, tokens, strict=True):
        with pytest.raises(DecodeError) as info:
            decode(t.body)
        assert want in str(info.value), (want, str(info.value))


_BAD_CHARS = "AGHKXZaez#_!/."       # none is a Contact ID digit or a qualifier letter


@settings(max_examples=400, deadline=None)
@given(cid_frames(), st.integers(0, 100), st.sampled_from(_BAD_CHARS),
       st.sampled_from(["substitute", "delete", "check_digit", "clock"]))
def test_fuzz_malformed_variants_are_naked(frame: ContactIdFrame, pos: int, bad: str,
                                           how: str) -> None:
    """Accepting the receivers' spellings must not let garbage in: a bad character in the
    Contact ID digits, a missing digit, a wrong check digit or a cut clock is still refused
    (and the line NAKs whatever ``decode`` refuses)."""
    text = encode(frame)[:-1].decode()
    head = text.index(frame.message_type, len(frame.line) + 3)   # "5RRL" + separator
    body_at = head + 2                                           # AAAAQXYZGGCCC[S][clock]
    if how == "substitute":
        i = body_at + pos % 13
        text = text[:i] + bad + text[i + 1:]
    elif how == "delete":
        if frame.checksum or frame.timestamp:
            frame = ContactIdFrame(**{**_asdict(frame), "checksum": False, "timestamp": None})
            text = encode(frame)[:-1].decode()
        i = body_at + pos % 13
        text = text[:i] + text[i + 1:]
    elif how == "check_digit":
        frame = ContactIdFrame(**{**_asdict(frame), "checksum": True, "timestamp": None})
        text = encode(frame)[:-1].decode()
        good = text[-1]
        wrong = "123456789BCDEF"[(pos % 14)]
        if wrong == good:
            wrong = "F" if good != "F" else "1"
        text = text[:-1] + wrong
    else:
        frame = ContactIdFrame(**{**_asdict(frame), "timestamp": "12:34:56-01/02"})
        # Cut 1..12 of the 14 clock characters (a lone digit left over would be a check digit).
        text = encode(frame)[:-1].decode()[:-1 - pos % 12]
    with pytest.raises(DecodeError):
        decode(text.encode())


def test_qualifier_letters_are_the_documented_three() -> None:
    assert QUALIFIER_LETTERS == {"E": "1", "R": "3", "P": "6"}
