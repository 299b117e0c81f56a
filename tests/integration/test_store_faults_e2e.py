"""Storage faults end to end (issue 16, items 1, 2, 3, 6, 7, 9): the real agent, a real
mosquitto on 127.0.0.1, the store's ``connect`` seam or a real full tmpfs card."""

from __future__ import annotations

import collections
import errno
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import Hardware
from agent.model import Event, Priority, Reading
from agent.sim.scenarios import SimSource
from agent.store.sqlite_store import SqliteStore
from drivers.gpio.config import GpioDevice
from tests.harness import AgentRunner, TestBroker, make_config, wait_until, with_gpio
from tests.store_faults import FaultPlan

TOPIC = "tec/v1/hub-test/event"


def _faulty_agent(tmp_path: Path, broker: TestBroker, plan: FaultPlan, sim: SimSource,
                  **store_kw) -> AgentRunner:
    cfg = make_config(tmp_path, broker)
    store = SqliteStore(cfg.store.path, cfg.hub_id, connect=plan.connect, **store_kw)
    return AgentRunner(cfg, components=[sim], store=store)


def _ids(events: list[dict]) -> collections.Counter[str]:
    return collections.Counter(e["id"] for e in events)


def _no_seq_reused(events: list[dict]) -> None:
    by_seq: dict[int, set[str]] = collections.defaultdict(set)
    for e in events:
        by_seq[e["seq"]].add(e["id"])
    reused = {seq: ids for seq, ids in by_seq.items() if len(ids) > 1}
    assert not reused, f"seqs given to more than one event: {reused}"


def test_one_failed_commit_strands_no_later_alarm(tmp_path: Path, mqtt_broker) -> None:
    plan, sim = FaultPlan(), SimSource()
    events = mqtt_broker.subscribe(TOPIC)
    with _faulty_agent(tmp_path, mqtt_broker, plan, sim) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        plan.fail("COMMIT")
        first = Reading("cord", "pull_cord", Priority.ALARM, {"n": 1})
        sim.emit_from_thread([first], 0).join()
        wait_until(lambda: plan.failed == 1, what="the failed commit")
        later = Reading("cord", "pull_cord", Priority.ALARM, {"n": 2})
        sim.emit_from_thread([later], 0).join()
        events.wait_for(lambda ms: later.id in _ids(events.events()), timeout=10,
                        what="the later alarm on the broker")
        wait_until(lambda: runner.agent.event_delivered(first.id) is True, timeout=15,
                   what="the first alarm stored on retry and acknowledged")
        assert runner.agent.event_delivered(later.id) is True
        wait_until(lambda: runner.call(runner.agent.store.pending_count) == 0,
                   what="nothing left pending")
    got = events.events()
    _no_seq_reused(got)
    counts = _ids(got)
    assert counts[later.id] == 1 and 1 <= counts[first.id] <= 2


def test_unstorable_alarm_is_sent_once_and_raises_storage_failed(tmp_path: Path,
                                                                  mqtt_broker) -> None:
    plan, sim = FaultPlan(), SimSource()
    events = mqtt_broker.subscribe(TOPIC)
    with _faulty_agent(tmp_path, mqtt_broker, plan, sim) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        plan.fail("COMMIT", times=-1)          # every commit fails: a dying card
        alarm = Reading("cord", "pull_cord", Priority.ALARM, {"n": 1})
        sim.emit_from_thread([alarm], 0).join()
        events.wait_for(lambda ms: {"pull_cord", "storage_failed"}
                        <= {e["type"] for e in events.events()}, what="alarm and warning")
        assert runner.agent.state.storage_failed and runner.agent.state.alarm_pending
        time.sleep(4.0)                         # the old code re-sent it every second
        assert _ids(events.events())[alarm.id] == 1
        warning = next(e for e in events.events() if e["type"] == "storage_failed")
        assert warning["priority"] == "warning" and warning["data"]["unstored_alarms"] == 1
        plan.clear()                            # the card works again
        wait_until(lambda: runner.agent.event_delivered(alarm.id) is True, timeout=60,
                   what="the alarm stored and acknowledged")
        wait_until(lambda: not runner.agent.state.storage_failed, what="storage_failed cleared")
        wait_until(lambda: runner.call(runner.agent.store.pending_count) == 0,
                   what="nothing pending")
    got = events.events()
    _no_seq_reused(got)
    assert _ids(got)[alarm.id] <= 2


