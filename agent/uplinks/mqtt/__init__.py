"""MQTT uplink: publish outbox messages (alerts, scope state, health) to a broker, QoS 1."""
