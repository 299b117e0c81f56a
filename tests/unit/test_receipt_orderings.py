"""Receipts against PUBACKs in the orders a real broker produces only by chance: a receipt
before its event's PUBACK, a receipt while a copy sent again is still in flight. The
transport is a recording stand-in (the orders cannot be forced on mosquitto); the store is
the real SQLite store. The end-to-end behaviour is tests/integration/test_receipts.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import MqttConfig
from agent.model import Event, Priority
from agent.ports import HubMessage, Published, PublishState
from agent.store.sqlite_store import SqliteStore
from agent.uplink.delivery import Delivery


class RecordingTransport:
    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bytes]] = []
        self.handlers: dict[str, Callable[[HubMessage], None]] = {}
        self.listener = None
        self._mid = 0

    def set_listener(self, listener) -> None:
        self.listener = listener

    def connect(self) -> None:
        self.listener.on_connected(False)

    async def close(self, deadline: float) -> None:
        pass

    def alive(self) -> bool:
        return True

    def set_urgent(self, alarm_waiting: bool) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        self._mid += 1
        self.sent.append((self._mid, topic, payload))
        return Published(self._mid, PublishState.SENT)

    def flush(self) -> None:
        pass

    def subscribe(self, topic, handler):
        self.handlers[topic] = handler
        return lambda: self.handlers.pop(topic, None)

    def event_mids(self, event_id: str) -> list[int]:
        return [m for m, t, p in self.sent if t.endswith("/event")
                and json.loads(p)["id"] == event_id]


@pytest.fixture
def rig(tmp_path: Path):
    loop = asyncio.new_event_loop()
    store = SqliteStore(tmp_path / "events.db", "hub-1")
    store.open()
    transport = RecordingTransport()
    finished: list[int] = []
    cfg = MqttConfig(receipts="on", receipt_timeout_s=5.0)
    delivery = Delivery(cfg, "hub-1", store, transport, loop, finished.extend, lambda _c: None)
    yield loop, store, transport, delivery, finished
    loop.run_until_complete(delivery.stop(time.monotonic()))
    loop.close()
    store.close()


def _turns(loop: asyncio.AbstractEventLoop, n: int = 5) -> None:
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))


def _store_alarm(loop, store, delivery) -> Event:
    (ev,) = store.append([Event(type="pull_cord", priority=Priority.ALARM, device_id="c")])
    delivery.notify_new()
    _turns(loop)
    return ev


def _puback(loop, transport: RecordingTransport, delivery, *events: Event) -> None:
    for ev in events:
        (mid,) = transport.event_mids(ev.id)
        delivery.on_puback(mid, False)
    _turns(loop)


def _receipt(transport: RecordingTransport, *ids: str) -> None:
    (handler,) = transport.handlers.values()
    handler(HubMessage("tec/v1/hub-1/receipt", json.dumps({"ids": list(ids)}).encode(), False))


def test_a_receipt_before_the_puback_finishes_the_event_once(rig) -> None:
    loop, store, transport, delivery, finished = rig
    delivery.start()
    _turns(loop)
    ev = _store_alarm(loop, store, delivery)
    (mid,) = transport.event_mids(ev.id)
    _receipt(transport, ev.id)
    assert finished == []                 # not yet PUBACKed: remembered
    delivery.on_puback(mid, False)
    _turns(loop)
    assert finished == [ev.seq]
    assert delivery.awaiting_receipt == 0


def _awaiting_after_puback(loop, store, transport, delivery, finished) -> tuple[Event, float]:
    delivery.start()
    _turns(loop)
    ev = _store_alarm(loop, store, delivery)
    (mid,) = transport.event_mids(ev.id)
    delivery.on_puback(mid, False)
    _turns(loop)
    assert finished == [] and delivery.awaiting_receipt == 1
    return ev, time.monotonic()


def test_a_receipt_while_a_copy_is_in_flight_finishes_it_once(rig) -> None:
    loop, store, transport, delivery, finished = rig
    ev, acked_at = _awaiting_after_puback(*rig)
    assert delivery.resend_overdue(acked_at + 4.0) == 0       # receipt_timeout_s is 5
    assert delivery.resend_overdue(acked_at + 6.0) == 1
    _first, again = transport.event_mids(ev.id)
    _receipt(transport, ev.id)            # the first copy's receipt, the second in flight
    assert finished == [ev.seq]
    delivery.on_puback(again, False)
    _turns(loop)
    assert finished == [ev.seq]           # not twice
    assert delivery.awaiting_receipt == 0
    assert delivery.resend_overdue(acked_at + 100.0) == 0


def test_each_copy_without_a_receipt_waits_twice_as_long(rig) -> None:
    loop, store, transport, delivery, finished = rig
    ev, acked_at = _awaiting_after_puback(*rig)
    assert delivery.resend_overdue(acked_at + 6.0) == 1
    _first, again = transport.event_mids(ev.id)
    delivery.on_puback(again, False)
    _turns(loop)
    acked_again = time.monotonic()
    assert delivery.resend_overdue(acked_again + 9.0) == 0     # 10 s now
    assert delivery.resend_overdue(acked_again + 11.0) == 1
    assert len(transport.event_mids(ev.id)) == 3
    assert finished == [] and delivery.resent == 2


def test_telemetry_waits_for_its_receipt_too(rig) -> None:
    """It was final on the PUBACK: a broker restart then dropped 19 of 953 readings in a
    500-hub run (mosquitto forgets the ingesters' shared subscription)."""
    loop, store, transport, delivery, finished = rig
    delivery.start()
    _turns(loop)
    (ev,) = store.append([Event(type="temperature", priority=Priority.TELEMETRY,
                                device_id="t")])
    delivery.notify_new()
    _turns(loop)
    (mid,) = transport.event_mids(ev.id)
    delivery.on_puback(mid, False)
    _turns(loop)
    assert finished == [] and delivery.awaiting_receipt == 1
    _receipt(transport, ev.id)
    assert finished == [ev.seq] and delivery.awaiting_receipt == 0


def test_past_the_cap_telemetry_is_final_on_the_puback_alarms_still_wait(rig, monkeypatch) -> None:
    import agent.uplink.delivery as delivery_mod

    monkeypatch.setattr(delivery_mod, "_AWAITING_MAX", 2)    # telemetry's half: 1
    loop, store, transport, delivery, finished = rig
    delivery.start()
    _turns(loop)
    t1, t2 = store.append([Event(type="temperature", priority=Priority.TELEMETRY,
                                 device_id="t") for _ in range(2)])
    delivery.notify_new()
    _turns(loop)
    _puback(loop, transport, delivery, t1, t2)
    assert finished == [t2.seq] and delivery.awaiting_receipt == 1   # t1 waits, t2 is final
    _puback(loop, transport, delivery, *(_store_alarm(loop, store, delivery) for _ in range(2)))
    assert delivery.awaiting_receipt == 3                            # over the cap: alarms wait


def test_the_puback_to_receipt_lag_is_recorded(rig) -> None:
    loop, store, transport, delivery, finished = rig
    ev, acked_at = _awaiting_after_puback(*rig)
    time.sleep(0.05)
    _receipt(transport, ev.id)
    (lag,) = delivery.receipt_lags_s
    assert 0.05 <= lag < 5.0
    # A receipt that comes before its PUBACK: lag 0. One for a copy in flight: not a lag.
    ev2 = _store_alarm(loop, store, delivery)
    (mid,) = transport.event_mids(ev2.id)
    _receipt(transport, ev2.id)
    delivery.on_puback(mid, False)
    _turns(loop)
    assert list(delivery.receipt_lags_s)[1:] == [0.0]


def test_an_alarm_waits_receipt_timeout_alarm_s_other_events_receipt_timeout_s(
        tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    store = SqliteStore(tmp_path / "events.db", "hub-1")
    store.open()
    transport = RecordingTransport()
    cfg = MqttConfig(receipts="on", receipt_timeout_s=60.0, receipt_timeout_alarm_s=10.0)
    delivery = Delivery(cfg, "hub-1", store, transport, loop, lambda _s: None,
                        lambda _c: None)
    try:
        delivery.start()
        _turns(loop)
        alarm = _store_alarm(loop, store, delivery)
        (info,) = store.append([Event(type="door_open", priority=Priority.INFO,
                                      device_id="d")])
        delivery.notify_new()
        _turns(loop)
        _puback(loop, transport, delivery, alarm, info)
        acked = time.monotonic()
        assert delivery.awaiting_receipt == 2
        assert delivery.resend_overdue(acked + 9.0) == 0
        assert delivery.resend_overdue(acked + 11.0) == 1          # the alarm
        assert len(transport.event_mids(alarm.id)) == 2
        assert delivery.resend_overdue(acked + 59.0) == 0
        assert delivery.resend_overdue(acked + 61.0) == 1          # the door
        assert len(transport.event_mids(info.id)) == 2
    finally:
        loop.run_until_complete(delivery.stop(time.monotonic()))
        loop.close()
        store.close()
