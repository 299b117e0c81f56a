"""models.fall.bound on two real FallAllD neck people (a few trials each), with the shipped
pair standing in for each fold's models: the studies are consistent with the runtime runs
they summarise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.fall.dataset import load_trials
from models.fall.bound import evaluate, main, peak_rotation_dps
from models.fall.corpus import DataSet
from models.fall.cv import fold_dirs

MODELS = Path(__file__).resolve().parents[2] / "models" / "fall"
TRIALS = {"FA02": ["D01_R01", "D19_R04", "F03_R01", "F04_R01", "F08_R01", "D02_R01"],
          "FA07": ["D01_R01", "D18_R04", "F03_R01", "F16_R01", "D15_R01"]}


def _data(shared: Path, tmp: Path) -> Path:
    src = shared / "data" / "fallalld" / "neck"
    out = tmp / "neck"
    out.mkdir()
    shutil.copy(src / "mapping.json", out / "mapping.json")
    for person, codes in TRIALS.items():
        with np.load(src / f"{person}.npz") as z:
            np.savez(out / f"{person}.npz", **{c: z[c] for c in codes})
    return out


def _folds(tmp: Path, name: str, model: str, manifest: str) -> Path:
    """One fold per person, each the shipped model file with its manifest and held_out."""
    root = tmp / name
    for k, person in enumerate(TRIALS):
        d = root / f"fold-{k}"
        d.mkdir(parents=True)
        shutil.copy(MODELS / model, d / "fall.tflite")
        doc = json.loads((MODELS / manifest).read_text())
        doc["held_out"] = [f"fallalld:{person}"]
        (d / "manifest.json").write_text(json.dumps(doc))
    return root


def test_bound_studies_agree_with_their_runs(shared_dir: Path, tmp_path: Path) -> None:
    ds = DataSet.parse(f"fallalld:neck={_data(shared_dir, tmp_path)}")
    first = _folds(tmp_path, "cv-folds", "fall.tflite", "manifest.json")
    second = _folds(tmp_path, "neck-folds", "fall-neck.tflite", "manifest-neck.json")
    out = evaluate(ds, fold_dirs(first), second, shifts=(0.5, 0.9999), angles=(70.0, 20.0),
                   confirms=(10.0, 20.0))

    shift = out["threshold_shift"]
    at = {r["setting"]: r for r in shift["hindsight"]}
    # the shipped pair alarms on both floor falls (F03) and on FA07 lying down on a bed and
    # FA02 turning over; FA02 F04 and FA07 F16 are recovered, FA02 F08 is still down at
    # the clip's end (as eval-fall has them on these people, in sample)
    assert at[0.5]["floor"] == "2/2" and at[0.5]["false_alarms"] == 2
    assert at[0.5]["recovered"] == "2/3"
    # over every score the int8 models give, nothing is detected
    assert at[0.9999]["floor"] == "0/2" and at[0.9999]["false_alarms"] == 0
    # leave-one-person-out: each person's figures come from the setting it was given
    held = shift["held_out"]
    assert set(held["chosen"]) == set(TRIALS)
    floors = [shift["held_out_per_person"][p]["floor"] for p in TRIALS]
    assert held["floor"] == (f"{sum(int(f.split('/')[0]) for f in floors)}/"
                             f"{sum(int(f.split('/')[1]) for f in floors)}")

    angle = {r["setting"]: r for r in out["recovered_angle"]["hindsight"]}
    # the recovered angle confirms nothing: alarms are the same at every angle
    assert angle[20.0]["floor"] == angle[70.0]["floor"]
    assert angle[20.0]["false_alarms"] == angle[70.0]["false_alarms"]

    confirm = {r["setting"]: r for r in out["confirm"]["hindsight"]}
    assert {**confirm[10.0], "setting": 0.5} == at[0.5] and set(confirm) == {10.0, 20.0}

    rot = out["rotation"]
    assert {(a["subject"], a["trial"]) for a in rot["adl_alarms"]} == {
        ("FA02", "D19_R04"), ("FA07", "D18_R04")}
    trials = {(t.subject, t.code): t for t in load_trials(ds.path)}
    fa07 = peak_rotation_dps(trials[("FA07", "D18_R04")])
    assert fa07 is not None and fa07 > 0
    assert next(a["dps"] for a in rot["adl_alarms"] if a["subject"] == "FA07") == round(fa07)
    assert rot["groups_dps"]["floor_falls_alarmed"]["n"] == 2
    floor = [peak_rotation_dps(trials[(p, "F03_R01")]) for p in TRIALS]
    assert rot["floor_falls_at_or_below"]["D18_R04:FA07"] == sum(
        f is not None and f <= round(fa07) for f in floor)


def test_bound_help_and_missing_folds_say_where_the_folds_come_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The description was cut at the docstring's first line ('... at the neck,'), and a
    missing fold directory said only 'no fold-K directories'."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "at the neck, even chosen in hindsight" in out
    assert "not in the repository" in out and "out/cv-folds and --second-model neck" in out
    with pytest.raises(SystemExit, match="no such directory.*models.fall.train.*--folds-out"):
        fold_dirs(tmp_path / "out" / "cv-folds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no fold-K directories.*--folds-out"):
        fold_dirs(tmp_path / "empty")
