"""The reference ingester: a service's consumer of hubs' events, next to its broker.

- :mod:`records`: one MQTT message -> the record to store (pure).
- :mod:`db`: the database port, the schema, the commit logic both backends share;
  :mod:`sqlite_db` (embedded default) and :mod:`postgres_db` (a service, psycopg 3).
- :mod:`mqtt_source`: the only module here that imports paho (the broker connection,
  MQTT 5 shared subscription, manual acknowledgement).
- :mod:`ingester`: batches messages, commits, then acknowledges them (at-least-once from
  the broker, exactly once in the database).
"""
