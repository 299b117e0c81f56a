"""Generate the synthetic wearable recordings used by the fall tests (seeded, no real data).

    python tests/data/fall/make_fixtures.py

Writes ``SYN01.npz`` in the format of ``../shared/data/fall/`` (int16 (n, 6) at 50 Hz:
milli-g, 0.1 deg/s) with three trials:

- ``F01_R01``: 4 s walking upright, 0.5 s falling forward (|a| drops, the trunk rotates
  towards horizontal), a 5 g impact, then lying still face down for 8 s;
- ``D19_R01``: 4 s standing, a jump (push-off, 0.35 s airborne, 4 g landing), then
  standing still upright;
- ``D07_R01``: walking, sitting down heavily (2.6 g) and sitting still, slightly reclined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 50.0
rng = np.random.default_rng(7)


def rot_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def gravity(tilt_deg: float) -> np.ndarray:
    """Body-frame gravity reading (g) with the trunk pitched forward by ``tilt_deg``."""
    return rot_x(tilt_deg) @ np.array([0.0, -1.0, 0.0])


def walking(seconds: float, tilt: float = 0.0, amp: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    base = np.tile(gravity(tilt), (len(t), 1))
    step = 2 * np.pi * 1.8 * t
    base[:, 1] += -amp * np.sin(step)            # vertical bounce
    base[:, 2] += 0.4 * amp * np.sin(step / 2)   # forward sway
    base[:, 0] += 0.3 * amp * np.cos(step / 2)   # lateral sway
    return base


def still(seconds: float, tilt: float, noise: float = 0.008) -> np.ndarray:
    n = int(seconds * RATE)
    return np.tile(gravity(tilt), (n, 1)) + rng.normal(0, noise, (n, 3))


def impact(direction: np.ndarray, peak_g: float) -> np.ndarray:
    shape = np.array([0.35, 1.0, 0.55, 0.25, 0.1])
    return np.outer(shape * peak_g, direction / np.linalg.norm(direction))


def to_int16(acc: np.ndarray, gyro: np.ndarray | None = None) -> np.ndarray:
    acc = acc + rng.normal(0, 0.01, acc.shape)
    if gyro is None:
        gyro = np.vstack([np.zeros((1, 3)), np.diff(acc, axis=0) * 400.0])
    out = np.hstack([np.round(acc * 1000), np.round(gyro * 10)])
    return np.clip(out, -32768, 32767).astype(np.int16)


def fall() -> np.ndarray:
    walk = walking(4.0)
    n = int(0.5 * RATE)
    phase = np.linspace(0, 1, n)
    falling = np.stack([gravity(80 * p) * (1 - 0.75 * np.sin(np.pi * p) ** 0.5) for p in phase])
    hit = impact(np.array([0.2, 0.3, 1.0]), 5.0) + gravity(85)
    rebound = np.stack([gravity(85) + 0.3 * np.sin(k) * np.exp(-k / 3) for k in range(10)])
    lying = still(8.0, 88)
    return to_int16(np.vstack([walk, falling, hit, rebound, lying]))


def jump() -> np.ndarray:
    stand = still(4.0, 3)
    push = np.stack([gravity(3) * (1 + 0.8 * np.sin(np.pi * k / 10)) for k in range(10)])
    air = np.tile(gravity(3) * 0.05, (int(0.35 * RATE), 1))
    land = impact(np.array([0.0, -1.0, 0.15]), 4.0) + gravity(3)
    settle = np.stack([gravity(3) * (1 + 0.4 * np.sin(k) * np.exp(-k / 4)) for k in range(15)])
    return to_int16(np.vstack([stand, push, air, land, settle, still(8.0, 3)]))


def sit_down() -> np.ndarray:
    walk = walking(3.0)
    lower = np.stack([gravity(25 * p) * (1 - 0.3 * np.sin(np.pi * p))
                      for p in np.linspace(0, 1, 40)])
    seat = impact(np.array([0.0, -1.0, -0.3]), 2.6) + gravity(25)
    return to_int16(np.vstack([walk, lower, seat, still(8.0, 15)]))


def main() -> None:
    out = Path(__file__).resolve().parent / "SYN01.npz"
    np.savez_compressed(out, F01_R01=fall(), D19_R01=jump(), D07_R01=sit_down())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
