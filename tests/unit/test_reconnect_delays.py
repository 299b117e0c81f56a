"""The reconnect waits (issue 20): a fleet dropped at once by a broker restart comes back
spread over ``mqtt.reconnect_min_s``, not within half a second."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from agent.config import MqttConfig, parse_config_text
from agent.uplink.settings import backoff_delays, reconnect_delays, settings_from_config


class _Edge(random.Random):
    """Draws the lower (``high=False``) or upper end of every interval it is asked for."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def _take(delays: Iterator[float], n: int) -> list[float]:
    return list(islice(delays, n))


def _first_waits(hubs: int, window: float, cap: float) -> list[float]:
    """Each hub's first wait after the same loss, every hub with its own generator."""
    return [next(reconnect_delays(window, cap, random.Random(i))) for i in range(hubs)]


def test_a_fleets_first_reconnects_spread_over_the_whole_window() -> None:
    """1,000 hubs on the agent's default: the old first wait (uniform in [W/2, W], W 0.5 s)
    put every hub into one quarter second; [W/2, W] with any W leaves [0, W/2) empty and
    doubles the rate in the other half."""
    cfg = MqttConfig()
    w, hubs = cfg.reconnect_min_s, 1000
    waits = _first_waits(hubs, w, cfg.reconnect_max_s)
    assert all(0.0 <= x <= w for x in waits)
    assert w >= 2.0, "a fleet's first reconnects must spread over seconds"
    # Busiest quarter second: ~62 expected for uniform over 4 s; the old rule: 1,000 (0.5 s)
    # or 125 ([2, 4] s).
    bins = Counter(int(x / 0.25) for x in waits)
    assert max(bins.values()) <= 1.5 * hubs * 0.25 / w, sorted(bins.items())
    # Every quarter second of the window has its share, the first half included.
    assert len(bins) == int(w / 0.25), sorted(bins.items())
    assert sum(x < w / 2 for x in waits) >= 0.4 * hubs


def test_after_the_first_window_the_backoff_doubles_with_half_its_step_as_floor() -> None:
    """The floor keeps a broker that accepts and drops every connection from being hammered
    (test_transport_faults.py); the cap holds."""
    assert _take(reconnect_delays(4.0, 60.0, _Edge(False)), 7) == [
        0.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert _take(reconnect_delays(4.0, 60.0, _Edge(True)), 7) == [
        4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    # A window as long as the cap: [0, cap], then [cap/2, cap].
    assert _take(reconnect_delays(60.0, 60.0, _Edge(False)), 3) == [0.0, 30.0, 30.0]
    # The same seed gives the same waits (a reproducible fleet run).
    assert (_take(reconnect_delays(4.0, 60.0, random.Random(7)), 5)
            == _take(reconnect_delays(4.0, 60.0, random.Random(7)), 5))
    # Subscription retries keep their own rule (no zero wait).
    assert next(backoff_delays(30.0, 300.0, _Edge(False))) == 15.0


def test_the_default_window_costs_alarms_nothing_and_does_not_flap_offline() -> None:
    """The first window ends within reconnect_alarm_s (the wait is cut to it while an alarm
    waits anyway) and before will_delay_s (a hub back within it does not show 'offline')."""
    cfg = MqttConfig()
    assert cfg.reconnect_min_s <= cfg.reconnect_alarm_s
    assert cfg.reconnect_min_s < cfg.will_delay_s


def test_the_config_key_sets_the_window(tmp_path: Path) -> None:
    cfg = parse_config_text(f'hub_id = "hub-x"\n[store]\npath = "{tmp_path / "e.db"}"\n'
                            '[mqtt]\nreconnect_min_s = 0.5\nreconnect_max_s = 8.0\n')
    s = settings_from_config(cfg.mqtt, "id-1", persistent=True)
    assert (s.reconnect_min_s, s.reconnect_max_s) == (0.5, 8.0)
    assert max(_first_waits(200, s.reconnect_min_s, s.reconnect_max_s)) <= 0.5
    default = parse_config_text(f'hub_id = "hub-x"\n[store]\npath = "{tmp_path / "e.db"}"\n')
    assert default.mqtt.reconnect_min_s == 4.0
