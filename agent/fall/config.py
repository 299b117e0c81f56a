"""Config for the wearable fall detector (``[fall]``).

Defaults are the shipped operating point: the model's own decision threshold for the
configured ``position`` (from its manifest), a 1.5 g impact gate, 10 s of posture/stillness
confirmation and a 20 s window in which the wearer or the hub's cancel button can call it
off before the alarm is raised.

``position`` lives here, not on the wearable's ``[[ble.devices]]`` entry: the detector is
what interprets it (threshold, and what the manifest says it was validated on), wearables
may reach the detector from any driver (``wearables`` lists device ids, not BLE entries),
and a hub serves one wearer. Wrist is rejected by check-config: no wrist recordings back a
model or posture rules (FallAllD's wrist channel was not converted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_ID = r"[A-Za-z0-9][A-Za-z0-9_:-]{0,63}"   # no '.': see drivers/gpio/config.py
POSITIONS = ("neck", "waist", "wrist")
SUPPORTED_POSITIONS = ("neck", "waist")


@dataclass(frozen=True, slots=True)
class FallConfig:
    enabled: bool = field(default=True, metadata={"doc": "run the fall detector"})
    position: str = field(
        default="neck",
        metadata={"choices": POSITIONS,
                  "doc": "where the wearable is worn: neck (pendant on a lanyard) or waist"
                         " (belt clip); picks the model's threshold for that position."
                         " wrist is not supported (no data backs it)"},
    )
    wearables: tuple[str, ...] = field(
        default=(),
        metadata={"pattern": _ID, "pattern_hint": "must be a device id",
                  "doc": "device ids to watch; empty = every device sending motion_samples."
                        " The detector runs only when this is set or a BLE wearable is"
                        " configured"},
    )
    model_path: str | None = field(
        default=None,
        metadata={"doc": "override the shipped fall.tflite (a missing or corrupt file falls "
                         "back to the threshold detector, it does not stop the agent); a "
                         "second model its manifest names for the position "
                         "(positions.<p>.second_model, the shipped neck pair) runs with it"},
    )
    second_model: bool = field(
        default=True,
        metadata={"doc": "also run the second model the manifest names for the position"
                         " (positions.<p>.second_model: at the neck the neck-only"
                         " fall-neck.tflite, a detection when either model reaches its own"
                         " threshold); false: the shipped model alone, which held out finds"
                         " fewer neck floor falls (268 against 274 of 283) for one false"
                         " alarm fewer (15 against 16 of 921). No effect at the waist (one"
                         " model)"},
    )
    manifest_path: str | None = field(
        default=None, metadata={"doc": "default: manifest.json next to model_path"}
    )
    threshold: float | None = field(
        default=None,
        metadata={"min": 0.0, "max": 1.0,
                  "doc": "override the manifest's decision threshold for the position (of the "
                         "first model; a second model keeps its own)"},
    )
    interpreter: str = field(
        default="auto",
        metadata={"choices": ("auto", "tflite_runtime", "ai_edge_litert"),
                  "doc": "TFLite interpreter package; auto tries tflite_runtime first"},
    )
    gate_g: float = field(
        default=1.5,
        metadata={"min": 1.1, "max": 8.0,
                  "doc": "impact gate: the model only runs around peaks of |a| above this"},
    )
    confirm_s: float = field(
        default=10.0,
        metadata={"min": 2.0, "max": 120.0,
                  "doc": "posture/stillness observed after a detection before confirming it"},
    )
    cancel_window_s: float = field(
        default=20.0,
        metadata={"min": 0.0, "max": 600.0,
                  "doc": "seconds after a detection in which a cancel press stops the alarm "
                         "(the alarm is raised after max(confirm_s, cancel_window_s))"},
    )
    lying_tilt_deg: float = field(
        default=45.0,
        metadata={"min": 10.0, "max": 90.0,
                  "doc": "trunk tilt from the pre-fall orientation that counts as lying"},
    )
    slumped_tilt_deg: float = field(
        default=25.0,
        metadata={"min": 5.0, "max": 90.0,
                  "doc": "smaller tilt that confirms a fall when the wearer is also still"},
    )
    lying_before_deg: float = field(
        default=70.0,
        metadata={"min": 30.0, "max": 120.0,
                  "doc": "tilt from the upright learnt from walking at or above which the "
                         "wearer was already lying before an impact (rolling over in bed)"},
    )
    already_lying_max_g: float = field(
        default=3.0,
        metadata={"min": 1.1, "max": 16.0,
                  "doc": "an impact from lying (5 s lying before it) is set aside as rolling "
                         "over only below this peak |a|: a drop out of bed hits harder"},
    )
    lay_down_max_g: float = field(
        default=2.0,
        metadata={"min": 1.1, "max": 16.0,
                  "doc": "position neck only: a posture-confirmed impact below this peak "
                         "|a| with no free fall before it is lying down on purpose (onto a "
                         "bed), not a fall (at or below gate_g: rule off)"},
    )
    free_fall_g: float = field(
        default=0.5,
        metadata={"min": 0.0, "max": 1.0,
                  "doc": "|a| (0.1 s mean) that the second before an impact must dip below "
                         "to count as falling freely (see lay_down_max_g)"},
    )
    reclined_still_g: float = field(
        default=0.01,
        metadata={"min": 0.0, "max": 0.5,
                  "doc": "position neck only: a detection never lying or slumped is "
                         "confirmed (reclined_still) when every second of confirm_s has a "
                         "std of |a| below this and the wearable is reclined_tilt_deg or "
                         "more from the upright learnt from walking (0: rule off)"},
    )
    reclined_tilt_deg: float = field(
        default=15.0,
        metadata={"min": 0.0, "max": 90.0,
                  "doc": "tilt from the learnt upright for reclined_still (sitting slumped "
                         "on the floor against a wall or a bed)"},
    )
    recovered_upright_deg: float = field(
        default=70.0,
        metadata={"min": 0.0, "max": 120.0,
                  "doc": "position neck only: a detection never lying is a fall the wearer "
                         "got up from (fall_recovered) when the wearable hung this far or "
                         "more from the upright learnt from walking after the impact and "
                         "not in the last 2 s (0: rule off)"},
    )
    still_g: float = field(
        default=0.05,
        metadata={"min": 0.005, "max": 0.5,
                  "doc": "std of |a| over one second below which the wearer is still"},
    )
    baseline_peak_g: float = field(
        default=3.52,
        metadata={"min": 1.5, "max": 16.0,
                  "doc": "fallback detector: upper fall threshold on |a|"
                         " (Bourke et al. 2007, trunk)"},
    )
    rearm_upright_s: float = field(
        default=5.0,
        metadata={"min": 1.0, "max": 600.0,
                  "doc": "after an alarm or cancel, upright this long before a new episode"},
    )
    episode_max_s: float = field(
        default=900.0,
        metadata={"min": 30.0, "max": 86400.0,
                  "doc": "an episode ends after this even if the wearer never stands up"},
    )

    def validate(self, path: str) -> list[str]:
        problems = []
        if self.position not in SUPPORTED_POSITIONS:
            problems.append(
                f"{path}.position: {self.position!r} is not supported: no recordings at the "
                f"{self.position} back a model or posture rules (supported: "
                f"{', '.join(SUPPORTED_POSITIONS)})")
        if self.slumped_tilt_deg > self.lying_tilt_deg:
            problems.append(f"{path}.slumped_tilt_deg: greater than lying_tilt_deg")
        if self.baseline_peak_g < self.gate_g:
            problems.append(f"{path}.baseline_peak_g: below gate_g ({self.gate_g})")
        if self.manifest_path is not None and self.model_path is None:
            problems.append(f"{path}.manifest_path: only with model_path")
        return problems
