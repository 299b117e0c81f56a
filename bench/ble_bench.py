"""BLE benchmarks: BTHome decode throughput and CPU per 1,000 adverts/s.

The driver path is measured end to end on the replay radio: ``AdvertFeed.push`` -> bleak
``BaseBleakScanner`` callbacks -> ``ScannerOwner`` -> address lookup -> ``bthome-ble``
decode -> duplicate window -> mapping -> supervision -> context. The advert mix is a busy
home: 20 configured plaintext thermometers (the recorded ``atc_packet_temp_hum_battery``
vector with its packet-id byte advanced per advert), one encrypted Shelly BLU H&T (the
recorded ``shelly_blu_ht_encrypted`` vector, decrypted every time) and 20 unconfigured
advertisers (phones, beacons) that must be ignored cheaply.

Throughput is adverts per CPU-second of the (single-threaded) loop, so other processes
on a shared machine do not skew it; wall time is checked against it.

Baselines, measured in the same run: ``bthome-ble`` alone (``BTHomeBluetoothDeviceData.
update`` on the same configured adverts) for decoding; the decode path for the ignore path.
``ratio`` = value / baseline. Run through ``bench/run`` (or ``bench/run ble``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak

from agent.clock import ManualClock
from agent.conditions import ConditionsDetector
from drivers.ble.advert import BTHOME_UUID, Advert
from drivers.ble.component import BleComponent
from drivers.ble.config import BleConfig, BleDevice
from drivers.ble.replay_backend import AdvertFeed
from drivers.ble.tools.replay import CollectingContext

N = int(os.environ.get("BENCH_BLE_ADVERTS", "30000"))
VECTORS = json.loads((ROOT / "tests" / "data" / "ble" / "bthome_vectors.json").read_text())
REC = {v["name"]: v for v in VECTORS["recorded"]}
THERMO = bytes.fromhex(REC["atc_packet_temp_hum_battery"]["payload"].replace(" ", ""))
HT = REC["shelly_blu_ht_encrypted"]
HT_PAYLOAD = bytes.fromhex(HT["payload"].replace(" ", ""))
THERMO_ADDRS = [f"A4:C1:38:00:00:{i:02X}" for i in range(20)]
OTHER_ADDRS = [f"5C:00:00:00:00:{i:02X}" for i in range(20)]


def emit(name: str, value: float, unit: str, baseline: float | None) -> None:
    ratio = round(value / baseline, 3) if baseline else None
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                      "baseline": None if baseline is None else round(baseline, 3),
                      "ratio": ratio}), flush=True)


def log_wall(wall: float, cpu: float) -> None:
    """Single-threaded: wall ~ CPU on an idle machine; a large gap means the box was busy."""
    if wall > 1.5 * cpu:
        print(f"note: wall {wall:.2f} s vs CPU {cpu:.2f} s: the machine was busy",
              file=sys.stderr)


def configured_adverts(n: int) -> list[Advert]:
    """n adverts from configured devices: 20 thermometers + the encrypted H&T, interleaved."""
    out = []
    pid = [0] * len(THERMO_ADDRS)
    t = 0.0
    while len(out) < n:
        for i, addr in enumerate(THERMO_ADDRS):
            pid[i] = (pid[i] + 1) % 256
            payload = THERMO[:2] + bytes([pid[i]]) + THERMO[3:]
            t += 0.001
            out.append(Advert(address=addr, rssi=-70, ts=t, mono=t, name="ATC",
                              service_data={BTHOME_UUID: payload}))
        t += 0.001
        out.append(Advert(address=HT["address"], rssi=-65, ts=t, mono=t, name="SBHT-003C",
                          service_data={BTHOME_UUID: HT_PAYLOAD}))
    return out[:n]


def other_adverts(n: int) -> list[Advert]:
    return [Advert(address=OTHER_ADDRS[i % 20], rssi=-80, ts=i * 0.001, mono=i * 0.001,
                   name=None, manufacturer_data={0x004C: b"\x10\x05\x01\x18\x00\x00\x00"})
            for i in range(n)]


def library_only(adverts: list[Advert]) -> tuple[float, float]:
    """(adverts/s, CPU s per advert) for bthome-ble alone, one parser per device."""
    parsers: dict[str, BTHomeBluetoothDeviceData] = {}
    key = bytes.fromhex(HT["bindkey"])
    infos = [BluetoothServiceInfoBleak(
        name=a.name or a.address, address=a.address, rssi=a.rssi, manufacturer_data={},
        service_data=dict(a.service_data), service_uuids=[BTHOME_UUID], source="local",
        device=None, advertisement=None, connectable=False, time=a.mono, tx_power=None)
        for a in adverts]
    w0, c0 = time.perf_counter(), time.process_time()
    for a, info in zip(adverts, infos):
        p = parsers.get(a.address)
        if p is None:
            p = parsers[a.address] = BTHomeBluetoothDeviceData(
                key if a.address == HT["address"] else None)
        p.update(info)
    cpu = time.process_time() - c0
    log_wall(time.perf_counter() - w0, cpu)
    return len(adverts) / cpu, cpu / len(adverts)


async def driver(adverts: list[Advert], devices: tuple[BleDevice, ...]) -> tuple[float, float, int]:
    """(adverts/s, CPU s per advert, readings) through the whole BLE driver."""
    clock = ManualClock(mono=0.0, wall=1_764_000_000.0)
    feed = AdvertFeed()
    ctx = CollectingContext(clock, "bench")
    config = BleConfig(devices=devices, stall_timeout_s=3600.0)
    comp = BleComponent(config, backend=feed, watchdog_poll_s=3600.0, supervision_poll_s=3600.0)
    # The driver with the device-condition rules it feeds (battery_low, cold_home ran inside
    # the driver before issue 18): the same work per advert as before.
    await ConditionsDetector(config).start(ctx)
    await comp.start(ctx)
    while not feed.scanning:
        await asyncio.sleep(0.001)
    push = feed.push
    w0, c0 = time.perf_counter(), time.process_time()
    for a in adverts:
        clock.advance(0.001)
        push(a)
    cpu = time.process_time() - c0
    log_wall(time.perf_counter() - w0, cpu)
    await comp.stop()
    ctx.close()
    return len(adverts) / cpu, cpu / len(adverts), len(ctx.readings) + len(ctx.events)


def main() -> None:
    import logging

    logging.disable(logging.WARNING)      # the library's per-advert warnings are not the bench
    devices = tuple(BleDevice(id=f"thermo-{i}", address=a, kind="bthome")
                    for i, a in enumerate(THERMO_ADDRS)) + (
        BleDevice(id="ht", address=HT["address"], kind="bthome", bindkey=HT["bindkey"]),)
    configured = configured_adverts(N)
    lib_rate, lib_cpu = library_only(configured)
    rate, cpu, outputs = asyncio.run(driver(configured, devices))
    ignore_rate, ignore_cpu, ignored_out = asyncio.run(driver(other_adverts(N), devices))
    assert ignored_out == 0 and outputs > 0
    emit("ble_decode_adverts_per_s", rate, "adverts/s", lib_rate)
    # CPU share of one core needed to decode 1,000 adverts per second.
    emit("ble_cpu_pct_per_1000_adverts_per_s", cpu * 1000 * 100, "% of one core",
         lib_cpu * 1000 * 100)
    emit("ble_ignore_adverts_per_s", ignore_rate, "adverts/s", rate)
    emit("ble_ignore_cpu_pct_per_1000_adverts_per_s", ignore_cpu * 1000 * 100,
         "% of one core", cpu * 1000 * 100)


if __name__ == "__main__":
    main()