def test_storage_failed_shows_on_the_status_led(tmp_path: Path, mqtt_broker) -> None:
    plan = FaultPlan()
    factory = MockFactory()
    cfg = with_gpio(make_config(tmp_path, mqtt_broker), (
        GpioDevice(id="cord-1", kind="pull_cord", pin=27, room="bathroom"),
        GpioDevice(id="status-led", kind="led", pin=24)))
    store = SqliteStore(cfg.store.path, cfg.hub_id, connect=plan.connect)
    with AgentRunner(cfg, Hardware(pin_factory=factory), store=store) as runner:
        gpio = next(c for c in runner.agent.components if c.name == "gpio")

        def led() -> str:
            return next(d.details["pattern"] for d in runner.call(gpio.devices)
                        if d.device_id == "status-led")

        wait_until(lambda: led() == "online", what="LED online")
        plan.fail("COMMIT", times=-1)
        pin = factory.pin(27)
        pin.drive_low()
        pin.drive_high()
        wait_until(lambda: led() == "storage_failed", what="LED storage_failed")
        plan.clear()
        wait_until(lambda: led() != "storage_failed", timeout=30, what="LED back")


def test_lost_wal_reaches_the_broker_as_store_reset(tmp_path: Path, mqtt_broker) -> None:
    cfg = make_config(tmp_path, mqtt_broker)
    path = Path(cfg.store.path)
    code = (
        "import os\n"
        "from agent.store.sqlite_store import SqliteStore\n"
        "from agent.model import Event, Priority\n"
        f"s = SqliteStore({str(path)!r}, 'hub-test'); s.open()\n"
        "s.append([Event(type='pull_cord', priority=Priority.ALARM, device_id='d')])\n"
        "os._exit(9)\n")
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60,
                   cwd=Path(__file__).resolve().parents[2])
    Path(str(path) + "-wal").unlink()
    events = mqtt_broker.subscribe(TOPIC)
    with AgentRunner(cfg, components=[SimSource()]):
        got = events.wait_for(lambda ms: [e for e in events.events()
                                          if e["type"] == "store_reset"], what="store_reset")
    assert got[0]["priority"] == "warning" and got[0]["device_id"] == "store"
    assert got[0]["data"]["reason"] == "lost_transactions"
    assert got[0]["data"]["events_lost_at_most"] == 1


