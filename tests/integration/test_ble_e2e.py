"""End to end: a recorded, encrypted Shelly BLU Button advert heard by the BLE driver (on
the replay radio) -> a ``pendant`` alarm on a real mosquitto, plus the retained device
state; and a capture file replayed by ``tec-agent ble replay``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from agent.app import Hardware
from drivers.ble.advert import BTHOME_UUID, Advert
from drivers.ble.replay_backend import AdvertFeed
from drivers.ble.tools.fake_gatt import FakeGattClient
from tests.harness import AgentRunner, make_config, wait_until

DATA = Path(__file__).resolve().parents[1] / "data" / "ble"
VECTORS = json.loads((DATA / "bthome_vectors.json").read_text())
BUTTON = next(v for v in VECTORS["recorded"] if v["name"] == "shelly_blu_button1_encrypted_press")
EVENT_FIELDS = {"id", "hub_id", "seq", "type", "priority", "device_id", "ts", "clock_synced",
                "data"}


PENDANT_TOML = f"""
[[ble.devices]]
id = "pendant-1"
address = "{BUTTON['address']}"
kind = "bthome"
bindkey = "{BUTTON['bindkey']}"
"""


def test_bthome_button_advert_raises_a_pendant_alarm_on_the_broker(tmp_path, mqtt_broker) -> None:
    config = make_config(tmp_path, mqtt_broker, PENDANT_TOML + """room = "bedroom"
role = "pendant"
""")
    feed = AdvertFeed()
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    states = mqtt_broker.subscribe("tec/v1/hub-test/device/+")
    with AgentRunner(config, hardware=Hardware(ble_backend=feed,
                                               ble_client_factory=FakeGattClient)) as runner:
        wait_until(lambda: feed.scanning, 5, what="the BLE scanner")
        payload = bytes.fromhex(BUTTON["payload"])
        for _ in range(3):          # the button repeats its advert; one alarm only
            advert = Advert(address=BUTTON["address"], rssi=-58, ts=time.time(),
                            mono=time.monotonic(), name="SBBT-002C",
                            service_data={BTHOME_UUID: payload})
            assert runner.call(feed.push, advert) == 1
        (alarm,) = [e for e in events.wait_events(1) if e["type"] == "pendant"]
        assert set(alarm) == EVENT_FIELDS
        assert alarm["priority"] == "alarm" and alarm["device_id"] == "pendant-1"
        assert alarm["hub_id"] == "hub-test" and alarm["clock_synced"] is True
        assert alarm["data"]["contact_id"] == 101
        assert (alarm["data"]["room"], alarm["data"]["role"], alarm["data"]["source"]) == (
            "bedroom", "pendant", "ble")
        msg = states.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/pendant-1")],
                              what="the retained device state")[0]
        state = msg.json()
        assert state["kind"] == "bthome" and state["online"] is True
        assert state["battery"] == 100 and state["rssi"] == -58
        time.sleep(0.3)             # repeats had time to arrive; none may become an alarm
        assert [e["type"] for e in events.events()].count("pendant") == 1
    late = mqtt_broker.subscribe("tec/v1/hub-test/device/pendant-1")
    (kept,) = late.wait_for(lambda ms: ms, what="the retained state for a new subscriber")
    assert kept.retain and kept.json()["kind"] == "bthome"


def test_replay_cli_prints_readings_and_reports_bad_lines(tmp_path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("""hub_id = "hub-9"
[[ble.devices]]
id = "button"
address = "A4:C1:38:8D:18:B2"
kind = "bthome"
room = "lounge"
""")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "ble", "replay", str(DATA / "capture_sample.jsonl"),
         "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [(o["record"], o["type"], o["device_id"]) for o in out]
    assert ("reading", "pendant", "button") in kinds
    assert all(o["device_id"] == "button" for o in out)           # only configured devices
    (pendant,) = [o for o in out if o["type"] == "pendant"]
    assert pendant["priority"] == "alarm" and pendant["data"]["room"] == "lounge"
    assert "line 3: malformed line" in proc.stderr
    assert "line 6: malformed line" in proc.stderr
    assert "line 9: A4:C1:38:8D:18:B2: undecodable BTHome payload" in proc.stderr
    assert "; 2 advert(s) from devices not in the config" in proc.stderr

    # An installer's config without BLE devices decodes nothing: said at once, not a silent
    # '0 reading(s)'.
    gpio_only = tmp_path / "gpio.toml"
    gpio_only.write_text('hub_id = "hub-9"\n')
    none = subprocess.run(
        [sys.executable, "-m", "agent", "ble", "replay", str(DATA / "capture_sample.jsonl"),
         "--config", str(gpio_only)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert none.returncode == 0 and none.stdout == ""
    assert f"note: {gpio_only} has no BTHome [[ble.devices]]" in none.stderr
    assert "; 7 advert(s) from devices not in the config" in none.stderr

    bare = subprocess.run(
        [sys.executable, "-m", "agent", "ble", "replay", str(DATA / "capture_sample.jsonl")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert bare.returncode == 0, bare.stderr
    devices = {json.loads(line)["device_id"] for line in bare.stdout.splitlines()}
    assert devices == {"bthome-a4c1388d18b2", "bthome-c0ffee000001"}   # every BTHome device


def test_last_sighting_and_battery_survive_an_agent_restart(tmp_path, mqtt_broker) -> None:
    config = make_config(tmp_path, mqtt_broker, PENDANT_TOML)

    def pendant(runner: AgentRunner):
        return next(d for d in runner.call(runner.agent.devices) if d.device_id == "pendant-1")

    feed = AdvertFeed()
    with AgentRunner(config, hardware=Hardware(ble_backend=feed)) as runner:
        wait_until(lambda: feed.scanning, 5, what="the BLE scanner")
        assert pendant(runner).last_seen_wall is None
        heard = time.time()
        runner.call(feed.push, Advert(address=BUTTON["address"], rssi=-61, ts=heard,
                                      mono=time.monotonic(), name="SBBT-002C",
                                      service_data={BTHOME_UUID: bytes.fromhex(
                                          BUTTON["payload"])}))
        seen = wait_until(lambda: pendant(runner).last_seen_wall, 5, what="the sighting")
    feed = AdvertFeed()
    with AgentRunner(config, hardware=Hardware(ble_backend=feed)) as runner:
        wait_until(lambda: feed.scanning, 5, what="the BLE scanner")
        info = pendant(runner)                  # nothing heard since the restart
        assert info.last_seen_wall == seen and abs(seen - heard) < 5
        assert (info.battery_pct, info.rssi) == (100, -61)
