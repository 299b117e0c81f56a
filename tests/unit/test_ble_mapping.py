"""Decoded BTHome adverts -> readings and events (the contract table), with the
hysteresis, delays, change detection and duplicate window as pure logic."""

from __future__ import annotations

import dataclasses

import pytest

from agent.conditions import DeviceConditions
from agent.model import MEASUREMENT, Event, Priority, Reading
from drivers.ble.advert import BTHOME_UUID, Advert
from drivers.ble.bthome_decoder import BTHomeDecoder, BTHomeUpdate, DecodeStatus, Measurement
from drivers.ble.bthome_mapping import MOTION_REPEAT_S, BTHomeMapper, Stamp
from drivers.ble.config import BleConfig, BleDevice

DEV = BleDevice(id="hall-sensor", address="A4:C1:38:8D:18:B2", kind="bthome", room="hall",
                role="main_entrance_door")


class Pipeline:
    """The driver's mapper with the device-condition rules on its measurements, as the
    agent runs them: what one advert becomes, readings and the events they raise."""

    def __init__(self, device: BleDevice, config: BleConfig) -> None:
        self.mapper = BTHomeMapper(device, config)
        self.conditions = DeviceConditions(device.id, {"room": device.room, "role": device.role,
                                                       "source": "ble"},
                                           config, device.cold_home)

    def map(self, update: BTHomeUpdate, stamp: Stamp) -> list[Reading | Event]:
        out: list[Reading | Event] = []
        for reading in self.mapper.map(update, stamp):
            out.append(reading)
            if reading.type == MEASUREMENT:
                assert reading.publish is False
                out.extend(self.conditions.measured(reading, stamp.synced))
        return out

    def is_duplicate(self, advert: Advert, update: BTHomeUpdate) -> bool:
        return self.mapper.is_duplicate(advert, update)


def mapper(**cfg: object) -> Pipeline:
    dev_kw = {k[4:]: v for k, v in cfg.items() if k.startswith("dev_")}
    conf = {k: v for k, v in cfg.items() if not k.startswith("dev_")}
    return Pipeline(dataclasses.replace(DEV, **dev_kw), BleConfig(**conf))  # type: ignore[arg-type]


def st(t: float) -> Stamp:
    return Stamp(mono=t, wall=1.764e9 + t, synced=True)


def upd(binaries: dict[str, bool] | None = None, events: list[tuple[str, str]] | None = None,
        **measurements: float) -> BTHomeUpdate:
    return BTHomeUpdate(
        DecodeStatus.OK,
        measurements=tuple(Measurement(k, k.split("_")[0], v, "%" if k == "battery" else "°C")
                           for k, v in measurements.items()),
        binaries=tuple((binaries or {}).items()),
        events=tuple(events or ()),
    )


def types(outs: list[Reading | Event]) -> list[str]:
    """What the advert said to the agent (the rules' unpublished input left out)."""
    return [o.type for o in outs if o.type != MEASUREMENT]


def test_button_press_is_a_pendant_alarm_with_contact_id_and_labels() -> None:
    (out,) = mapper().map(upd(events=[("button", "press")]), st(1))
    assert isinstance(out, Reading)
    assert (out.type, out.priority, out.publish) == ("pendant", Priority.ALARM, True)
    assert out.data["contact_id"] == 101
    assert out.data["press"] == "press"
    assert (out.data["room"], out.data["role"], out.data["source"]) == (
        "hall", "main_entrance_door", "ble")
    assert out.device_id == "hall-sensor" and out.mono == 1


@pytest.mark.parametrize("press", ["long_press", "double_press", "triple_press", "hold_press"])
def test_other_presses_are_pendant_alarms_too(press: str) -> None:
    assert types(mapper().map(upd(events=[("button", press)]), st(1))) == ["pendant"]


def test_hold_release_and_dimmer_are_not_alarms() -> None:
    m = mapper()
    assert m.map(upd(events=[("button", "hold_release"), ("dimmer", "rotate_left")]), st(1)) == []


def test_button_configured_as_cancel() -> None:
    (out,) = mapper(dev_button="cancel").map(upd(events=[("button", "press")]), st(1))
    assert (out.type, out.priority, out.publish) == ("cancel", Priority.INFO, False)
    assert out.data["source"] == "ble"


