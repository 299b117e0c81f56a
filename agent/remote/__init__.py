"""Remote configuration and commands over MQTT, signed with Ed25519 and reversible.

- :mod:`envelope`: the wire format (pure parsing), :mod:`keys`: trusted keys and key files,
  :mod:`verifier`: authenticity, hub, validity period and replay checks.
- :mod:`apply`: validate, trial, roll back or persist a pushed config; :mod:`live` and
  :mod:`plan`: what a change means for the running agent.
- :mod:`commands`, :mod:`walk_test`, :mod:`log_ring`: what support can ask for.
- :mod:`control`: the ``remote`` component that wires the above to MQTT topics.
- :mod:`client`: the support side, used by ``tec-agent remote``.
"""
