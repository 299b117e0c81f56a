"""The alarm path to the Alarm Receiving Centre: SIA DC-09 over IP (see docs/arc.md).

``dc09`` frames (pure), ``codes`` the event -> Contact ID / SIA table, ``config`` the
``[arc]`` section, ``link`` one receiver's socket, ``transmitter`` the delivery policy,
``component`` the agent component; the acknowledgements live in
:mod:`agent.store.arc_delivery`.
"""
