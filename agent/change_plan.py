"""What a new config means for the running agent: what changed, what may not change
remotely, and which components must be rebuilt.

Live reconfiguration (``agent/reconfigure.py``) rebuilds by it; remote control asks the
agent for it through the port (:meth:`agent.ports.Reconfigurable.plan_change`), so
``agent/remote/`` never imports the registry (which names remote control's factory).

Components are matched by ``name`` against the registry (``agent/components.py``). One with
inputs there is rebuilt only when one of them changed; one without (a newer driver or
detector, the daily summary) is rebuilt when anything
outside the connection, store, remote and logging settings changed, which is always safe,
only less economical. Keeping the table short and conservative beats a clever guess that
leaves a detector running on yesterday's settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.components import spec_of
from agent.config import Config
from agent.remote.documents import changed_keys, key_matches

# Applied in place by the agent, never a reason to rebuild a component.
LIVE_KEYS = ("mqtt", "store", "remote", "agent.log_level", "agent.shutdown_timeout_s",
             "agent.assume_clock_synced")


@dataclass(frozen=True, slots=True)
class ChangePlan:
    changed: tuple[str, ...]
    forbidden: tuple[str, ...]

    @property
    def sections(self) -> frozenset[str]:
        return frozenset(k.split(".")[0].split("[")[0] for k in self.changed)

    def touches(self, prefix: str) -> bool:
        return any(key_matches(k, prefix) for k in self.changed)

    def needs_components(self) -> bool:
        """Anything changed beyond what the agent applies in place?"""
        return any(not any(key_matches(k, p) for p in LIVE_KEYS) for k in self.changed)

    def affects(self, component_name: str) -> bool:
        spec = spec_of(component_name)
        if spec is None or spec.inputs is None:
            return self.needs_components()
        return any(key_matches(k, p) for k in self.changed for p in spec.inputs)


def plan_change(old: Config, new: Config) -> ChangePlan:
    changed = tuple(changed_keys(old, new))
    forbidden = []
    if new.hub_id != old.hub_id:
        forbidden.append("hub_id: the hub's identity cannot be changed remotely")
    if new.mqtt.topic_prefix != old.mqtt.topic_prefix:
        forbidden.append("mqtt.topic_prefix: moving the hub to another tenant's topics needs a "
                         "local restart (and its ingester and broker ACL moved with it)")
    if new.store.path != old.store.path:
        forbidden.append("store.path: moving the event store needs a local restart")
    remote_old, remote_new = getattr(old, "remote", None), getattr(new, "remote", None)
    if remote_old is not None and remote_new is not None:
        if remote_old.enabled and not remote_new.enabled:
            forbidden.append("remote.enabled: turning remote management off remotely would "
                             "lock support out")
        if remote_new.config_path != remote_old.config_path:
            forbidden.append("remote.config_path: the file the agent runs with is set locally")
    return ChangePlan(changed, tuple(forbidden))
