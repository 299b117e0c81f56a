#!/usr/bin/env python3
"""Check what a broker does with the promises tec-agent relies on; one JSON object out.

    .venv/bin/python packaging/brokers/check_broker.py --broker mqtt[s]://user@host:port \\
        --password-file pw [--protocol 5|3.1.1] [--ca-file CA.pem]

The account needs to publish and subscribe under ``tec/v1/tec-check-*/`` (a test account:
neither a hub's nor ``platform``/``support`` of the shipped ACL may do both).

Checks (each ``true``/``false``, or a count, or an error string):
- ``connect``: the broker accepts a connection in this protocol;
- ``persistent_session_queue``: QoS 1 messages published while a persistent-session
  subscriber is away are all handed over when it returns (of 50);
- ``unacked_redelivered``: messages received but not acknowledged (manual ack) come again
  after a reconnect (of 10): what makes ``tec-agent ingest`` crash-safe;
- ``shared_subscription``: ``$share/g/...`` splits 40 messages between two subscribers, none
  lost, none doubled;
- ``retained_exact`` / ``retained_wildcard``: a retained status reaches a new subscriber of
  the exact topic / of ``tec/v1/+/status`` (the fleet view and the ingester use wildcards);
- ``dot_in_hub_id``: a message on ``tec/v1/hub.7/event`` reaches ``tec/v1/+/event`` (RabbitMQ
  maps ``.`` to ``/``: why hub ids may not contain ``.``);
- ``ingest``: ``tec-agent ingest``'s code path (manual ack after commit, SQLite) stores 200
  of 200 events (shared subscription if the broker has it, else a plain one).

Uses client ids ``tec-check-*`` and topics under ``tec/v1/tec-check-*``; leaves retained
messages cleared. It is a probe, not a load test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from agent.remote.client import BrokerUrl, parse_broker_url  # noqa: E402


class Probe:
    def __init__(self, broker: BrokerUrl, password: str | None, protocol: str, client_id: str,
                 persistent: bool = False, manual_ack: bool = False,
                 ca_file: str | None = None) -> None:
        self.v5 = protocol == "5"
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
                             clean_session=None if self.v5 else not persistent,
                             manual_ack=manual_ack)
        if broker.username:
            self.c.username_pw_set(broker.username, password)
        if broker.tls:  # mqtts://: a production profile has TLS listeners only
            self.c.tls_set(ca_certs=ca_file)
        self.broker, self.persistent = broker, persistent
        self.cond = threading.Condition()
        self.got: list[tuple[str, bytes, bool, int]] = []
        self.connack: str | None = None
        self.subacks: list[list[str]] = []
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe

    def _on_connect(self, c, u, flags, rc, props) -> None:
        with self.cond:
            self.connack = str(rc)
            self.cond.notify_all()

    def _on_message(self, c, u, msg) -> None:
        with self.cond:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain), msg.mid))
            self.cond.notify_all()

    def _on_subscribe(self, c, u, mid, rcs, props) -> None:
        with self.cond:
            self.subacks.append([str(rc) for rc in rcs])
            self.cond.notify_all()

    def wait(self, pred, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def connect(self) -> str:
        kw: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600 if self.persistent else 0
            kw = {"clean_start": not self.persistent, "properties": props}
        self.c.connect(self.broker.host, self.broker.port, 30, **kw)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None)
        return self.connack or "no CONNACK"

    def subscribe(self, topic: str) -> list[str]:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        self.wait(lambda: len(self.subacks) > n)
        return self.subacks[-1] if len(self.subacks) > n else ["no SUBACK"]

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
        # Callbacks refer back to this probe: drop them so the client is freed at once.
        c = self.c
        c.on_connect = c.on_disconnect = c.on_publish = c.on_message = c.on_subscribe = None


def run(broker: BrokerUrl, pw: str | None, protocol: str,
        ca_file: str | None = None) -> dict[str, Any]:
    tag = f"tec-check-{int(time.time())}"
    out: dict[str, Any] = {"protocol": protocol}

    def probe(name: str, **kw: Any) -> Probe:
        return Probe(broker, pw, protocol, f"{tag}-{name}", ca_file=ca_file, **kw)

    pub = probe("pub")
    out["connect"] = pub.connect()
    if out["connect"] != "Success":
        return out
    try:
        # persistent session queue
        sub = probe("sess", persistent=True)
        sub.connect()
        sub.subscribe(f"tec/v1/{tag}-s/event")
        sub.close()
        for n in range(50):
            pub.publish(f"tec/v1/{tag}-s/event", f"m{n}")
        sub = probe("sess", persistent=True)
        sub.connect()
        sub.wait(lambda: len(sub.got) >= 50, 5)
        out["persistent_session_queue"] = f"{len({p for _, p, _, _ in sub.got})} of 50"
        sub.close()

        # unacknowledged messages redelivered
        un = probe("unack", persistent=True, manual_ack=True)
        un.connect()
        un.subscribe(f"tec/v1/{tag}-u/event")
        for n in range(10):
            pub.publish(f"tec/v1/{tag}-u/event", f"u{n}")
        un.wait(lambda: len(un.got) >= 10, 5)
        un.close()
        un = probe("unack", persistent=True, manual_ack=True)
        un.connect()
        un.wait(lambda: len(un.got) >= 10, 5)
        out["unacked_redelivered"] = f"{len({p for _, p, _, _ in un.got})} of 10"
        for _, _, _, mid in un.got:
            un.c.ack(mid, 1)
        un.close()

        # shared subscription
        a, b = probe("sa"), probe("sb")
        a.connect()
        b.connect()
        rc = a.subscribe(f"$share/{tag}/tec/v1/{tag}-g/event") + \
            b.subscribe(f"$share/{tag}/tec/v1/{tag}-g/event")
        if any(r not in ("Granted QoS 1", "Granted QoS 0") for r in rc):
            out["shared_subscription"] = f"refused: {rc}"
        else:
            for n in range(40):
                pub.publish(f"tec/v1/{tag}-g/event", f"g{n}")
            a.wait(lambda: len(a.got) + len(b.got) >= 40, 5)
            out["shared_subscription"] = (len(a.got) + len(b.got) == 40 and bool(a.got)
                                          and bool(b.got)) or f"{len(a.got)} + {len(b.got)}"
        a.close()
        b.close()

        # retained: exact and wildcard
        pub.publish(f"tec/v1/{tag}-r/status", b'{"state":"online"}', retain=True)
        for name, topic in (("retained_exact", f"tec/v1/{tag}-r/status"),
                            ("retained_wildcard", "tec/v1/+/status")):
            r = probe(name)
            r.connect()
            r.subscribe(topic)
            out[name] = r.wait(lambda r=r: any(t == f"tec/v1/{tag}-r/status" and ret
                                               for t, _, ret, _ in r.got), 3)
            r.close()
        pub.publish(f"tec/v1/{tag}-r/status", b"", retain=True)

        # '.' in a topic level
        d = probe("dot")
        d.connect()
        d.subscribe("tec/v1/+/event")
        pub.publish(f"tec/v1/{tag}.7/event", b"dot")
        out["dot_in_hub_id"] = d.wait(lambda: any(p == b"dot" for _, p, _, _ in d.got), 3)
        d.close()
    finally:
        pub.close()
    out["ingest"] = check_ingest(broker, pw, protocol, tag,
                                 shared=out.get("shared_subscription") is True, ca_file=ca_file)
    return out


def check_ingest(broker: BrokerUrl, pw: str | None, protocol: str, tag: str,
                 shared: bool, ca_file: str | None = None) -> str:
    from agent.ingest.db import open_db
    from agent.ingest.ingester import Ingester
    from agent.ingest.mqtt_source import MqttSource, SourceSettings

    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(f"sqlite:///{tmp}/i.db")
        src = MqttSource(SourceSettings(broker, pw, f"{tag}-ingest", group=tag if shared else "",
                                        protocol=protocol, ca_file=ca_file))
        ing = Ingester(src, db)
        src.start()
        th = threading.Thread(target=ing.run, daemon=True)
        th.start()
        pub = Probe(broker, pw, protocol, f"{tag}-ipub", ca_file=ca_file)
        pub.connect()
        hub = f"{tag}-hub"
        for n in range(200):
            doc = {"id": f"{tag}-{n}", "hub_id": hub, "seq": n, "type": "motion",
                   "priority": "info", "device_id": "pir", "ts": "2026-12-05T08:00:00.000Z",
                   "clock_synced": True, "data": {}}
            pub.publish(f"tec/v1/{hub}/event", json.dumps(doc))
        pub.close()
        deadline = time.monotonic() + 20
        while ing.stats.inserted < 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # a probe polling a counter
        ing.stop()
        th.join(5)
        src.stop()
        stored = db.event_count()
        db.close()
    return f"{stored} of 200 ({'shared' if shared else 'plain'} subscription)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", required=True,
                    help="mqtt://user@host:port, or mqtts:// for a TLS listener; the account "
                         "must publish and subscribe under tec/v1/tec-check-*/")
    ap.add_argument("--password-file", help="first line is the broker password")
    ap.add_argument("--protocol", default="5", choices=("5", "3.1.1"))
    ap.add_argument("--ca-file", help="CA bundle for mqtts:// (default: the system's)")
    args = ap.parse_args()
    broker = parse_broker_url(args.broker)
    pw = Path(args.password_file).read_text().splitlines()[0] if args.password_file else None
    print(json.dumps(run(broker, pw, args.protocol, args.ca_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
