"""Which alarm output answers for which device: one registry for every AgentContext
implementation (the agent and the offline context), so they behave the same."""

from __future__ import annotations

from agent.ports import AlarmOutput, Unsubscribe


class AlarmOutputs:
    """A driver registers an output per device id (a serial unit's line); the escalation
    rule looks it up when an alarm is due. A later registration replaces an earlier one, and
    unregistering an output that was replaced leaves the newer one in place."""

    def __init__(self) -> None:
        self._by_id: dict[str, AlarmOutput] = {}

    def register(self, output_id: str, output: AlarmOutput) -> Unsubscribe:
        self._by_id[output_id] = output

        def unregister() -> None:
            if self._by_id.get(output_id) is output:
                del self._by_id[output_id]
        return unregister

    def get(self, output_id: str) -> AlarmOutput | None:
        return self._by_id.get(output_id)
