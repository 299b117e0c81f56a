"""The store under the faults a Pi's SD card and a second process bring (issue 16, items
1, 2, 4, 5, 6, 7 and the file modes of 13): each test fails on the store as it was."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.errors import StoreLockedError, StoreWriteError
from agent.model import Event, Priority
from agent.store.sqlite_store import SqliteStore, StoreNotice
from tests.store_faults import FaultPlan


def _ev(prio: Priority, n: int = 0, pad: int = 0) -> Event:
    return Event(type="test_" + prio.label, priority=prio, device_id="dev",
                 data={"n": n, "pad": "x" * pad})


def _open(path: Path, notices: list[StoreNotice] | None = None, **kw) -> SqliteStore:
    s = SqliteStore(path, "hub-1", **kw)
    if notices is not None:
        s.on_notice = notices.append
    s.open()
    return s


# -- item 1: a seq is never reused -------------------------------------------------------------
def test_failed_commit_never_reuses_its_seq(tmp_path: Path) -> None:
    plan = FaultPlan()
    s = _open(tmp_path / "events.db", connect=plan.connect)
    first = s.append([_ev(Priority.ALARM, 1)])[0].seq
    sent: list[int] = []
    plan.fail("COMMIT")
    with pytest.raises(StoreWriteError) as info:
        s.append([_ev(Priority.ALARM, 2)], before_commit=lambda rows: sent.extend(
            r.seq for r in rows))
    assert [r.seq for r in info.value.rows] == sent == [first + 1]
    again = s.append([_ev(Priority.ALARM, 3)])[0].seq
    assert again > first + 1, "the seq of the failed commit was handed out again"
    assert s.pending_count() == 2


def test_seq_continues_after_crash_above_anything_sent_early(tmp_path: Path) -> None:
    """An alarm sent before its commit, then a crash before the commit: its seq may be on the
    broker, so the next run must not issue it again."""
    path = tmp_path / "events.db"
    code = (
        "import os, sys\n"
        "from agent.store.sqlite_store import SqliteStore\n"
        "from agent.model import Event, Priority\n"
        f"s = SqliteStore({str(path)!r}, 'hub-1'); s.open()\n"
        "s.append([Event(type='a', priority=Priority.ALARM, device_id='d')])\n"
        "def crash(rows):\n"
        "    print(rows[0].seq, flush=True); os._exit(9)\n"
        "s.append([Event(type='b', priority=Priority.ALARM, device_id='d')], before_commit=crash)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    on_wire = int(out.stdout.strip())
    s = _open(path)
    assert s.pending_count() == 1
    assert s.append([_ev(Priority.ALARM)])[0].seq > on_wire


# -- item 2: the WAL counts; a full disk keeps storing alarms -------------------------------
def test_budget_counts_the_wal(tmp_path: Path) -> None:
    s = _open(tmp_path / "events.db", max_bytes=2 << 20, reserve_bytes=256 << 10)
    for chunk in range(40):
        s.append([_ev(Priority.TELEMETRY, chunk * 100 + i, pad=400) for i in range(100)])
    wal = (tmp_path / "events.db-wal").stat().st_size
    main_live = s.used_bytes() - wal
    assert main_live + wal <= 2 << 20
    assert wal <= 128 << 10, f"WAL of {wal} bytes beside a 2 MB budget"
    assert s.evicted["telemetry"] > 0


def test_disk_full_degrades_then_recovers_and_rearms_reserve(tmp_path: Path) -> None:
    plan = FaultPlan()
    s = _open(tmp_path / "events.db", connect=plan.connect, reserve_bytes=64 << 10)
    s.append([_ev(Priority.TELEMETRY, i, pad=300) for i in range(300)])
    assert s.reserve_path.stat().st_size == 64 << 10
    # The card is full: the next two commits fail as SQLite fails them, then space is freed.
    plan.fail("COMMIT", times=2, code=sqlite3.SQLITE_FULL, message="database or disk is full")
    out = s.append([_ev(Priority.ALARM, 1), _ev(Priority.TELEMETRY, 2), _ev(Priority.WARNING, 3)])
    assert [e.priority for e in out] == [Priority.ALARM, Priority.WARNING]
    assert s.degraded and not s.reserve_path.exists()
    assert s.evicted["telemetry"] > 0
    # While degraded, telemetry is dropped and alarms are stored without a fault.
    assert s.append([_ev(Priority.TELEMETRY, 4)]) == []
    assert len(s.append([_ev(Priority.ALARM, 5)])) == 1
    assert s.dropped["telemetry"] >= 2
    # Space is back (nothing fails any more): maintain() re-arms the reserve.
    assert s.maintain() is True
    assert not s.degraded and s.reserve_path.stat().st_size == 64 << 10
    assert len(s.append([_ev(Priority.TELEMETRY, 6)])) == 1


def test_disk_full_with_nothing_to_free_raises_with_the_rows(tmp_path: Path) -> None:
    plan = FaultPlan()
    s = _open(tmp_path / "events.db", connect=plan.connect, reserve_bytes=0)
    plan.fail("COMMIT", times=-1, code=sqlite3.SQLITE_FULL, message="database or disk is full")
    with pytest.raises(StoreWriteError) as info:
        s.append([_ev(Priority.ALARM, 1), _ev(Priority.TELEMETRY, 2)])
    assert [r.priority for r in info.value.rows] == [Priority.ALARM]
    assert json.loads(info.value.rows[0].payload)["data"]["n"] == 1


def test_moved_aside_stores_are_freed_before_alarms_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    old = tmp_path / "events.db.corrupt-20260101T000000"
    old.write_bytes(b"x" * 100_000)
    plan = FaultPlan()
    s = _open(path, connect=plan.connect)
    plan.fail("COMMIT", times=1, code=sqlite3.SQLITE_FULL, message="database or disk is full")
    assert len(s.append([_ev(Priority.ALARM)])) == 1
    assert not old.exists()


# -- item 4: a lock is not corruption ----------------------------------------------------------
def test_a_locked_store_is_waited_on_and_never_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = _open(path)
    s.append([_ev(Priority.ALARM, 1)])
    s.close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "db.execute('PRAGMA locking_mode=EXCLUSIVE'); db.execute('BEGIN EXCLUSIVE')\n"
         "db.execute('CREATE TABLE IF NOT EXISTS other(x)'); db.execute('COMMIT')\n"
         "print('held', flush=True); sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError, match="locked by another process"):
            _open(path, lock_timeout_s=1.5)
        assert time.monotonic() - t0 >= 1.4, "gave up without waiting"
        assert list(tmp_path.glob("events.db.corrupt-*")) == []
    finally:
        holder.kill()
        holder.communicate()
    s2 = _open(path)
    assert s2.pending_count() == 1 and s2.recovered_from is None


# -- item 5: corruption salvages what is readable -------------------------------------------
def _fill_pending(path: Path, n: int = 3000) -> set[str]:
    s = _open(path)
    ids: set[str] = set()
    for i in range(0, n, 100):
        out = s.append([_ev(Priority.ALARM if (i + j) % 50 == 0 else Priority.TELEMETRY,
                            i + j, pad=200) for j in range(100)])
        ids.update(e.id for e in out)
    s.close()
    return ids


def test_corrupt_middle_of_file_salvages_pending_events(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    ids = _fill_pending(path)
    size = path.stat().st_size
    rng = random.Random(7)
    with open(path, "r+b") as fh:
        fh.seek((size // 2) // 4096 * 4096)
        fh.write(rng.randbytes(4096))
    notices: list[StoreNotice] = []
    s = _open(path, notices)
    assert s.recovered_from is not None
    kept = {r[0] for r in s.db.execute("SELECT id FROM events")}
    assert kept <= ids
    # One 4 KB page holds about 14 of these rows: everything else must be back.
    assert len(kept) >= len(ids) - 40, f"salvaged {len(kept)} of {len(ids)}"
    resets = [n for n in notices if n.type == "store_reset"]
    assert len(resets) == 1 and resets[0].data["reason"] == "corrupt"
    assert resets[0].data["salvaged_pending"] == len(kept)
    # seq goes on above the salvaged rows.
    top = s.db.execute("SELECT max(seq) FROM events").fetchone()[0]
    assert s.append([_ev(Priority.ALARM)])[0].seq > top


def test_damaged_index_page_loses_no_row(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    ids = _fill_pending(path, 1000)
    db = sqlite3.connect(path)
    root = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name='events_by_prio'").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size + 8)
        fh.write(b"\xff" * 64)
    s = _open(path)
    assert s.recovered_from is not None
    assert {r[0] for r in s.db.execute("SELECT id FROM events")} == ids


# -- item 6: resets are reported and seq never goes back -------------------------------------
def _crash_after(path: Path, n: int) -> int:
    """Append ``n`` alarms in a child that then dies like kill -9; returns the last seq."""
    code = (
        "import os\n"
        "from agent.store.sqlite_store import SqliteStore\n"
        "from agent.model import Event, Priority\n"
        f"s = SqliteStore({str(path)!r}, 'hub-1'); s.open()\n"
        f"out = s.append([Event(type='a', priority=Priority.ALARM, device_id='d')"
        f" for _ in range({n})])\n"
        "print(out[-1].seq, flush=True); os._exit(9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    return int(out.stdout.strip())


def test_zero_length_database_is_reported_and_seq_goes_on(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    path = tmp_path / "events.db"
    s = _open(path)
    last = s.append([_ev(Priority.ALARM) for _ in range(5)])[-1].seq
    s.close()
    path.write_bytes(b"")
    notices: list[StoreNotice] = []
    s2 = _open(path, notices)
    assert [n.data["reason"] for n in notices if n.type == "store_reset"] == ["empty_file"]
    assert notices[0].data["last_seq_committed"] == last
    assert "empty_file" in caplog.text
    assert s2.append([_ev(Priority.ALARM)])[0].seq > last


def test_lost_wal_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = _open(path)
    s.append([_ev(Priority.ALARM)])
    s.close()
    last = _crash_after(path, 5)
    Path(str(path) + "-wal").unlink()
    notices: list[StoreNotice] = []
    s2 = _open(path, notices)
    resets = [n for n in notices if n.type == "store_reset"]
    assert len(resets) == 1 and resets[0].data["reason"] == "lost_transactions"
    assert resets[0].data["events_lost_at_most"] == 5
    assert s2.append([_ev(Priority.ALARM)])[0].seq > last
    # Reported once: a restart finds nothing new.
    s2.close()
    again: list[StoreNotice] = []
    _open(path, again)
    assert again == []


def test_damaged_wal_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _open(path).close()
    _crash_after(path, 3)
    wal = Path(str(path) + "-wal")
    data = bytearray(wal.read_bytes())
    data[40:48] = b"\x00" * 8            # the first frame's checksum no longer holds
    wal.write_bytes(bytes(data))
    notices: list[StoreNotice] = []
    _open(path, notices)
    assert [n.data["reason"] for n in notices] == ["lost_transactions"]


def test_fresh_install_reports_nothing(tmp_path: Path) -> None:
    notices: list[StoreNotice] = []
    s = _open(tmp_path / "events.db", notices)
    assert notices == [] and s.append([_ev(Priority.INFO)])[0].seq == 1


# -- item 7: a damaged row is never published ---------------------------------------------------
def test_damaged_row_is_quarantined_and_reported(tmp_path: Path) -> None:
    notices: list[StoreNotice] = []
    s = _open(tmp_path / "events.db", notices)
    good, bad = s.append([_ev(Priority.ALARM, 1), _ev(Priority.ALARM, 2)])
    garbage = bytes(random.Random(3).randbytes(235))
    s.db.execute("UPDATE events SET payload=? WHERE seq=?", (garbage, bad.seq))
    batch = s.next_batch({}, 10)
    assert [p.seq for p in batch] == [good.seq]
    assert [n.type for n in notices] == ["store_damaged_row"]
    data = notices[0].data
    assert data["seq"] == bad.seq and data["event_id"] == bad.id
    assert data["priority"] == "alarm" and data["payload_bytes"] == 235
    assert s.db.execute("SELECT count(*) FROM damaged").fetchone()[0] == 1
    assert [d["id"] for d in s.pending_alarms()] == [good.id]
    json.dumps(data)  # the warning's data is publishable as it is


def test_row_whose_payload_belongs_to_another_row_is_not_published(tmp_path: Path) -> None:
    s = _open(tmp_path / "events.db")
    a, b = s.append([_ev(Priority.WARNING, 1), _ev(Priority.WARNING, 2)])
    payload_a = s.db.execute("SELECT payload FROM events WHERE seq=?", (a.seq,)).fetchone()[0]
    s.db.execute("UPDATE events SET payload=? WHERE seq=?", (payload_a, b.seq))
    assert [p.seq for p in s.next_batch({}, 10)] == [a.seq]


# -- item 13: store files are not world-readable ----------------------------------------------
def test_store_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        s = _open(tmp_path / "events.db")
        s.append([_ev(Priority.ALARM)])
    finally:
        os.umask(old)
    for name, mode in (("events.db", 0o640), ("events.db-wal", 0o640),
                       ("events.db.reserve", 0o600), ("events.db.seq", 0o600)):
        got = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert got & ~mode == 0, f"{name} is {oct(got)}"


# -- refused alarms survive a crash: the spill file ------------------------------------------
def test_refused_alarm_is_spilled_and_imported_by_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    plan = FaultPlan()
    s = _open(path, connect=plan.connect)
    spill = tmp_path / "events.db.spill"
    assert spill.stat().st_size == 256 * 1024          # allocated up front
    plan.fail("COMMIT", times=-1)
    alarm = _ev(Priority.ALARM, 1)
    with pytest.raises(StoreWriteError) as info:
        s.append([alarm, _ev(Priority.TELEMETRY, 2)])
    seq = info.value.rows[0].seq
    # kill -9 now: no close(). The next run finds the alarm pending, with its seq.
    s2 = _open(path)
    rows = s2.db.execute("SELECT seq, id FROM events").fetchall()
    assert rows == [(seq, alarm.id)]
    assert [p.seq for p in s2.next_batch({}, 10)] == [seq]
    s2.close()
    assert _open(path).pending_count() == 1             # imported once, not twice


def test_spill_is_cleared_once_the_refused_alarm_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    plan = FaultPlan()
    s = _open(path, connect=plan.connect)
    plan.fail("COMMIT", times=1)
    alarm = _ev(Priority.ALARM, 1)
    with pytest.raises(StoreWriteError):
        s.append([alarm])
    stored = s.append([alarm])                          # the agent's retry
    s2 = _open(path)
    assert [r[0] for r in s2.db.execute("SELECT seq FROM events")] == [stored[0].seq]


def test_a_long_salvage_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = _open(path)
    for i in range(0, 12_000, 2000):
        s.append([_ev(Priority.TELEMETRY, i + j, pad=50) for j in range(2000)])
    s.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek((size // 2) // 4096 * 4096)
        fh.write(random.Random(5).randbytes(4096))
    said: list[str] = []
    s2 = SqliteStore(path, "hub-1", on_progress=said.append)
    s2.open()
    assert s2.recovered_from is not None
    assert len(said) >= 2 and said[0] == "salvaging a corrupt event store: 5000 rows read"


# -- what `tec-agent status` shows of a store's health ---------------------------------------
def test_status_shows_the_stores_health(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    path = tmp_path / "events.db"
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'hub_id = "hub-1"\n[store]\npath = "{path}"\nreserve_mb = 0.5\n')
    plan = FaultPlan()
    s = SqliteStore(path, "hub-1", reserve_bytes=512 * 1024, connect=plan.connect)
    s.open()
    bad = s.append([_ev(Priority.ALARM, 1)])[0]
    s.db.execute("UPDATE events SET payload=x'00ff' WHERE seq=?", (bad.seq,))
    s.next_batch({}, 10)                                  # quarantines it
    plan.fail("COMMIT", times=-1)
    with pytest.raises(StoreWriteError):
        s.append([_ev(Priority.ALARM, 2)])                # refused: in the spill file
    (tmp_path / "events.db.corrupt-20260101T000000").write_bytes(b"x")
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    health = json.loads(capsys.readouterr().out)["store_health"]
    assert health["reserve_bytes"] == 512 * 1024
    assert health["spilled_events"] == 1 and health["damaged_rows"] == 1
    assert health["moved_aside"] == ["events.db.corrupt-20260101T000000"]
    assert health["disk_free_bytes"] > 0
    assert main(["status", "--config", str(cfg)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("  store: reserve 0.5 MB; disk ")
    assert "1 refused alarm(s)/warning(s) in the spill file" in line
    assert "1 damaged row(s) quarantined" in line and "1 corrupt store(s) moved aside" in line
