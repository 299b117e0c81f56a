"""The component registry: every component the config can ask for, in one table.

Each entry says the component's name (``Component.name``), the config section it lives in,
the config keys it is built from (``inputs``: a live change to any of them rebuilds it) and
its factory. The agent builds its components from here (:func:`build_components`), live
reconfiguration (``agent/reconfigure.py``) rebuilds them from here, and the change plan
(``agent/change_plan.py``) reads the inputs from here: one list, read by everyone.

Factories import their component lazily: a hub without BLE never imports bleak, one
without a wearable never loads the inference runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Config
from agent.ports import Component, DeviceInfo, merge_devices

# Every device list feeds Contact ID zones (serial) and the activity map (inactivity).
DEVICE_LISTS = ("gpio.devices", "ble.devices", "serial.units")


@dataclass
class Hardware:
    """The hardware seams. ``None`` means: the real thing (or what the config asks for)."""

    pin_factory: Any = None
    ble_backend: Any = None
    ble_client_factory: Any = None
    serial_ports: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BuildEnv:
    """What factories get besides the config."""

    hardware: Hardware
    config_file: str | None = None          # the file ``run --config`` read
    inventory: Callable[[], list[DeviceInfo]] = list   # every component's devices, late-bound


Factory = Callable[[Config, BuildEnv], Component | None]


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    name: str
    section: str
    inputs: tuple[str, ...] | None     # None: rebuilt on any change beyond the live keys
    factory: Factory
    rebuilt: bool = True               # False: reconfigures itself, never rebuilt live


def _gpio(config: Config, env: BuildEnv) -> Component | None:
    if not config.gpio.devices:
        return None
    from drivers.gpio.driver import GpioDriver

    return GpioDriver(config.gpio, pin_factory=env.hardware.pin_factory)


def _ble(config: Config, env: BuildEnv) -> Component | None:
    if not config.ble.devices:
        return None
    from drivers.ble.component import BleComponent

    return BleComponent(config.ble, backend=env.hardware.ble_backend,
                        client_class=env.hardware.ble_client_factory)


def _conditions(config: Config, env: BuildEnv) -> Component | None:
    if not config.ble.devices:
        return None
    from agent.conditions import ConditionsDetector

    # battery_low / cold_home over the BLE driver's measurements.
    return ConditionsDetector(config.ble)


def _serial(config: Config, env: BuildEnv) -> Component | None:
    if not config.serial.units:
        return None
    from drivers.serial.unit import SerialDriver

    # Lines only; each unit offers an alarm output (ctx.register_alarm_output).
    return SerialDriver(config.serial, ports=env.hardware.serial_ports)


def _escalation(config: Config, env: BuildEnv) -> Component | None:
    if not config.serial.units:
        return None
    from agent.escalation import EscalationDetector

    # Contact ID zone of an escalated alarm: the device's 1-based position in the config.
    zones = {dev_id: i + 1 for i, (_, dev_id) in enumerate(config.device_ids())}
    return EscalationDetector(config.serial, zone_of=lambda dev_id: zones.get(dev_id, 0))


def _inactivity(config: Config, env: BuildEnv) -> Component | None:
    if not config.inactivity.enabled:
        return None
    from agent.inactivity.detector import InactivityDetector

    # State (last activity, countdowns, learned routine): ctx.component_state at start.
    return InactivityDetector(config)


def _fall(config: Config, env: BuildEnv) -> Component | None:
    if not config.fall_detector_runs():
        return None
    from agent.fall.detector import FallDetector

    # Scores wearables' motion_samples; the model loads in the inference executor. Only
    # built when a wearable is configured: the interpreter costs ~23 MB of RSS.
    return FallDetector(config.fall)


def _canceller(config: Config, env: BuildEnv) -> Component | None:
    from agent.cancel import AlarmCanceller

    return AlarmCanceller(config.gpio.cancel_window_s)


def _daily_summary(config: Config, env: BuildEnv) -> Component | None:
    if not config.report.daily_summary:
        return None
    from agent.report.build import configured_devices
    from agent.report.daily import DailySummary

    # Battery and signal come from the drivers' inventory when each summary is sent.
    return DailySummary(config.report, store_path=config.store.path,
                        timezone=config.agent.timezone, configured=configured_devices(config),
                        inventory=env.inventory)


def _arc(config: Config, env: BuildEnv) -> Component | None:
    if not config.arc.enabled:
        return None
    from agent.arc.component import ArcComponent

    # Alarms to the receiving centre over SIA DC-09, in parallel with MQTT; Contact ID zones
    # as the serial escalation numbers them (the device's 1-based position in the config).
    zones = {dev_id: i + 1 for i, (_, dev_id) in enumerate(config.device_ids())}
    return ArcComponent(config.arc, zone_of=lambda dev_id: zones.get(dev_id, 0))


def _remote(config: Config, env: BuildEnv) -> Component | None:
    if not config.remote.enabled:
        return None
    from agent.remote.control import RemoteControl

    # Signed config pushes and commands; it reconfigures the agent it is started with.
    return RemoteControl(config.remote, config_file=env.config_file)


# In start order (the agent stops them in reverse).
REGISTRY: tuple[ComponentSpec, ...] = (
    ComponentSpec("gpio", "gpio", ("gpio",), _gpio),
    ComponentSpec("conditions", "ble", ("ble",), _conditions),  # hears the first adverts
    ComponentSpec("ble", "ble", ("ble",), _ble),
    ComponentSpec("serial", "serial", ("serial",), _serial),
    # After serial (it raises alarms on serial's units); rebuilt with it (same section).
    ComponentSpec("escalation", "serial", ("serial", *DEVICE_LISTS), _escalation),
    ComponentSpec("inactivity", "inactivity", ("inactivity", "agent.timezone", *DEVICE_LISTS),
                  _inactivity),
    ComponentSpec("fall", "fall", ("fall",), _fall),
    ComponentSpec("alarm-canceller", "gpio", ("gpio.cancel_window_s",), _canceller),
    ComponentSpec("daily_summary", "report", None, _daily_summary),
    ComponentSpec("arc", "arc", ("arc", *DEVICE_LISTS), _arc),   # zones from every device list
    ComponentSpec("remote", "remote", (), _remote, rebuilt=False),
)


def spec_of(name: str) -> ComponentSpec | None:
    return next((s for s in REGISTRY if s.name == name), None)


def build_components(config: Config, hardware: Hardware, config_file: str | None = None, *,
                     rebuilt_only: bool = False) -> list[Component]:
    """Construct every component the config asks for. The one place that does.

    ``config_file``: the file the agent was started from (``run --config``); remote
    support writes accepted pushes there unless ``remote.config_path`` says otherwise.
    ``rebuilt_only``: leave out those that are never rebuilt live (``remote``)."""
    components: list[Component] = []

    def inventory() -> list[DeviceInfo]:
        return merge_devices(d for c in components for d in c.devices())

    env = BuildEnv(hardware, config_file, inventory)
    for spec in REGISTRY:
        if rebuilt_only and not spec.rebuilt:
            continue
        comp = spec.factory(config, env)
        if comp is not None:
            components.append(comp)
    return components