def test_real_recorded_button_advert_end_to_end_through_decoder_and_mapper() -> None:
    a = Advert(address=DEV.address, rssi=-60, ts=1.0, mono=1.0,
               service_data={BTHOME_UUID: bytes.fromhex("440021015e3a01")})
    update = BTHomeDecoder().decode(a)
    assert types(mapper().map(update, st(1))) == ["pendant", "telemetry"]


def test_door_open_close_on_change_only() -> None:
    m = mapper()
    assert types(m.map(upd({"window": True}), st(1))) == ["door_open"]
    assert m.map(upd({"window": True}), st(2)) == []
    (close,) = m.map(upd({"window": False}), st(3))
    assert (close.type, close.priority) == ("door_close", Priority.INFO)
    assert types(m.map(upd({"opening_2": True}), st(4))) == ["door_open"]


def test_smoke_alarm_once_per_episode() -> None:
    m = mapper()
    (smoke,) = m.map(upd({"smoke": True}), st(1))
    assert (smoke.type, smoke.priority, smoke.data["contact_id"]) == ("smoke", Priority.ALARM, 111)
    assert m.map(upd({"smoke": True}), st(2)) == []
    assert m.map(upd({"smoke": False}), st(3)) == []
    assert types(m.map(upd({"smoke": True}), st(4))) == ["smoke"]


def test_moisture_is_a_flood_alarm() -> None:
    (flood,) = mapper().map(upd({"moisture": True}), st(1))
    assert (flood.type, flood.priority, flood.data["contact_id"]) == ("flood", Priority.ALARM, 154)


def test_dry_moisture_sensor_raises_nothing() -> None:
    assert mapper().map(upd({"moisture": False}), st(1)) == []


def test_occupancy_transitions_are_motion_and_motion_clear() -> None:
    m = mapper()
    (on,) = m.map(upd({"occupancy": True}), st(1))
    assert (on.type, on.priority, on.data["state"]) == ("motion", Priority.TELEMETRY, "detected")
    assert m.map(upd({"occupancy": True}), st(2)) == []
    (off,) = m.map(upd({"occupancy": False}), st(3))
    assert off.type == "motion_clear" and off.publish is False


def test_motion_repeats_are_rate_limited() -> None:
    m = mapper()
    assert types(m.map(upd({"motion": True}), st(0))) == ["motion"]
    assert m.map(upd({"motion": True}), st(MOTION_REPEAT_S - 1)) == []
    assert types(m.map(upd({"motion": True}), st(MOTION_REPEAT_S))) == ["motion"]
    assert types(m.map(upd({"motion": False}), st(MOTION_REPEAT_S + 1))) == ["motion_clear"]
    assert types(m.map(upd({"motion": True}), st(MOTION_REPEAT_S + 2))) == ["motion"]


def test_first_motion_clear_without_prior_motion_is_silent() -> None:
    assert mapper().map(upd({"motion": False}), st(1)) == []


def events_of(outs: list[Reading | Event], type_: str) -> list[Event]:
    return [o for o in outs if isinstance(o, Event) and o.type == type_]


def test_battery_low_with_hysteresis() -> None:
    m = mapper(battery_low_pct=20.0, battery_hysteresis_pct=10.0, telemetry_interval_s=0.0)
    seq = [(50, 0), (19, 1), (15, 0), (25, 0), (29, 0), (19, 0), (30, 0), (18, 1), (17, 0)]
    for i, (pct, expected) in enumerate(seq):
        outs = m.map(upd(battery=pct), st(i))
        got = events_of(outs, "battery_low")
        assert len(got) == expected, f"step {i}: battery {pct}"
        if got:
            assert got[0].priority is Priority.WARNING
            assert got[0].data["battery_pct"] == pct and got[0].data["threshold_pct"] == 20.0
            assert got[0].clock_synced is True


def test_battery_low_flag_object() -> None:
    m = mapper()
    assert len(events_of(m.map(upd({"battery": True}), st(1)), "battery_low")) == 1
    assert events_of(m.map(upd({"battery": True}), st(2)), "battery_low") == []


