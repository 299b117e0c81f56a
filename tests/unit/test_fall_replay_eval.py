"""Replay of recordings as motion_samples readings, and the eval-fall command."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.fall.config import FallConfig
from agent.fall.dataset import Trial, load_trials
from agent.fall.evaluation import (
    ContinuousResult,
    Evaluator,
    TrialResult,
    junction_exposure_s,
    published_threshold_summary,
    shuffled_summary,
    spans_junction,
    summarize,
)
from agent.fall.replay import motion_readings
from agent.fall.scoring import PeakThresholdScorer
from tests.unit.fall_helpers import FIXTURES, recording


def test_readings_follow_the_motion_samples_contract() -> None:
    rec = recording("F01_R01")
    readings = list(motion_readings("wear-1", rec, t0=10.0, extra={"room": "hall"}))
    assert len(readings) == int(np.ceil(len(rec) / 25))
    first, second = readings[0], readings[1]
    assert first.type == "motion_samples" and first.publish is False
    d = first.data
    assert d["rate_hz"] == 50.0 and d["t0"] == 10.0 and d["chunk"] == 0
    assert d["gap_before"] is False and d["room"] == "hall"
    assert len(d["acc_g"]) == 25 and len(d["acc_g"][0]) == 3
    assert d["acc_g"][0][1] == pytest.approx(rec[0, 1] / 1000.0)
    assert d["gyro_dps"][0][2] == pytest.approx(rec[0, 5] / 10.0)
    assert second.data["t0"] == pytest.approx(10.5) and second.data["chunk"] == 1
    assert first.mono == pytest.approx(10.0 + 24 / 50)
    total = sum(len(r.data["acc_g"]) for r in readings)
    assert total == len(rec)


def test_dataset_loader_reads_the_shared_format_and_rejects_others(tmp_path: Path) -> None:
    trials = load_trials(FIXTURES)
    assert {t.code for t in trials} == {"F01_R01", "D19_R01", "D07_R01"}
    fall = next(t for t in trials if t.is_fall)
    assert fall.subject == "SYN01" and fall.activity == "F01"
    assert 4.0 < fall.impact_index() / 50 < 5.0
    np.savez(tmp_path / "X.npz", F01_R01=np.zeros((10, 6), np.float32))
    with pytest.raises(ValueError, match="int16"):
        load_trials(tmp_path)


def test_summary_counts_trial_level_and_continuous_figures() -> None:
    res = [TrialResult("S1", "F01_R01", True, 1, 22.0, 0.9, 0.9, 3),
           TrialResult("S1", "F02_R01", True, 0, None, 0.2, 0.2, 2),
           TrialResult("S1", "D01_R01", False, 1, None, 0.95, None, 9),
           TrialResult("S1", "D02_R01", False, 0, None, 0.1, None, 4)]
    s = summarize(res, [ContinuousResult("S1", 2.0, 1)])
    assert (s["sensitivity"], s["specificity"], s["f1"]) == (0.5, 0.5, 0.5)
    assert s["false_alarms_per_hour"] == 0.5 and s["detection_delay_s_p50"] == 22.0
    assert s["per_subject"]["S1"]["missed"] == ["F02_R01"]
    assert s["per_subject"]["S1"]["false_alarms"] == ["D01_R01"]


def test_eval_fall_prints_one_json_object_with_every_contract_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "SYN01.npz", data / "SYN01.npz")
    plot = importlib.util.find_spec("matplotlib") is not None
    argv = ["eval-fall", "--data", str(data)]
    if plot:
        argv += ["--plot", str(tmp_path / "png")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    keys = {"trials", "falls", "adls", "sensitivity", "specificity", "f1",
            "false_alarms_per_hour", "detection_delay_s_p50", "per_subject"}
    assert keys <= set(out) and keys <= set(out["baseline"])
    assert (out["trials"], out["falls"], out["adls"]) == (3, 1, 2)
    assert out["sensitivity"] == 1.0 and out["specificity"] == 1.0
    assert out["baseline"]["sensitivity"] == 1.0
    assert {"sensitivity", "specificity", "false_alarms_per_24h"} <= set(out["baseline_published"])
    assert "no posture check" in out["baseline_published"]["detector"]
    assert out["detection_delay_s_p50"] > 2.0
    assert out["per_subject"]["SYN01"]["falls"] == 1
    assert out["false_alarms_per_hour"] == 0.0
    if plot:
        names = {Path(p).name for p in out["plots"]}
        assert {"confusion_matrix.png", "score_distributions.png", "example_fall.png"} <= names
        for p in out["plots"]:
            assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_second_model_evaluates_the_shipped_model_alone_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At the neck eval-fall runs the shipped pair by default; --no-second-model runs what a
    hub with [fall] second_model = false runs (the shipped model alone, its own threshold),
    and the JSON says which models scored."""
    from agent.fall.pair import load_model

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "SYN01.npz", data / "SYN01.npz")
    runs = {}
    for flag in ([], ["--no-second-model"]):
        lines = tmp_path / f"trials{len(flag)}.jsonl"
        assert main(["eval-fall", "--data", str(data), "--position", "neck",
                     "--trials-out", str(lines), *flag]) == 0
        out = json.loads(capsys.readouterr().out)
        runs[bool(flag)] = out, [json.loads(x) for x in lines.read_text().splitlines()]
    pair, alone = runs[False][0], runs[True][0]
    assert [m["role"] for m in pair["model"]["scored"]] == ["shipped", "second"]
    assert pair["settings"]["second_model"] is True and "second" in pair["model"]["pair"]
    hub = load_model(FallConfig(position="neck", second_model=False))
    assert alone["model"]["scored"] == [{"role": "shipped", "version": hub.version,
                                         "threshold": hub.threshold,
                                         "path": str(hub.model_path)}]
    assert alone["settings"]["second_model"] is False and "pair" not in alone["model"]
    assert (alone["model"]["version"], alone["model"]["threshold"]) == (hub.version,
                                                                        hub.threshold)
    # Scored by the shipped model's own output, not the pair's calibrated maximum.
    assert [r["score"] for r in runs[True][1]] != [r["score"] for r in runs[False][1]]