def test_damaged_row_is_reported_never_published(tmp_path: Path, durable_broker) -> None:
    sim = SimSource()
    raw = durable_broker.subscribe(TOPIC, persistent_id="platform")
    cfg = make_config(tmp_path, durable_broker)
    with AgentRunner(cfg, components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        durable_broker.stop()
        wait_until(lambda: not runner.agent.state.online, what="offline")
        good = Reading("cord", "pull_cord", Priority.ALARM, {"n": 1})
        bad = Reading("cord", "pull_cord", Priority.ALARM, {"n": 2})
        sim.emit_from_thread([good, bad], 0).join()
        wait_until(lambda: runner.agent.event_delivered(bad.id) is False, what="stored")
        # The card hands back 235 bytes of garbage for the second row.
        garbage = random.Random(3).randbytes(235)
        runner.call(lambda: runner.agent.store.db.execute(
            "UPDATE events SET payload=? WHERE id=?", (garbage, bad.id)))
        durable_broker.start()
        raw.wait_for(lambda ms: any(b'"store_damaged_row"' in m.payload for m in ms),
                     timeout=15, what="store_damaged_row")
        wait_until(lambda: runner.agent.event_delivered(good.id) is True, what="good alarm")
    docs = []
    for m in raw.snapshot():
        docs.append(json.loads(m.payload))      # every message on the topic is valid JSON
    report = next(d for d in docs if d["type"] == "store_damaged_row")
    assert report["data"]["event_id"] == bad.id and report["data"]["payload_bytes"] == 235
    assert bad.id not in {d["id"] for d in docs}


def test_reconnect_backoff_is_cut_short_while_an_alarm_waits(tmp_path: Path,
                                                              durable_broker) -> None:
    sim = SimSource()
    cfg = make_config(tmp_path, durable_broker)
    # A long backoff: the first attempt up to 60 s away (uniform in [0, 60 s]), the next
    # 60-120 s (tests/integration/test_reconnect_alarm.py pins the cut deterministically).
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, reconnect_min_s=60.0, reconnect_max_s=120.0))
    events = durable_broker.subscribe(TOPIC, persistent_id="platform")
    with AgentRunner(cfg, components=[sim]) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        durable_broker.stop()
        wait_until(lambda: not runner.agent.state.online, what="offline")
        time.sleep(0.5)                        # the network thread is in its backoff wait
        alarm = Reading("cord", "pull_cord", Priority.ALARM, {})
        sim.emit_from_thread([alarm], 0).join()
        wait_until(lambda: runner.agent.event_delivered(alarm.id) is False, what="stored")
        durable_broker.start()
        back = time.monotonic()
        events.wait_for(lambda ms: alarm.id in _ids(events.events()), timeout=30,
                        what="the alarm after the broker returned")
        delay = time.monotonic() - back
    assert delay < 7.0, f"alarm arrived {delay:.1f} s after the broker returned"


# -- a real full card: tmpfs ---------------------------------------------------------------------
@pytest.fixture
def small_card(tmp_path: Path) -> Iterator[Path]:
    card = tmp_path / "card"
    card.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(card)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield card
    finally:
        subprocess.run(["umount", "-l", str(card)], check=False)


def _fill(card: Path) -> Path:
    filler = card / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_full_card_keeps_storing_and_sending_alarms_and_recovers(
        tmp_path: Path, small_card: Path, durable_broker) -> None:
    sim = SimSource()
    cfg = make_config(tmp_path, durable_broker)
    cfg = replace(cfg, store=replace(cfg.store, path=str(small_card / "events.db"),
                                     reserve_mb=0.5))
    events = durable_broker.subscribe(TOPIC, persistent_id="platform")
    with AgentRunner(cfg, components=[sim]) as runner:
        store = runner.agent.store
        wait_until(lambda: runner.agent.state.online, what="online")
        durable_broker.stop()                     # pending telemetry piles up on the card
        wait_until(lambda: not runner.agent.state.online, what="offline")
        pad = "t" * 400
        for chunk in range(10):
            sim.emit_from_thread([Reading("pir", "motion", Priority.TELEMETRY,
                                          {"n": chunk * 100 + i, "p": pad})
                                  for i in range(100)], 0).join()
            time.sleep(0.05)
        wait_until(lambda: runner.agent.stats["stored"] >= 1000, what="telemetry stored")
        assert not runner.call(lambda: store.degraded)
        filler = _fill(small_card)             # ... and the card is full
        alarms = []
        for round_ in range(40):
            batch = [Reading("pir", "motion", Priority.TELEMETRY, {"n": round_, "p": pad})
                     for _ in range(20)]
            alarm = Reading("cord", "pull_cord", Priority.ALARM, {"round": round_, "p": pad})
            alarms.append(alarm)
            sim.emit_from_thread(batch + [alarm], 0).join()
            time.sleep(0.05)
        wait_until(lambda: all(runner.agent.event_delivered(a.id) is False for a in alarms),
                   timeout=20, what="every alarm stored on the full card")
        assert runner.call(lambda: store.degraded)
        assert not runner.agent.state.storage_failed
        wal = small_card / "events.db-wal"
        assert not wal.exists() or wal.stat().st_size <= 1 << 20
        durable_broker.start()
        wait_until(lambda: all(runner.agent.event_delivered(a.id) for a in alarms), timeout=60,
                   what="every alarm acknowledged")
        # The broker acknowledged them; the platform's subscriber may still be reconnecting.
        events.wait_for(lambda ms: all(_ids(events.events())[a.id] >= 1 for a in alarms),
                        timeout=30, what="every alarm at the platform's subscriber")
        # Space returns: the reserve is re-armed and telemetry is stored again.
        filler.unlink()
        assert runner.call(store.maintain) is True
        assert store.reserve_path.stat().st_size == int(0.5 * 2**20)
        before = runner.agent.stats["stored"]
        sim.emit_from_thread([Reading("pir", "motion", Priority.TELEMETRY, {"n": -1})], 0).join()
        wait_until(lambda: runner.agent.stats["stored"] > before, what="telemetry stored again")
        wait_until(lambda: runner.call(store.pending_count) == 0, timeout=60,
                   what="backlog drained")


