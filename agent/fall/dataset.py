"""Recorded trials in the format of ``../shared/data/fall/`` (SisFall converted to 50 Hz).

One ``SUBJECT.npz`` per subject; each key ``CODE_RNN`` (``F..`` fall, ``D..`` daily activity)
holds an int16 ``(n, 6)`` array: acceleration in milli-g, then rotation in 0.1 deg/s. Codes
have two or three digits (``F01``, ``D107``) and repeats any number (``R01``, ``R123``).

A ``mapping.json`` beside the files (FallAllD's) names each code (``codes``); a fall whose
name says the volunteer got up again (``rec.``, ``rev.``) is a *recovered* fall: the
detector should report it as ``fall_recovered``, not raise an alarm.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from agent.errors import DecodeError
from agent.fall.signal import SAMPLE_RATE_HZ, magnitude

ACC_G_PER_COUNT = 1e-3
GYRO_DPS_PER_COUNT = 0.1
_KEY = re.compile(r"[DF]\d{2,3}_R\d{2,}")
_RECOVERED_NAME = re.compile(r"\b(rec|rev)\.")


@dataclass(frozen=True, slots=True)
class Trial:
    subject: str
    code: str                                   # e.g. F01_R01
    samples: np.ndarray = field(repr=False)     # int16 (n, 6)
    recovered: bool = False                     # a fall the volunteer got up from

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
    def repeat(self) -> int:
        return int(self.code.split("_R")[1])

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


def activity_names(data_dir: Path) -> dict[str, str]:
    """Code -> activity name from ``mapping.json`` beside the files ({} without one)."""
    path = Path(data_dir) / "mapping.json"
    if not path.is_file():
        return {}
    try:
        codes = json.loads(path.read_text(encoding="utf-8")).get("codes", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise DecodeError(f"{path}: unreadable mapping: {exc}") from None
    return {str(k): str(v) for k, v in codes.items()} if isinstance(codes, dict) else {}


def recovered_codes(names: dict[str, str]) -> frozenset[str]:
    return frozenset(code for code, name in names.items()
                     if code.startswith("F") and _RECOVERED_NAME.search(name))


def load_trials(data_dir: Path, subjects: set[str] | None = None) -> list[Trial]:
    recovered = recovered_codes(activity_names(data_dir))
    out: list[Trial] = []
    for path in subject_files(data_dir):
        if subjects is None or path.stem in subjects:
            out.extend(replace(t, recovered=t.activity in recovered) if recovered else t
                       for t in load_subject(path))
    return out


def data_version(data_dir: Path) -> str:
    """sha256 over the subject files' names and bytes: which data a model was trained on."""
    h = hashlib.sha256()
    for path in subject_files(data_dir):
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def adls_by_subject(trials: Sequence[Trial]) -> list[tuple[str, list[Trial]]]:
    """Each subject's daily-activity trials, in order: the continuous test's streams."""
    by_subject: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        if not t.is_fall:
            by_subject[t.subject].append(t)
    return sorted(by_subject.items())
