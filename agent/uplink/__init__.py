"""MQTT uplink (paho-mqtt 2.x) and the topic contract."""
