"""Timelines through the pure input state machine: debounce, storm, settle, hold."""

from __future__ import annotations

from drivers.gpio import channel as ch
from drivers.gpio.channel import InputChannel

W = 1_764_000_000.0  # wall offset: wall = mono + W


def run(c: InputChannel, timeline: list[tuple[float, bool]], until: float) -> list[ch.Signal]:
    """Feed edges at their times and run timers in between, as the driver would."""
    out: list[ch.Signal] = []
    for t, raw in timeline:
        while (d := c.next_deadline()) is not None and d <= t:
            out += c.due(d)
        out += c.edge(raw, t, t + W)
    while (d := c.next_deadline()) is not None and d <= until:
        out += c.due(d)
    return out


def names(signals: list[ch.Signal]) -> list[str]:
    return [s.name for s in signals]


def test_first_edge_is_reported_at_once_and_bounces_are_swallowed() -> None:
    c = InputChannel(bounce_s=0.05)
    c.start(False, 0.0, W)
    first = c.edge(True, 10.0, 10.0 + W)
    assert names(first) == [ch.ASSERTED]
    assert first[0].mono == 10.0 and first[0].wall == 10.0 + W
    bounces = [(10.001, False), (10.002, True), (10.003, False), (10.004, True)]
    assert run(c, bounces, until=11.0) == []
    assert c.reported is True


def test_lockout_reconciles_to_the_final_state() -> None:
    c = InputChannel(bounce_s=0.05)
    c.start(False, 0.0, W)
    out = run(c, [(1.0, True), (1.01, False)], until=2.0)
    # Pressed and released within the lockout: both are reported, the release when it ends.
    assert names(out) == [ch.ASSERTED, ch.DEASSERTED]
    assert out[1].mono == 1.05


def test_storm_gives_one_warning_then_mutes_until_quiet_and_reports_final_state() -> None:
    c = InputChannel(bounce_s=0.05, storm_events=5, storm_window_s=2.0)
    c.start(False, 0.0, W)
    flaps = [(1.0 + i * 0.1, i % 2 == 0) for i in range(60)]   # 5 Hz for 6 s
    out = run(c, flaps, until=100.0)
    assert names(out).count(ch.STORM) == 1
    before_storm = names(out)[: names(out).index(ch.STORM)]
    assert len(before_storm) == 4            # storm_events - 1 changes got through
    assert ch.STORM_OVER in names(out)
    over = out[names(out).index(ch.STORM_OVER)]
    assert over.mono >= flaps[-1][0] + 2.0   # quiet for a whole window first
    # Last raw state was False (i=59 odd); before the storm the 4th change reported False.
    assert c.reported is False and not c.in_storm


def test_storm_over_reports_a_changed_state() -> None:
    c = InputChannel(bounce_s=0.0, storm_events=3, storm_window_s=1.0)
    c.start(False, 0.0, W)
    out = run(c, [(1.0, True), (1.1, False), (1.2, True), (1.3, False), (1.4, True)], until=5.0)
    assert names(out) == [ch.ASSERTED, ch.DEASSERTED, ch.STORM, ch.STORM_OVER, ch.ASSERTED]


def test_slow_changes_never_make_a_storm() -> None:
    c = InputChannel(bounce_s=0.05, storm_events=5, storm_window_s=2.0)
    c.start(False, 0.0, W)
    out = run(c, [((i + 1) * 0.6, i % 2 == 0) for i in range(39)], until=100.0)
    assert ch.STORM not in names(out)
    assert len(out) == 39


def test_mat_settles_before_reporting_and_ignores_short_shifts() -> None:
    c = InputChannel(mode="settle", bounce_s=0.2, settle_s=5.0)
    c.start(False, 0.0, W)
    # Sits for 2 s and stands up: nothing. Then lies down for good.
    out = run(c, [(10.0, True), (12.0, False), (20.0, True)], until=30.0)
    assert names(out) == [ch.ASSERTED]
    assert out[0].mono == 20.0                 # stamped when the person got in
    # Shifting weight (off for 1 s) does not vacate the bed.
    out = run(c, [(40.0, False), (41.0, True)], until=60.0)
    assert out == []
    out = run(c, [(70.0, False)], until=80.0)
    assert names(out) == [ch.DEASSERTED]


def test_mat_occupied_at_start_is_reported_after_settle() -> None:
    c = InputChannel(mode="settle", settle_s=5.0, report_initial=True)
    assert c.start(True, 0.0, W) == []
    out = run(c, [], until=10.0)
    assert names(out) == [ch.ASSERTED]
    assert out[0].data["at_start"] is True


def test_hold_short_and_long_press() -> None:
    c = InputChannel(mode="hold", bounce_s=0.05, hold_s=3.0)
    c.start(False, 0.0, W)
    out = run(c, [(1.0, True), (1.4, False)], until=10.0)
    assert names(out) == [ch.SHORT_PRESS]
    out = run(c, [(20.0, True), (24.0, False)], until=30.0)
    assert names(out) == [ch.LONG_PRESS]
    assert out[0].mono == 23.0


def test_alarm_already_asserted_at_start_is_reported() -> None:
    c = InputChannel(report_initial=True)
    out = c.start(True, 5.0, 5.0 + W)
    assert names(out) == [ch.ASSERTED] and out[0].data == {"at_start": True}
    assert InputChannel(report_initial=False).start(True, 5.0, W) == []


def test_button_held_at_start_is_not_a_press() -> None:
    c = InputChannel(mode="hold", hold_s=1.0)
    c.start(True, 0.0, W)
    assert run(c, [(5.0, False)], until=10.0) == []
