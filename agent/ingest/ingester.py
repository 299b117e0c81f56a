"""Batch, commit, then acknowledge: the ingester's loop.

Messages are taken from the broker connection in batches (up to ``max_batch``, or what
arrived within ``batch_window_s`` of the first), parsed, committed in one transaction, and
only then acknowledged to the broker. A crash at any point loses nothing: before the
commit the broker still holds the messages and redelivers them; after it, the redelivered
copies are duplicates the database recognises by ``(hub_id, id)``.

If the database cannot commit, nothing is acknowledged and the same batch is retried with
backoff (the broker stops sending once ``receive_maximum`` messages wait for us).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.ingest.db import IngestDb, IngestDbError
from agent.ingest.mqtt_source import Inbound, MqttSource
from agent.ingest.records import ConfigRequest, EventRecord, Record, Rejected, parse
from agent.uplink import topics

log = logging.getLogger(__name__)

_RECEIPT_CHUNK = 500   # ids per receipt message (about 20 KB)

AlarmHook = Callable[[tuple[EventRecord, ...]], None]


@dataclass
class IngestStats:
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    commits: int = 0
    ack_skipped: int = 0   # committed on a connection since lost: the broker resends them
    receipts: int = 0         # receipt messages sent to hubs after a commit
    receipt_failures: int = 0  # could not be queued (the hub sends those events again)
    config_requests: int = 0  # hubs that asked for their desired config
    configs_sent: int = 0     # desired configs handed to them (newer than what they ran)
    db_errors: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "inserted": self.inserted,
                "duplicates": self.duplicates, "rejected": self.rejected,
                "commits": self.commits, "ack_skipped": self.ack_skipped,
                "db_errors": self.db_errors, "receipts": self.receipts,
                "receipt_failures": self.receipt_failures,
                "config_requests": self.config_requests,
                "configs_sent": self.configs_sent}


class Ingester:
    def __init__(self, source: MqttSource, db: IngestDb, *, prefix: str = "",
                 on_alarm: AlarmHook | None = None, max_batch: int = 500,
                 batch_window_s: float = 0.02, receipts: bool = True) -> None:
        """``on_alarm`` is called with the alarms new in each commit, after the commit and
        before the acknowledgement, on the ingester's thread (keep it short: hand the work
        on). With ``receipts``, every hub whose events a commit holds (new or duplicate)
        is told which (``tec/v1/{hub_id}/receipt``), so it can drop them from its store and
        send again what a broker acknowledged but never delivered."""
        self.source = source
        self.db = db
        self.prefix = prefix
        self.on_alarm = on_alarm
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.receipts = receipts
        self.stats = IngestStats()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _take(self) -> list[Inbound]:
        try:
            first = self.source.messages.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_window_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self.source.messages.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.source.messages.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def run_once(self) -> int:
        """Take, commit and acknowledge one batch; returns its size (0: nothing came)."""
        batch = self._take()
        if not batch:
            return 0
        records: list[Record] = [parse(m.topic, m.payload, m.received_at, self.prefix)
                                 for m in batch]
        delay = 0.1
        while True:
            try:
                result = self.db.commit(records)
                break
            except IngestDbError as exc:
                self.stats.db_errors += 1
                log.error("%s; nothing acknowledged, retrying in %.1f s", exc, delay)
                if self._stop.wait(delay):
                    return len(batch)  # stopping: unacknowledged, the broker keeps them
                delay = min(delay * 2, 10.0)
        self.stats.received += len(batch)
        self.stats.commits += 1
        self.stats.inserted += result.inserted
        self.stats.duplicates += result.duplicates
        self.stats.rejected += result.rejected
        if result.rejected:
            log.warning("%d message(s) could not be stored as what their topic says; kept in "
                        "table 'rejected'", result.rejected)
        if result.alarms and self.on_alarm is not None:
            try:
                self.on_alarm(result.alarms)
            except Exception:
                log.exception("on_alarm hook failed (the alarms are committed)")
        for req in result.requests:
            self._answer(req)
        if self.receipts:
            self._send_receipts(records)
        self.stats.ack_skipped += self.source.ack(batch)
        return len(batch)

    def _send_receipts(self, records: list[Record]) -> None:
        """After the commit: one receipt per hub naming the events it holds now (new or
        duplicate; a malformed event kept in ``rejected`` too, or the hub would send it for
        ever). A receipt that is lost only means the hub sends those events again."""
        by_hub: dict[str, list[str]] = {}
        for rec in records:
            if isinstance(rec, EventRecord):
                by_hub.setdefault(rec.hub_id, []).append(rec.id)
            elif isinstance(rec, Rejected):
                found = _rejected_event(rec, self.prefix)
                if found is not None:
                    by_hub.setdefault(found[0], []).append(found[1])
        for hub_id, ids in by_hub.items():
            topic = topics.receipt_topic(hub_id, self.prefix)
            for i in range(0, len(ids), _RECEIPT_CHUNK):
                payload = json.dumps({"ids": ids[i:i + _RECEIPT_CHUNK]},
                                     separators=(",", ":")).encode()
                if self.source.publish(topic, payload):
                    self.stats.receipts += 1
                else:
                    self.stats.receipt_failures += 1

    def _answer(self, req: ConfigRequest) -> None:
        """Hand the hub its desired config if it is newer than what the hub runs (it is
        signed by support; the hub verifies it). A failed answer is logged: the hub asks
        again on its next connect, and the retained ``config/set`` stays as it was."""
        self.stats.config_requests += 1
        try:
            desired = self.db.desired_config(req.hub_id)
        except IngestDbError as exc:
            log.error("desired config of hub %s not read: %s", req.hub_id, exc)
            return
        if desired is None or desired[0] <= req.version:
            return
        if self.source.publish(topics.config_topic(req.hub_id, "desired", self.prefix),
                               desired[1]):
            self.stats.configs_sent += 1
            log.info("hub %s asked for its config (runs version %d): sent version %d",
                     req.hub_id, req.version, desired[0])

    def run(self) -> None:
        """Until :meth:`stop`."""
        while not self._stop.is_set():
            self.run_once()


def _rejected_event(rec: Rejected, prefix: str) -> tuple[str, str] | None:
    """``(hub_id, id)`` of a rejected message on a hub's event topic that names its id."""
    where = topics.split(rec.topic, prefix)
    if where is None or where[1] != "event":
        return None
    try:
        doc = json.loads(rec.payload)
    except ValueError:
        return None
    event_id = doc.get("id") if isinstance(doc, dict) else None
    if isinstance(event_id, str) and 0 < len(event_id) <= 200:
        return where[0], event_id
    return None
