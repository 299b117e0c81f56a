"""DC-09 framing against frames nobody here made (the standard's examples, pysiaalarm's
recorded cases; tests/data/arc/README.md) and against pysiaalarm's parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.arc import dc09
from agent.errors import DecodeError

STD_ADM = b'87CD0037"ADM-CID"9876R579BDFL789ABC#12345A[#12345A|1110 00 129]'
STD_SIA = b'CE110032"SIA-DCS"9876R579BDFL789ABC#12345A[#12345A|NFA129]'
ENC_NULL = (b'76D80055"*NULL"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D47'
            b'6A3E557CAD64D9')
PYSIA_KEY = b"AAAAAAAAAAAAAAAA"
WHEN = datetime(2026, 12, 5, 8, 30, 15, tzinfo=UTC)


def test_crc16_is_crc16_arc() -> None:
    assert dc09.crc16(b"123456789") == 0xBB3D   # the CRC-16/ARC check value


@pytest.mark.parametrize("frame", [STD_ADM, STD_SIA, ENC_NULL])
def test_known_frames_check(frame: bytes) -> None:
    parsed = dc09.decode(b"\n" + frame + b"\r", PYSIA_KEY)
    assert parsed.seq in (9876, 0)


def test_encoder_reproduces_the_standards_examples() -> None:
    adm = dc09.adm_cid(9876, "12345A", 110, qualifier=1, group=0, zone=129,
                       receiver="579BDF", line="789ABC")
    assert dc09.encode(adm, None) == b"\n" + STD_ADM + b"\r"
    sia = dc09.sia_dcs(9876, "12345A", "FA", zone=129, receiver="579BDF", line="789ABC")
    assert dc09.encode(sia, None) == b"\n" + STD_SIA + b"\r"


def test_decrypts_a_recorded_encrypted_null() -> None:
    frame = dc09.decode(b"\n" + ENC_NULL + b"\r", PYSIA_KEY)
    assert frame.kind == "NULL" and frame.encrypted and frame.account == "AAAB"
    assert frame.rest == "]_18:24:52,07-05-2020"
    assert frame.timestamp == datetime(2020, 7, 5, 18, 24, 52, tzinfo=UTC)


def test_bad_crc_and_length_are_refused() -> None:
    with pytest.raises(DecodeError, match="CRC"):
        dc09.decode(b"\n87CE" + STD_ADM[4:] + b"\r")
    with pytest.raises(DecodeError, match="length"):
        dc09.decode(b"\n87CD0038" + STD_ADM[8:] + b"\r")
    with pytest.raises(DecodeError):
        dc09.decode(b"\n" + ENC_NULL + b"\r", b"B" * 16)   # wrong key: not ASCII


@pytest.mark.parametrize("key", [None, b"0123456789abcdef", b"0123456789abcdef01234567",
                                 b"0123456789abcdef0123456789abcdef"])
@pytest.mark.parametrize("kind", ["adm", "sia", "null"])
def test_pysiaalarm_parses_what_we_send(key: bytes | None, kind: str) -> None:
    """pysiaalarm (Home Assistant's SIA receiver) reads our frames: CRC, fields, code,
    timestamp, AES-128/192/256."""
    from pysiaalarm import SIAAccount
    from pysiaalarm.event import SIAEvent
    from pysiaalarm.utils import ResponseType

    # R0: pysiaalarm echoes the receiver prefix and writes "None" into answers without one.
    msg = {"adm": dc09.adm_cid(42, "1234", 101, zone=3, receiver="0"),
           "sia": dc09.sia_dcs(42, "1234", "QA", zone=3, group=1, receiver="0"),
           "null": dc09.null(42, "1234", receiver="0")}[kind]
    now = datetime.now(UTC)
    raw = dc09.encode(msg, now, key)
    account = SIAAccount("1234", key.decode() if key else None)
    event = SIAEvent.from_line(raw.decode().strip(), {"1234": account})
    # (pysiaalarm's own valid_length reads the hex length as decimal: checked here instead)
    assert event.valid_message and int(event.length, 16) == len(event.full_message)
    assert event.account == "1234" and event.sequence == "0042"
    assert event.response == ResponseType.ACK
    if kind == "adm":
        assert (event.event_qualifier, event.event_type, event.partition, event.ri) == (
            "1", "101", "01", "003")
    if kind != "null":
        assert event.code == "QA"
    if kind == "sia":
        assert (event.ri, event.message) == ("1", "003")   # pysiaalarm: ri is the group
    # ... and we read its answer (encrypted when we encrypted), as an ACK for this message.
    answer = dc09.parse_response(event.create_response(), key)
    assert dc09.is_ack_for(answer, msg, key is not None)
    assert answer.encrypted == (key is not None and kind != "null") or answer.kind == "ACK"


def test_pysiaalarm_duh_and_nak_are_read() -> None:
    from pysiaalarm import SIAAccount
    from pysiaalarm.event import NAKEvent, SIAEvent

    account = SIAAccount("1234", None)
    raw = dc09.encode(dc09.sia_dcs(7, "1234", "ZX", zone=1, receiver="0"),
                      datetime.now(UTC))   # ZX: no such SIA code
    event = SIAEvent.from_line(raw.decode().strip(), {"1234": account})
    duh = dc09.parse_response(event.create_response(), None)
    assert duh.kind == "DUH" and duh.seq == 7
    nak = dc09.parse_response(NAKEvent().create_response(), None)
    assert nak.kind == "NAK" and nak.timestamp is not None


def test_encryption_pads_to_blocks_and_hides_the_payload() -> None:
    key = bytes(range(16))
    raw = dc09.encode(dc09.adm_cid(1, "1234", 101, zone=1), WHEN, key)
    assert b"1101" not in raw and raw.startswith(b"\n") and raw.endswith(b"\r")
    hex_part = raw.split(b"[", 1)[1][:-1]
    assert len(hex_part) % 32 == 0
    frame = dc09.decode(raw, key)
    assert frame.rest.startswith("#1234|1101 01 001]_08:30:15,12-05-2026")


def test_message_fields_are_checked() -> None:
    with pytest.raises(ValueError):
        dc09.adm_cid(1, "12", 101)            # account too short
    with pytest.raises(ValueError):
        dc09.adm_cid(10000, "1234", 101)      # sequence out of range
    with pytest.raises(ValueError):
        dc09.null(1, "1234", line="XYZ")
    with pytest.raises(ValueError):
        dc09.encode(dc09.null(1, "1234"), None, bytes(16))   # encrypted needs a timestamp
