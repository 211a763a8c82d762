"""chargebus: the shared contract package (schema, topics, config, MQTT runtime)."""