def test_alarm_refused_at_shutdown_is_sent_by_the_next_run(tmp_path: Path,
                                                           mqtt_broker) -> None:
    """The card fails and the broker is away: the alarm lives in the spill file, not only in
    memory, so the restarted agent (card working again) delivers it."""
    plan, sim = FaultPlan(), SimSource()
    with _faulty_agent(tmp_path, mqtt_broker, plan, sim) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        mqtt_broker.stop()
        wait_until(lambda: not runner.agent.state.online, what="offline")
        plan.fail("COMMIT", times=-1)
        alarm = Reading("cord", "pull_cord", Priority.ALARM, {"n": 1})
        sim.emit_from_thread([alarm], 0).join()
        wait_until(lambda: runner.agent.state.storage_failed, what="storage_failed")
    mqtt_broker.start()
    events = mqtt_broker.subscribe(TOPIC)               # subscribed before the agent starts
    with AgentRunner(make_config(tmp_path, mqtt_broker), components=[SimSource()]) as runner:
        events.wait_for(lambda ms: alarm.id in _ids(events.events()), timeout=20,
                        what="the spilled alarm on the broker")
        wait_until(lambda: runner.agent.event_delivered(alarm.id) is True, what="acked")


def test_reserve_fits_a_small_card_and_sizes_the_wal(small_card: Path) -> None:
    """The default 4 MB reserve cannot fit a 4 MB card: it is cut to a quarter of the free
    space (and armed), and the WAL limit follows it down."""
    store = SqliteStore(small_card / "events.db", "hub-test")   # default reserve: 4 MB
    store.open()
    try:
        size = store.reserve_path.stat().st_size
        assert 0 < size <= 1 << 20
        limit = store.db.execute("PRAGMA journal_size_limit").fetchone()[0]
        assert limit <= size // 2 or limit == 64 * 1024
    finally:
        store.close()


def test_a_long_salvage_at_start_asks_systemd_for_more_time(
        tmp_path: Path, mqtt_broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Pi a large store takes long to salvage: the start must not be killed by
    TimeoutStartSec (and begun again, and again) meanwhile."""
    from tests.integration.test_status_text import NotifySocket

    cfg = make_config(tmp_path, mqtt_broker)
    path = Path(cfg.store.path)
    store = SqliteStore(path, cfg.hub_id)
    store.open()
    for i in range(0, 12_000, 2000):
        store.append([Event(type="motion", priority=Priority.TELEMETRY, device_id="pir",
                            data={"n": i + j}) for j in range(2000)])
    store.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek((size // 2) // 4096 * 4096)
        fh.write(random.Random(5).randbytes(4096))
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    try:
        with AgentRunner(cfg, components=[SimSource()]):
            wait_until(lambda: any(m == "READY=1" for _, m in notify.received), what="READY")
        got = [m for _, m in notify.received]
    finally:
        notify.close()
    extend = [i for i, m in enumerate(got) if m.startswith("EXTEND_TIMEOUT_USEC=")]
    assert extend and extend[0] < got.index("READY=1")
    assert any(m.startswith("STATUS=starting: salvaging") for m in got)
