"""Wired sensors and outputs on the Pi's GPIO header, through gpiozero.

Threading: gpiozero calls back on its own threads (the pin library's edge thread, or a
``MotionSensor`` sampling thread). The callbacks only stamp the time and hop to the agent's
loop with ``call_soon_threadsafe``; all timing logic (:mod:`drivers.gpio.channel`) and every
reading is built on the loop, so no locks are needed and readings from one input keep
their order. The hop costs tens of microseconds; the debounce takes the first edge at once,
so an alarm gains no latency from it.

The hardware seam is ``pin_factory``: a gpiozero ``Factory`` (``MockFactory`` in tests and
in the simulated home) or ``None`` to use what ``gpio.pin_factory`` in the config names.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from agent.errors import DriverError
from agent.model import Priority, Reading, iso_utc
from agent.ports import AgentContext, AgentState, DeviceInfo
from drivers.gpio import channel as ch
from drivers.gpio.channel import InputChannel, Signal
from drivers.gpio.config import INPUT_KINDS, GpioConfig, GpioDevice
from drivers.gpio.kinds import KINDS, KindSpec
from drivers.gpio.outputs import PatternPlayer, buzzer_pattern, led_next_change, led_pattern

log = logging.getLogger(__name__)

SOURCE = "gpio"
PIR_SAMPLE_RATE_HZ = 10.0
PIR_QUEUE_LEN = 1


def make_pin_factory(name: str) -> Any:
    """The gpiozero factory the config names; ``None`` for gpiozero's own choice ("auto")."""
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory()
    except Exception as exc:  # ImportError, or the library cannot reach the chip/daemon
        raise DriverError(f"gpio.pin_factory = {name!r} is not usable here: {exc}") from exc
    return None


@dataclass
class _Input:
    conf: GpioDevice
    spec: KindSpec
    channel: InputChannel
    invert: bool
    device: Any = None
    timer: asyncio.TimerHandle | None = None
    last_seen_wall: float | None = None
    error: str | None = None


