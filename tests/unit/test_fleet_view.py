"""The fleet view's rules (agent/ingest/fleet.py), on rows as the ingester's database gives them."""

from __future__ import annotations

from agent.ingest.db import DeviceRow, HubRow
from agent.ingest.fleet import build_views, render_table

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def hub(hub_id: str, state: str | None = None, status_ts: str | None = None,
        last_seen: float | None = None, reason: str | None = None) -> HubRow:
    return HubRow(hub_id, state, status_ts, reason, "0.1.0" if state else None,
                  "2027-01-15T07:59:00.000Z" if last_seen else None,
                  "motion" if last_seen else None, last_seen,
                  {"total": 3} if state else None, None, 1 if last_seen else 0, 0)


def test_state_from_status_events_and_liveness() -> None:
    rows = [
        hub("on", "online", "2027-01-15T07:00:00.000Z"),
        hub("off", "offline", "2027-01-15T07:00:00.000Z", reason="connection lost"),
        # offline status, then an event from it: the event wins (status lost between nodes)
        hub("back", "offline", "2027-01-15T07:00:00.000Z", last_seen=NOW - 60),
        # no status (RabbitMQ: retained not across nodes): recent event -> online
        hub("live", last_seen=NOW - 100),
        hub("stale", last_seen=NOW - 1000),
        hub("never"),
    ]
    views = {v.hub_id: v for v in build_views(rows, [], NOW, liveness_s=900)}
    assert (views["on"].state, views["on"].since) == ("online", "2027-01-15T07:00:00.000Z")
    assert (views["off"].state, views["off"].reason) == ("offline", "connection lost")
    assert views["back"].state == "online" and views["back"].since == "2027-01-15T07:59:00.000Z"
    assert views["live"].state == "online"
    assert views["stale"].state == "unknown" and views["never"].state == "unknown"
    # With a shorter liveness timeout the same event no longer counts.
    assert {v.hub_id: v for v in build_views(rows, [], NOW, liveness_s=50)}["live"].state \
        == "unknown"


def test_devices_offline_and_battery_low() -> None:
    devices = [DeviceRow("h", "pendant", False, 15.0), DeviceRow("h", "pir", True, 80.0),
               DeviceRow("h", "door", None, None), DeviceRow("other", "x", False, 5.0)]
    (v,) = build_views([hub("h", "online", "2027-01-15T07:00:00.000Z")], devices, NOW,
                       battery_low_pct=20.0)
    assert (v.devices, v.devices_offline, v.battery_low) == (3, ("pendant",), ("pendant",))
    text = render_table([v])
    assert "pendant" in text and "1 hubs: 1 online, 0 offline, 0 unknown" in text


def test_device_figures_unheard_on_the_broker_are_unknown_not_zero() -> None:
    """A listen on the broker as support (the shipped ACLs keep device state from it) hears
    no device state: the hub's device figures are unknown (None, JSON null, "unknown" in the
    table), not 0 devices and none offline. From the ingester's database they stay counts."""
    rows = [hub("h", "online", "2027-01-15T07:00:00.000Z"),
            hub("g", "online", "2027-01-15T07:00:00.000Z")]
    devices = [DeviceRow("g", "pendant", False, 15.0)]
    views = {v.hub_id: v for v in build_views(rows, devices, NOW, none_is_unknown=True)}
    assert (views["h"].devices, views["h"].devices_offline, views["h"].battery_low) \
        == (None, None, None)
    assert views["h"].as_dict()["devices"] is None
    assert (views["g"].devices, views["g"].devices_offline) == (1, ("pendant",))
    line = next(x for x in render_table([views["h"]]).splitlines() if x.startswith("h "))
    assert line.split()[-2:] == ["unknown", "unknown"]
    (from_db,) = build_views(rows[:1], [], NOW)
    assert (from_db.devices, from_db.devices_offline, from_db.battery_low) == (0, (), ())
