"""Recorded trials in the format of ``../shared/data/fall/`` (SisFall converted to 50 Hz).

One ``SUBJECT.npz`` per subject; each key ``CODE_RNN`` (``F..`` fall, ``D..`` daily activity)
holds an int16 ``(n, 6)`` array: acceleration in milli-g, then rotation in 0.1 deg/s.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.errors import DecodeError
from agent.fall.signal import SAMPLE_RATE_HZ, magnitude

ACC_G_PER_COUNT = 1e-3
GYRO_DPS_PER_COUNT = 0.1
_KEY = re.compile(r"[DF]\d{2}_R\d{2}")


@dataclass(frozen=True, slots=True)
class Trial:
    subject: str
    code: str                                   # e.g. F01_R01
    samples: np.ndarray = field(repr=False)     # int16 (n, 6)

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.code}"

    @property
    def is_fall(self) -> bool:
        return self.code.startswith("F")

    @property
    def activity(self) -> str:
        return self.code.split("_")[0]

    @property
    def acc_g(self) -> np.ndarray:
        return self.samples[:, :3].astype(np.float32) * ACC_G_PER_COUNT

    @property
    def gyro_dps(self) -> np.ndarray:
        return self.samples[:, 3:6].astype(np.float32) * GYRO_DPS_PER_COUNT

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE_HZ

    def impact_index(self) -> int:
        """The impact is unlabelled: take the largest |a| of the recording."""
        return int(np.argmax(magnitude(self.acc_g)))


def subject_files(data_dir: Path) -> list[Path]:
    files = sorted(Path(data_dir).glob("*.npz"))
    if not files:
        raise DecodeError(f"{data_dir}: no SUBJECT.npz files")
    return files


def load_subject(path: Path) -> list[Trial]:
    subject = path.stem
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DecodeError(f"{path}: not a readable .npz: {exc}") from None
    trials = []
    with archive:
        for code in sorted(archive.files):
            arr = archive[code]
            if not _KEY.fullmatch(code):
                raise DecodeError(f"{path}: trial key {code!r} is not CODE_RNN")
            if arr.ndim != 2 or arr.shape[1] != 6 or arr.dtype != np.int16:
                raise DecodeError(f"{path}: {code} is {arr.dtype} {arr.shape},"
                                  " expected int16 (n, 6)")
            trials.append(Trial(subject, code, arr))
    return trials


def load_trials(data_dir: Path, subjects: set[str] | None = None) -> list[Trial]:
    out: list[Trial] = []
    for path in subject_files(data_dir):
        if subjects is None or path.stem in subjects:
            out.extend(load_subject(path))
    return out


def data_version(data_dir: Path) -> str:
    """sha256 over the subject files' names and bytes: which data a model was trained on."""
    h = hashlib.sha256()
    for path in subject_files(data_dir):
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
