"""Commissioning asks for the person's usual get-up and bed times and saves them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.cli.commission import ask_routine, save_routine
from agent.config import load_config


def _args(**kw: str | None) -> argparse.Namespace:
    return argparse.Namespace(get_up=kw.get("get_up"), bedtime=kw.get("bedtime"))


def test_answers_are_checked_and_saved_into_the_installers_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('# the installer\'s comment\nhub_id = "h"\n')
    answers = iter(["7.30", "07:30", ""])                    # a typo, the time, skip bed time
    asked: list[str] = []

    def ask(q: str) -> str:
        asked.append(q)
        return next(answers)

    values = ask_routine(_args(), load_config(path), ask)
    assert values == {"usual_get_up": "07:30"} and len(asked) == 3
    assert "not a time of day" in capsys.readouterr().out
    save_routine(str(path), values)
    cfg = load_config(path)
    assert cfg.inactivity.usual_get_up == "07:30" and cfg.inactivity.usual_bedtime == ""
    assert path.read_text().startswith("# the installer's comment")
    # Next time only what the config lacks is asked; flags still win.
    asked.clear()
    assert ask_routine(_args(), cfg, lambda q: asked.append(q) or "") == {}
    assert asked == ["Usual bed time of the person (HH:MM, Enter to skip): "]
    assert ask_routine(_args(bedtime="22:15"), cfg, None) == {"usual_bedtime": "22:15"}
    with pytest.raises(ValueError, match="--get-up"):
        ask_routine(_args(get_up="25:00"), cfg, None)