@dataclass
class _Output:
    conf: GpioDevice
    device: Any = None
    player: PatternPlayer | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GpioDriver:
    """The ``gpio`` component: inputs become readings, outputs follow the agent state."""

    name = "gpio"

    def __init__(self, config: GpioConfig, pin_factory: Any = None) -> None:
        self.config = config
        # Created now (not at start) so a simulator can drive mock pins it was handed.
        if pin_factory is None and config.pin_factory == "mock":
            pin_factory = make_pin_factory("mock")
        self.pin_factory = pin_factory
        self._ctx: AgentContext | None = None
        self._running = False
        self._inputs: dict[str, _Input] = {}
        self._outputs: dict[str, _Output] = {}
        self._state: AgentState | None = None
        self._led_timer: asyncio.TimerHandle | None = None
        self._factory_error = ""

    # -- Component -------------------------------------------------------------------------
    async def start(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._running = True
        if self.pin_factory is None and self.config.pin_factory != "auto":
            try:
                self.pin_factory = make_pin_factory(self.config.pin_factory)
            except DriverError as exc:
                # Every pin fails to open below and says so (device_offline per device);
                # the rest of the agent (BLE, serial, uplink) keeps working.
                log.critical("gpio: %s", exc)
                self._factory_error = str(exc)
        for conf in self.config.devices:
            if conf.kind in INPUT_KINDS:
                self._start_input(conf)
            else:
                self._start_output(conf)
        if self._outputs:
            ctx.subscribe_state(self._on_state)
        log.info("gpio: %d inputs, %d outputs (%s)", len(self._inputs), len(self._outputs),
                 type(self.pin_factory).__name__ if self.pin_factory else "default factory")

    async def stop(self) -> None:
        self._running = False
        if self._led_timer is not None:
            self._led_timer.cancel()
        for inp in self._inputs.values():
            if inp.timer is not None:
                inp.timer.cancel()
            self._close(inp.conf.id, inp.device)
        for out in self._outputs.values():
            if out.player is not None:
                out.player.stop()
            self._close(out.conf.id, out.device)
        self._inputs.clear()
        self._outputs.clear()

    def devices(self) -> list[DeviceInfo]:
        infos = []
        for inp in self._inputs.values():
            c = inp.channel
            state = inp.spec.asserted_label if c.reported else inp.spec.deasserted_label
            details: dict[str, Any] = {"pin": inp.conf.pin, "state": state,
                                       "bounce_storm": c.in_storm, "edges": c.edges}
            if inp.error:
                details["error"] = inp.error
            infos.append(DeviceInfo(inp.conf.id, inp.conf.kind, self.name,
                                    online=inp.error is None,
                                    last_seen_wall=inp.last_seen_wall, details=details))
        for out in self._outputs.values():
            details = {"pin": out.conf.pin,
                       "pattern": out.player.pattern.name if out.player and out.player.pattern
                       else None}
            if out.error:
                details["error"] = out.error
            infos.append(DeviceInfo(out.conf.id, out.conf.kind, self.name,
                                    online=out.error is None, details=details))
        return infos

    # -- inputs ----------------------------------------------------------------------------
    def _start_input(self, conf: GpioDevice) -> None:
        spec = KINDS[conf.kind]
        channel = InputChannel(
            mode=spec.mode,
            bounce_s=conf.effective_bounce_s(),
            settle_s=conf.effective_settle_s(),
            hold_s=conf.effective_hold_s(),
            storm_events=self.config.storm_events,
            storm_window_s=self.config.storm_window_s,
            report_initial=spec.report_initial,
        )
        inp = _Input(conf, spec, channel, invert=spec.contact_open != conf.invert)
        self._inputs[conf.id] = inp
        try:
            if self._factory_error:
                raise DriverError(self._factory_error)
            inp.device = self._open_input(conf, spec)
        except Exception as exc:  # pin busy, no permission, no GPIO chip
            inp.error = f"{type(exc).__name__}: {exc}"
            log.error("gpio: cannot open %s '%s' on GPIO%d: %s", conf.kind, conf.id, conf.pin,
                      inp.error)
            self._emit(inp, "device_offline", Priority.WARNING, True, {"reason": inp.error})
            return

        def on_active() -> None:
            self._from_thread(inp, True)

        def on_inactive() -> None:
            self._from_thread(inp, False)

        inp.device.when_activated = on_active
        inp.device.when_deactivated = on_inactive
        clock = self._clock_now()
        active = _is_active(inp.device)
        self._handle(inp, channel.start(active != inp.invert, *clock))
        self._publish_state(inp)

    def _open_input(self, conf: GpioDevice, spec: KindSpec) -> Any:
        import gpiozero

        if conf.active_high is not None:
            pull: dict[str, Any] = {"pull_up": None, "active_state": conf.active_high}
        else:
            pull = {"pull_up": spec.pull_up if conf.pull_up is None else conf.pull_up}
        if conf.kind == "pir":
            return gpiozero.MotionSensor(
                conf.pin, queue_len=conf.queue_len or PIR_QUEUE_LEN,
                sample_rate=conf.sample_rate_hz or PIR_SAMPLE_RATE_HZ,
                pin_factory=self.pin_factory, **pull)
        # Debounce is ours (channel.py), not the pin library's: same behaviour on every factory.
        return gpiozero.DigitalInputDevice(conf.pin, bounce_time=None,
                                           pin_factory=self.pin_factory, **pull)

    def _from_thread(self, inp: _Input, active: bool) -> None:
        """gpiozero thread: stamp the edge, hand it to the loop, return at once."""
        ctx = self._ctx
        if ctx is None or not self._running:
            return
        mono, wall = self._clock_now()
        try:
            ctx.loop.call_soon_threadsafe(self._on_edge, inp, active, mono, wall)
        except RuntimeError:
            log.error("gpio: %s edge on '%s' after the loop closed; not accepted",
                      "active" if active else "inactive", inp.conf.id)

    def _on_edge(self, inp: _Input, active: bool, mono: float, wall: float) -> None:
        if not self._running:
            return
        inp.last_seen_wall = wall
        self._handle(inp, inp.channel.edge(active != inp.invert, mono, wall))

    def _on_due(self, inp: _Input) -> None:
        inp.timer = None
        if not self._running or self._ctx is None:
            return
        self._handle(inp, inp.channel.due(self._ctx.clock.monotonic()))

    def _handle(self, inp: _Input, signals: list[Signal]) -> None:
        for signal in signals:
            self._dispatch(inp, signal)
        if signals:
            self._publish_state(inp)
        self._reschedule(inp)

    def _reschedule(self, inp: _Input) -> None:
        ctx = self._ctx
        if inp.timer is not None:
            inp.timer.cancel()
            inp.timer = None
        deadline = inp.channel.next_deadline()
        if deadline is not None and ctx is not None and self._running:
            delay = max(0.0, deadline - ctx.clock.monotonic())
            inp.timer = ctx.loop.call_later(delay, self._on_due, inp)

    def _dispatch(self, inp: _Input, signal: Signal) -> None:
        spec = inp.spec
        name = signal.name
        if name == ch.ASSERTED and spec.on_assert:
            data = dict(signal.data)
            if spec.contact_id is not None:
                data["contact_id"] = spec.contact_id
            if spec.kind == "pir":
                data["state"] = "detected"
            self._emit(inp, spec.on_assert, spec.priority, spec.publish_assert, data, signal)
        elif name == ch.DEASSERTED and spec.on_deassert:
            self._emit(inp, spec.on_deassert, spec.priority, spec.publish_deassert,
                       dict(signal.data), signal)
        elif name == ch.SHORT_PRESS and spec.on_short_press:
            self._emit(inp, spec.on_short_press, Priority.INFO, False, dict(signal.data), signal)
        elif name == ch.LONG_PRESS and spec.on_long_press:
            self._emit(inp, spec.on_long_press, Priority.INFO, True, dict(signal.data), signal)
        elif name == ch.STORM:
            log.warning("gpio: bounce storm on %s '%s' (GPIO%d): %d changes in %.1f s; muted "
                        "until quiet for %.1f s", spec.kind, inp.conf.id, inp.conf.pin,
                        signal.data["changes"], self.config.storm_window_s,
                        self.config.storm_window_s)
            self._emit(inp, "bounce_storm", Priority.WARNING, True,
                       {**signal.data, "kind": spec.kind, "pin": inp.conf.pin}, signal)
        elif name == ch.STORM_OVER:
            log.info("gpio: bounce storm on '%s' over (%d edges suppressed)", inp.conf.id,
                     signal.data.get("suppressed", 0))

    def _emit(self, inp: _Input, rtype: str, priority: Priority, publish: bool,
              data: dict[str, Any], signal: Signal | None = None) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        data.update(room=inp.conf.room, role=inp.conf.role, source=SOURCE)
        kwargs: dict[str, Any] = {}
        if signal is not None:
            kwargs = {"mono": signal.mono, "wall": signal.wall}
        ctx.emit_reading(Reading(device_id=inp.conf.id, type=rtype, priority=priority,
                                 data=data, publish=publish, **kwargs))

    def _publish_state(self, inp: _Input) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        c = inp.channel
        state = {
            "kind": inp.conf.kind,
            "state": inp.spec.asserted_label if c.reported else inp.spec.deasserted_label,
            "bounce_storm": c.in_storm,
            "room": inp.conf.room,
            "role": inp.conf.role,
            "ts": iso_utc(ctx.clock.wall()),
        }
        try:
            ctx.publish_device_state(inp.conf.id, state)
        except Exception:  # best effort: retained state must never block a reading
            log.debug("gpio: device state for '%s' not published", inp.conf.id, exc_info=True)

    # -- outputs ---------------------------------------------------------------------------
    def _start_output(self, conf: GpioDevice) -> None:
        out = _Output(conf)
        self._outputs[conf.id] = out
        try:
            import gpiozero

            if self._factory_error:
                raise DriverError(self._factory_error)
            out.device = gpiozero.DigitalOutputDevice(
                conf.pin, active_high=True if conf.active_high is None else conf.active_high,
                initial_value=False, pin_factory=self.pin_factory)
        except Exception as exc:
            out.error = f"{type(exc).__name__}: {exc}"
            log.error("gpio: cannot open %s '%s' on GPIO%d: %s", conf.kind, conf.id, conf.pin,
                      out.error)
            return
        device = out.device

        def write(on: bool) -> None:
            device.on() if on else device.off()

        out.player = PatternPlayer(conf.id, write)

    def _on_state(self, state: AgentState) -> None:
        if not self._running:
            return
        previous, self._state = self._state, state
        self._refresh_led()
        for out in self._outputs.values():
            if out.conf.kind == "buzzer" and out.player is not None:
                pattern = buzzer_pattern(state, previous)
                if pattern is not None:
                    out.player.play(pattern)

    def _refresh_led(self) -> None:
        ctx, state = self._ctx, self._state
        if ctx is None or state is None or not self._running:
            return
        now = ctx.clock.monotonic()
        show = self.config.delivered_show_s
        pattern = led_pattern(state, now, show)
        for out in self._outputs.values():
            if out.conf.kind == "led" and out.player is not None:
                out.player.play(pattern)
        if self._led_timer is not None:
            self._led_timer.cancel()
            self._led_timer = None
        change = led_next_change(state, now, show)
        if change is not None:
            self._led_timer = ctx.loop.call_later(max(0.0, change - now) + 0.001,
                                                  self._refresh_led)

    # -- helpers ---------------------------------------------------------------------------
    def _clock_now(self) -> tuple[float, float]:
        assert self._ctx is not None
        return self._ctx.clock.monotonic(), self._ctx.clock.wall()

    @staticmethod
    def _close(device_id: str, device: Any) -> None:
        if device is None:
            return
        try:
            device.close()
        except Exception:
            log.warning("gpio: closing '%s' failed", device_id, exc_info=True)


def _is_active(device: Any) -> bool:
    try:
        return bool(device.is_active)
    except Exception:  # a smoothed input whose queue is not full yet
        return False
