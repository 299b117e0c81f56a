"""The [fall] config section."""

from __future__ import annotations

import pytest

from agent.config import parse_config_text
from agent.errors import ConfigError


def test_defaults_and_overrides() -> None:
    cfg = parse_config_text('hub_id = "h"\n')
    assert cfg.fall.enabled and cfg.fall.wearables == () and cfg.fall.model_path is None
    cfg = parse_config_text('hub_id = "h"\n[fall]\nwearables = ["belt-1"]\nthreshold = 0.8\n'
                            'confirm_s = 15\ncancel_window_s = 30\n')
    assert cfg.fall.wearables == ("belt-1",) and cfg.fall.threshold == 0.8
    assert (cfg.fall.confirm_s, cfg.fall.cancel_window_s) == (15.0, 30.0)
    assert cfg.fall.second_model is True
    cfg = parse_config_text('hub_id = "h"\n[fall]\nsecond_model = false\n')
    assert cfg.fall.second_model is False


@pytest.mark.parametrize("body, problem", [
    ("threshold = 1.5", "fall.threshold: expected 0.0..1.0"),
    ("confirm_s = 0.5", "fall.confirm_s"),
    ('interpreter = "tensorflow"', "fall.interpreter: expected one of"),
    ('wearables = ["bad id!"]', "fall.wearables[0]"),
    ("slumped_tilt_deg = 60", "fall.slumped_tilt_deg: greater than lying_tilt_deg"),
    ('manifest_path = "/x.json"', "fall.manifest_path: only with model_path"),
    ("gate = 2", "fall.gate: unknown key"),
    ('second_model = "no"', "fall.second_model: expected bool"),
    ("second_model = 0", "fall.second_model: expected bool"),
])
def test_invalid_values_name_the_key(body: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config_text(f'hub_id = "h"\n[fall]\n{body}\n')
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_a_missing_model_file_is_not_a_config_error() -> None:
    """A damaged install must not stop the agent: the detector falls back at start."""
    cfg = parse_config_text('hub_id = "h"\n[fall]\nmodel_path = "/nonexistent/fall.tflite"\n')
    assert cfg.fall.model_path == "/nonexistent/fall.tflite"