def test_cold_home_after_delay_with_hysteresis() -> None:
    m = mapper(cold_home_c=16.0, cold_home_delay_s=600.0, cold_home_hysteresis_c=1.0)
    assert events_of(m.map(upd(temperature=15.0), st(0)), "cold_home") == []
    assert events_of(m.map(upd(temperature=15.5), st(599)), "cold_home") == []
    (cold,) = events_of(m.map(upd(temperature=15.2), st(600)), "cold_home")
    assert cold.priority is Priority.WARNING
    assert cold.data["temperature_c"] == 15.2 and cold.data["threshold_c"] == 16.0
    assert events_of(m.map(upd(temperature=14.0), st(2000)), "cold_home") == []
    m.map(upd(temperature=16.5), st(2100))          # above threshold, inside hysteresis
    assert events_of(m.map(upd(temperature=15.0), st(2200)), "cold_home") == []
    m.map(upd(temperature=17.0), st(2300))          # re-armed
    m.map(upd(temperature=15.0), st(2400))
    assert len(events_of(m.map(upd(temperature=15.0), st(3000)), "cold_home")) == 1


def test_brief_dip_does_not_raise_cold_home() -> None:
    m = mapper(cold_home_delay_s=600.0)
    m.map(upd(temperature=14.0), st(0))
    m.map(upd(temperature=18.0), st(300))           # window closed again
    assert events_of(m.map(upd(temperature=14.0), st(700)), "cold_home") == []


def test_cold_home_can_be_disabled_per_device() -> None:
    m = mapper(dev_cold_home=False, cold_home_delay_s=0.0)
    assert events_of(m.map(upd(temperature=-7.7), st(1)), "cold_home") == []


def test_telemetry_has_names_values_units_and_is_rate_limited() -> None:
    m = mapper(telemetry_interval_s=300.0)
    (tel,) = [o for o in m.map(upd(temperature=21.5, humidity=40.0), st(0))
              if o.type != MEASUREMENT]
    assert tel.type == "telemetry" and tel.priority is Priority.TELEMETRY and tel.publish
    assert tel.data["temperature"] == 21.5 and tel.data["humidity"] == 40.0
    assert tel.data["units"]["temperature"] == "°C"
    assert types(m.map(upd(temperature=21.4), st(299))) == []
    assert types(m.map(upd(temperature=21.3), st(300))) == ["telemetry"]


def test_duplicate_window_beyond_the_libraries_four_seconds() -> None:
    m = mapper(duplicate_window_s=60.0)
    raw = bytes.fromhex("440021015e3a01")

    def adv(t: float, payload: bytes = raw) -> Advert:
        return Advert(address=DEV.address, rssi=-60, ts=t, mono=t,
                      service_data={BTHOME_UUID: payload})

    u = BTHomeUpdate(DecodeStatus.OK, packet_id=33)
    assert not m.is_duplicate(adv(0), u)
    assert m.is_duplicate(adv(10), u)          # the library lets this through (> 4 s)
    assert not m.is_duplicate(adv(10, bytes.fromhex("440022015e3a01")),
                              BTHomeUpdate(DecodeStatus.OK, packet_id=34))
    assert not m.is_duplicate(adv(100), u)     # long after: a new packet that reused the id
    assert not m.is_duplicate(adv(101), BTHomeUpdate(DecodeStatus.OK, packet_id=None))


def test_levels_and_temperatures_go_out_as_unpublished_measurements_every_time() -> None:
    """The driver stops at readings: no event of its own, every value handed on (the
    telemetry reading is rate-limited, the measurement is not)."""
    m = BTHomeMapper(DEV, BleConfig(telemetry_interval_s=60.0))
    first = m.map(upd({"battery": True}, battery=50.0, temperature=15.0), st(0))
    again = m.map(upd(battery=49.0, temperature=14.5), st(1))
    assert all(isinstance(o, Reading) for o in first + again)
    meas = [o for o in first + again if o.type == MEASUREMENT]
    assert [dict(o.data) for o in meas] == [
        {"room": "hall", "role": "main_entrance_door", "source": "ble", "clock_synced": True,
         "low_flag": True},
        {"room": "hall", "role": "main_entrance_door", "source": "ble", "clock_synced": True,
         "battery_pct": 50.0, "temperature_c": 15.0},
        {"room": "hall", "role": "main_entrance_door", "source": "ble", "clock_synced": True,
         "battery_pct": 49.0, "temperature_c": 14.5},
    ]
    assert not any(o.publish for o in meas) and m.state.battery_pct == 49.0
