"""chargebus_sim."""
