"""The daily ``summary`` event from a running agent to a real mosquitto: the agent's clock
is a ManualClock moved past the next local 00:05, and the component that
``build_components`` made sends yesterday's figures, measured while connected."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.clock import ManualClock
from agent.report.daily import DailySummary
from tests.harness import AgentRunner, make_config, wait_until

TZ = ZoneInfo("Europe/London")


def test_the_agent_publishes_yesterdays_summary(tmp_path: Path, mqtt_broker) -> None:
    events = mqtt_broker.subscribe("tec/v1/hub-test/event")
    config = make_config(tmp_path, mqtt_broker, '[report]\ndaily_at = "00:05"\n')
    start = datetime(2025, 6, 10, 18, 0, tzinfo=TZ).timestamp()
    clock = ManualClock(mono=1000.0, wall=start)
    with AgentRunner(config, clock=clock) as runner:
        wait_until(lambda: runner.agent.state.online, what="online")
        daily = next(c for c in runner.agent.components if isinstance(c, DailySummary))
        assert runner.run(daily.check_now()) == []            # installed today: nothing yet
        runner.call(clock.advance, 6 * 3600 + 6 * 60)          # connected until 00:06
        (sent,) = runner.run(daily.check_now())
        assert runner.run(daily.check_now()) == []

    got = events.wait_for(lambda ms: [e for e in events.events() if e["type"] == "summary"],
                          what="summary at the broker")
    (summary,) = got
    assert summary["id"] == sent.id and summary["priority"] == "info"
    assert summary["device_id"] == "hub"
    data = summary["data"]
    assert data["date"] == "2025-06-10" and data["timezone"] == "Europe/London"
    assert data["offline_minutes"] == 0.0          # connected all 6 h since the first start
    assert data["agent_running_minutes"] == 360.0
    assert data["alarms_total"] == 0 and data["backlog"]["alarm"] == 0
    assert Path(config.store.path).with_name("summary-state.json").is_file()
