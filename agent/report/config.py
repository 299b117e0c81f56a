"""``[report]``: the daily outcome summary."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReportConfig:
    daily_summary: bool = field(
        default=True, metadata={"doc": "publish a 'summary' info event for each local day"}
    )
    daily_at: str = field(
        default="00:05",
        metadata={
            "pattern": r"([01][0-9]|2[0-3]):[0-5][0-9]",
            "pattern_hint": "must be HH:MM (24 h, local time)",
            "doc": "local time at which the previous day's summary is sent",
        },
    )
    state_file: str | None = field(
        default=None,
        metadata={"doc": "where connection time is kept across restarts;"
                         " default: summary-state.json beside the store"},
    )
