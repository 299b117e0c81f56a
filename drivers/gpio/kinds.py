"""What each wired input kind means: readings, priorities, polarity and timing defaults.

One table, so the driver, the config validation and the docs agree. Semantic terms:
*asserted* is the state worth reporting (motion, door open, cord pulled, bed occupied,
water detected); the driver maps the pin's electrical state to it once (``contact_open``).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import Priority


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    # Reading types on the asserted / de-asserted edge (None: nothing is emitted).
    on_assert: str | None
    on_deassert: str | None
    priority: Priority
    publish_assert: bool = True
    publish_deassert: bool = True
    contact_id: int | None = None
    # Debounce lockout when the config leaves bounce_s unset.
    bounce_s: float = 0.05
    # Internal pull-up when the config leaves pull_up/active_high unset.
    pull_up: bool = True
    # True: the asserted state is the contact being *open* (reed switch away from its magnet).
    contact_open: bool = False
    # "plain": report each debounced change; "settle": report after settle_s of steady state;
    # "hold": short press / long press (cancel button).
    mode: str = "plain"
    # Raise the asserted reading at start-up when the input is already asserted: a pull
    # cord pulled while the hub rebooted still means somebody is waiting for help.
    report_initial: bool = False
    # "hold" mode only: reading types for a short press and a long press.
    on_short_press: str | None = None
    on_long_press: str | None = None
    # Labels for the retained device state.
    asserted_label: str = "active"
    deasserted_label: str = "idle"


KINDS: dict[str, KindSpec] = {
    k.kind: k
    for k in (
        KindSpec("pir", "motion", "motion_clear", Priority.TELEMETRY, publish_deassert=False,
                 bounce_s=0.0, pull_up=False, asserted_label="motion",
                 deasserted_label="no_motion"),
        KindSpec("door", "door_open", "door_close", Priority.INFO, contact_open=True,
                 asserted_label="open", deasserted_label="closed"),
        KindSpec("pull_cord", "pull_cord", None, Priority.ALARM, contact_id=101,
                 report_initial=True, asserted_label="pulled", deasserted_label="idle"),
        KindSpec("button", "button", None, Priority.ALARM, contact_id=101,
                 report_initial=True, asserted_label="pressed", deasserted_label="idle"),
        KindSpec("bed_mat", "bed_occupied", "bed_vacated", Priority.INFO, bounce_s=0.2,
                 mode="settle", report_initial=True, asserted_label="occupied",
                 deasserted_label="vacant"),
        KindSpec("chair_mat", "chair_occupied", "chair_vacated", Priority.INFO, bounce_s=0.2,
                 mode="settle", report_initial=True, asserted_label="occupied",
                 deasserted_label="vacant"),
        KindSpec("flood", "flood", None, Priority.ALARM, contact_id=154, bounce_s=0.5,
                 report_initial=True, asserted_label="alarm", deasserted_label="normal"),
        KindSpec("smoke", "smoke", None, Priority.ALARM, contact_id=111, bounce_s=0.5,
                 report_initial=True, asserted_label="alarm", deasserted_label="normal"),
        # Short press -> ``cancel`` (not published: the AlarmCanceller turns it into
        # ``alarm_cancelled``); long press -> ``test``.
        KindSpec("cancel_button", None, None, Priority.INFO, mode="hold",
                 on_short_press="cancel", on_long_press="test",
                 asserted_label="pressed", deasserted_label="idle"),
    )
}

# Pins with fixed 1.8 kOhm pull-ups to 3V3 on every 40-pin Pi (I2C1 SDA/SCL).
FIXED_PULL_UP_PINS = {2: "I2C SDA", 3: "I2C SCL"}
