"""The transmitter's answers policy (NAK, DUH, stale ACK, refusal) against a scripted
receiver on a real loopback socket; frames checked by pysiaalarm's parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pysiaalarm import SIAAccount
from pysiaalarm.event import SIAEvent

from agent.arc import dc09
from agent.arc.codes import ARC_CODES
from agent.arc.config import ArcConfig, ArcReceiver
from agent.arc.transmitter import Outcome, Transmitter

ACCOUNT = "1234"


def answer(kind: str, seq: str, ts: datetime | None = None) -> bytes:
    body = f'"{kind}"{seq}R0L0#{ACCOUNT}[]'
    if ts is not None:
        body += dc09.timestamp(ts)
    raw = body.encode()
    return b"\n" + f"{dc09.crc16(raw):04X}0{len(raw):03X}".encode() + raw + b"\r"


Script = Callable[[SIAEvent, int], bytes | None]


async def run(script: Script, code: str = "pull_cord", receivers: int = 1,
              retries: int = 2) -> tuple[list[Outcome], list[SIAEvent], list[tuple[str, bool]]]:
    seen: list[SIAEvent] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r")
                ev = SIAEvent.from_line(raw.decode().strip(), {ACCOUNT: SIAAccount(ACCOUNT)})
                assert ev.valid_message
                seen.append(ev)
                out = script(ev, len(seen))
                if out is not None:
                    writer.write(out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = ArcConfig(account=ACCOUNT, supervision_s=0, timeout_s=0.3, retries=retries,
                    retry_max_s=0.5,
                    receivers=tuple(ArcReceiver("127.0.0.1", port) for _ in range(receivers)))
    outcomes: list[Outcome] = []
    paths: list[tuple[str, bool]] = []
    tx = Transmitter(cfg, outcomes.append, lambda r, up, _why: paths.append((r, up)))
    tx.start()
    tx.enqueue("ev1", 0, ARC_CODES[code], 2)
    try:
        for _ in range(400):
            if outcomes:
                break
            await asyncio.sleep(0.01)
    finally:
        await tx.stop()
        server.close()
        await server.wait_closed()
    return outcomes, seen, paths


def test_nak_with_receiver_time_corrects_the_clock_and_is_sent_again() -> None:
    ahead = datetime.now(UTC) + timedelta(seconds=600)

    def script(ev: SIAEvent, n: int) -> bytes:
        return answer("NAK", "0000", ahead) if n == 1 else answer("ACK", ev.sequence)

    outcomes, seen, _ = asyncio.run(run(script))
    assert outcomes and outcomes[0].acked
    assert len(seen) == 2 and seen[0].sequence == seen[1].sequence
    assert abs((seen[1].timestamp - ahead).total_seconds()) < 5


def test_duh_sends_the_generic_code_once() -> None:
    def script(ev: SIAEvent, n: int) -> bytes:
        return answer("DUH" if ev.event_type == "154" else "ACK", ev.sequence)

    outcomes, seen, _ = asyncio.run(run(script, code="flood"))
    assert [e.event_type for e in seen] == ["154", "100"]
    assert outcomes[0].acked and outcomes[0].code == 100
    assert seen[0].sequence != seen[1].sequence       # a new message, a new number


def test_duh_everywhere_is_refused_not_retried_for_ever() -> None:
    outcomes, seen, paths = asyncio.run(run(lambda ev, n: answer("DUH", ev.sequence),
                                            code="flood", receivers=2))
    assert outcomes and not outcomes[0].acked and outcomes[0].answer == "DUH"
    assert [e.event_type for e in seen] == ["154", "100", "154", "100"]
    assert paths == []                                 # it answered: the path is up


def test_a_stale_ack_is_not_taken_for_this_message() -> None:
    def script(ev: SIAEvent, n: int) -> bytes:
        return answer("ACK", "9998") + answer("ACK", ev.sequence)

    outcomes, seen, _ = asyncio.run(run(script))
    assert outcomes[0].acked and outcomes[0].dc09_seq == int(seen[0].sequence)
    assert len(seen) == 1


def test_silence_marks_the_path_down_and_keeps_trying() -> None:
    def script(ev: SIAEvent, n: int) -> bytes | None:
        return None if n <= 2 else answer("ACK", ev.sequence)

    outcomes, seen, paths = asyncio.run(run(script, retries=2))
    assert outcomes[0].acked and len(seen) == 3
    assert [up for _, up in paths] == [False, True]


def test_sequence_numbers_continue_after_a_restart() -> None:
    saved: list[int] = []
    cfg = ArcConfig(account=ACCOUNT, receivers=(ArcReceiver("127.0.0.1", 9),))
    tx = Transmitter(cfg, lambda o: None, lambda *a: None, on_seq_block=saved.append)
    first = [tx.next_seq() for _ in range(150)]
    assert first[:2] == [1, 2] and saved == [100, 200]
    # a restart: numbers go on after the last block reserved, never back to 0001
    tx2 = Transmitter(cfg, lambda o: None, lambda *a: None, seq_start=saved[-1],
                      on_seq_block=saved.append)
    assert tx2.next_seq() == 201 and saved[-1] == 300
    # and wrap after 9999 to 0001
    tx3 = Transmitter(cfg, lambda o: None, lambda *a: None, seq_start=9999)
    assert tx3.next_seq() == 1


def test_an_alarm_no_receiver_takes_does_not_hold_back_the_next() -> None:
    """The receiver ignores the first alarm (code 154) for ever; the second alarm, queued
    behind it, still gets through after the first one's round."""
    async def main() -> tuple[list[Outcome], list[SIAEvent]]:
        seen: list[SIAEvent] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    raw = await reader.readuntil(b"\r")
                    ev = SIAEvent.from_line(raw.decode().strip(),
                                            {ACCOUNT: SIAAccount(ACCOUNT)})
                    seen.append(ev)
                    if ev.event_type != "154":
                        writer.write(answer("ACK", ev.sequence))
                        await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cfg = ArcConfig(account=ACCOUNT, supervision_s=0, timeout_s=0.2, retries=1,
                        retry_max_s=0.5, receivers=(ArcReceiver("127.0.0.1", port),))
        outcomes: list[Outcome] = []
        tx = Transmitter(cfg, outcomes.append, lambda *a: None)
        tx.start()
        tx.enqueue("stuck", 0, ARC_CODES["flood"], 1)
        tx.enqueue("next", 0, ARC_CODES["pull_cord"], 2)
        for _ in range(500):
            if outcomes:
                break
            await asyncio.sleep(0.01)
        assert tx.backlog == 1                      # the stuck one still waits, not dropped
        await tx.stop()
        server.close()
        await server.wait_closed()
        return outcomes, seen

    outcomes, seen = asyncio.run(main())
    assert [o.event_id for o in outcomes] == ["next"] and outcomes[0].acked
    assert [e.event_type for e in seen][:2] == ["154", "101"]