def test_eval_fall_reports_a_bad_model_or_directory(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-fall", "--data", str(tmp_path / "missing")]) == 2
    (tmp_path / "fall.tflite").write_bytes(b"junk")
    assert main(["eval-fall", "--data", str(FIXTURES),
                 "--model", str(tmp_path / "fall.tflite")]) == 1
    assert "manifest not found" in capsys.readouterr().err


def test_published_threshold_has_no_posture_check_and_counts_crossings_per_minute() -> None:
    quiet = np.tile(np.int16([0, -1000, 0, 0, 0, 0]), (3000, 1))      # 60 s upright, still

    def with_spikes(at_s: list[float]) -> np.ndarray:
        x = quiet.copy()
        for s in at_s:
            x[int(s * 50), :3] = (0, -4000, 0)                          # one 4 g sample
        return x

    trials = [Trial("S1", "F01_R01", with_spikes([10])),   # found
              Trial("S1", "F02_R01", quiet),               # missed: no peak
              Trial("S1", "D19_R01", with_spikes([5, 6])),  # a jump: alarm, no posture check
              Trial("S1", "D01_R01", with_spikes([1])),    # 55 s later in the stream: same alarm
              Trial("S1", "D02_R01", quiet)]
    s = published_threshold_summary(trials, 3.52)
    assert (s["tp"], s["fn"], s["fp"], s["tn"]) == (1, 1, 2, 1)
    assert s["continuous_false_alarms"] == 1 and s["continuous_hours"] == pytest.approx(0.05)
    trials.append(Trial("S1", "D03_R01", with_spikes([59])))  # 178 s after the last: a new one
    assert published_threshold_summary(trials, 3.52)["continuous_false_alarms"] == 2
    assert published_threshold_summary(trials, 5.0)["fp"] == 0


def test_trial_properties() -> None:
    t = Trial("SA01", "D07_R03", np.zeros((100, 6), np.int16))
    assert t.key == "SA01/D07_R03" and not t.is_fall and t.duration_s == 2.0


def test_junction_window_and_exposure_follow_the_detection_timeline() -> None:
    cfg = FallConfig()   # window 2 s before the impact, decision 2 s after, confirm 10 s
    assert spans_junction(10.0, [8.5], cfg) and spans_junction(10.0, [22.0], cfg)
    assert not spans_junction(10.0, [7.9], cfg) and not spans_junction(10.0, [22.1], cfg)
    assert not spans_junction(10.0, [], cfg)
    # Each junction exposes the 12 s before it and the 2 s after it.
    assert junction_exposure_s([20.0, 100.0], 120.0, cfg) == pytest.approx(28.0)
    assert junction_exposure_s([20.0, 25.0], 120.0, cfg) == pytest.approx(19.0)   # overlap
    assert junction_exposure_s([5.0, 119.0], 120.0, cfg) == pytest.approx(7.0 + 13.0)


def _posture_mg(tilt_deg: float, seconds: float) -> np.ndarray:
    a = np.radians(tilt_deg)
    rng = np.random.default_rng(int(tilt_deg * 10 + seconds))
    g = np.tile([0.0, -np.cos(a) * 1000, np.sin(a) * 1000], (int(seconds * 50), 1))
    acc = g + rng.normal(0, 5, g.shape)
    return np.hstack([acc, np.zeros_like(acc)]).astype(np.int16)


def _impact(x: np.ndarray, at_s: float) -> np.ndarray:
    x = x.copy()
    x[int(at_s * 50), :3] = (0, -4000, 0)          # a 4 g sample: over 3.52 g
    return x


def test_continuous_alarms_are_attributed_to_junctions_and_orders_are_reproducible() -> None:
    # S1: an impact while upright, then the recording ends; the next recording starts
    # lying. The stream shows "impact, then lying" only because the two were joined.
    upright_impact = _impact(_posture_mg(0, 20), 17.0)
    lying = _posture_mg(90, 30)
    # S2: the same impact and lying within one recording.
    within = np.vstack([upright_impact, lying])
    trials = [Trial("S1", "D01_R01", upright_impact), Trial("S1", "D14_R01", lying),
              Trial("S2", "D01_R01", within), Trial("S2", "D02_R01", _posture_mg(0, 30))]
    ev = Evaluator(PeakThresholdScorer(3.52), FallConfig())
    _, cont = ev.run(trials)
    by = {c.subject: c for c in cont}
    assert (by["S1"].alarms, by["S1"].junction_alarms) == (1, 1)
    assert (by["S2"].alarms, by["S2"].junction_alarms) == (1, 0)
    s = summarize([], cont)
    assert s["continuous_false_alarms"] == 2 and s["continuous_false_alarms_at_junctions"] == 1
    assert 0.0 < s["continuous_junction_exposure"] < 1.0
    first = ev.run_shuffled(trials, 3)
    again = ev.run_shuffled(trials, 3)
    assert len(first) == 3 and all(len(o) == 2 for o in first)
    assert [[c.alarms for c in o] for o in first] == [[c.alarms for c in o] for o in again]
    # S1 in the order lying -> upright: the impact is followed by nothing but upright.
    for order in first:
        s1 = order[0]
        assert s1.alarms == s1.junction_alarms == int(s1.recordings[0] == "D01_R01")
    assert len({o[0].recordings for o in first + [cont]}) == 2   # both orders occur
    summary = shuffled_summary(first)
    assert summary["orders"] == 3 and len(summary["false_alarms"]) == 3
    assert summary["hours_per_order"] == pytest.approx(by["S1"].hours + by["S2"].hours, abs=1e-3)
    assert all(j <= a for j, a in zip(summary["false_alarms_at_junctions"],
                                      summary["false_alarms"], strict=True))


def test_eval_fall_shuffled_orders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-fall", "--data", str(FIXTURES), "--shuffled-orders", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    for part in (out, out["baseline"]):
        sh = part["continuous_shuffled"]
        assert sh["orders"] == 2 and len(sh["false_alarms"]) == 2
        assert sh["hours_per_order"] == pytest.approx(part["continuous_hours"], abs=1e-3)
    assert "continuous_false_alarms_at_junctions" in out
    assert out["continuous_false_alarms_held"] >= 0 and "false_alarms_per_24h_held" in out
    assert main(["eval-fall", "--data", str(FIXTURES), "--shuffled-orders", "-1"]) == 2


def test_held_ends_judge_each_impact_on_its_own_recording() -> None:
    # S1: an impact while upright at the end of a recording, the next one lying: the joined
    # stream alarms on the next recording's posture (a junction creates the alarm).
    upright_impact = _impact(_posture_mg(0, 20), 17.0)
    # S3: an impact, then lying until the recording ends; the next recording is upright:
    # joined, the wearer seems to get up (a junction hides the alarm).
    fall_then_end = np.vstack([_impact(_posture_mg(0, 18), 17.0), _posture_mg(90, 4)])
    # S2: impact and lying within one recording: an alarm either way.
    within = np.vstack([upright_impact, _posture_mg(90, 30)])
    trials = [Trial("S1", "D01_R01", upright_impact), Trial("S1", "D14_R01", _posture_mg(90, 30)),
              Trial("S2", "D01_R01", within), Trial("S2", "D02_R01", _posture_mg(0, 30)),
              Trial("S3", "D07_R01", fall_then_end), Trial("S3", "D08_R01", _posture_mg(0, 30))]
    _, cont = Evaluator(PeakThresholdScorer(3.52), FallConfig()).run(trials)
    by = {c.subject: c for c in cont}
    assert [(by[s].alarms, by[s].held_alarms) for s in ("S1", "S2", "S3")] == [
        (1, 0), (1, 1), (0, 1)]
    assert by["S3"].held_alarm_recordings == ("D07_R01",)
    assert by["S2"].alarm_recordings == by["S2"].held_alarm_recordings == ("D01_R01",)
    # Same recorded hours for both streams: the held padding is not wear time.
    assert by["S3"].hours == pytest.approx((22 + 30) / 3600)
    s = summarize([], cont)
    assert (s["continuous_false_alarms"], s["continuous_false_alarms_held"]) == (2, 2)
    assert s["continuous_held_alarm_recordings"] == ["S2 D01_R01", "S3 D07_R01"]
    assert s["continuous_false_alarms_held_at_junctions"] == 0
    assert s["false_alarms_per_24h_held"] == pytest.approx(
        24 * 2 / sum(c.hours for c in cont), abs=1e-3)


def test_slower_streams_a_recording_as_a_slower_wearable_would() -> None:
    from agent.fall.evaluation import slower

    x = np.arange(60, dtype=np.int16).reshape(10, 6)
    assert (slower(x, 50.0) == x).all()
    half = slower(x, 25.0)
    assert half.shape == (5, 6) and half.dtype == np.int16
    assert (half[0] == np.round((x[0].astype(float) + x[1]) / 2)).all()
    assert slower(x, 16.67).shape == (3, 6)   # 50 / 3, the last sample dropped
    for bad in (30.0, 0.0, 100.0):
        with pytest.raises(ValueError, match="divided by a whole number"):
            slower(x, bad)


def test_eval_fall_names_the_obvious_mistakes(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A model path that does not exist is named as such (it was reported as
    'manifest.json: model manifest not found'); the data set's parent directory points to
    the subdirectory holding the recordings (FallAllD: neck/ and waist/)."""
    missing = tmp_path / "nosuch.tflite"
    assert main(["eval-fall", "--data", str(FIXTURES), "--model", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"--model {missing}: no such file" in err and "manifest" in err
    parent = tmp_path / "fallalld"
    shutil.copytree(FIXTURES, parent / "neck")
    assert main(["eval-fall", "--data", str(parent)]) == 2
    assert f"one level down, e.g. --data {parent / 'neck'}" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval-fall", "--data", str(tmp_path / "empty")]) == 2
    assert "no SUBJECT.npz files (SUBJECT.npz recordings" in capsys.readouterr().err


def test_eval_fall_usage_offers_only_the_positions_that_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval-fall", "--help"])
    out = capsys.readouterr().out
    assert "--position {neck,waist}" in out and "wrist" not in out.split("options:")[0]


def test_a_model_checked_against_another_models_manifest_names_that_manifest(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--model models/fall/fall-neck.tflite reads manifest.json beside it (the shipped
    model's; the neck model's is manifest-neck.json): the error said only 'does not match
    manifest'."""
    neck = Path(__file__).resolve().parents[2] / "models" / "fall" / "fall-neck.tflite"
    assert main(["eval-fall", "--data", str(FIXTURES), "--model", str(neck)]) == 1
    err = capsys.readouterr().err
    assert f"does not match {neck.with_name('manifest.json')}" in err
    assert "another model's manifest" in err
